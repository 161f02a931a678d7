"""Each org's records (and bodies) written to its own S3-compatible bucket, hour by hour, as Parquet (and JSON
Lines): `runs.py` decides what to write and keeps the watermark, `files.py` makes the files, `bucket.py` talks
to the bucket."""
