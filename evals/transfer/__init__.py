"""Eval dataset items in and out: JSONL and CSV import that reports every bad line at once, and streaming export.

Choices a user can see: unknown top-level fields of an item go into its metadata rather than failing the import
(other tools' exports carry ids, sources and scores worth keeping); a non-string `expected` is kept as the JSON
text of the value (42 -> "42", true -> "true", {"a": 1} -> '{"a":1}'); null and "" mean absent; CSV files
written with ";" or tabs (European Excel) are read too. Pure Python: no models here, the caller stores the items.

`items` validates one item and holds what the formats share; `jsonl` and `csvfile` are the formats; `upload`
picks the format of an uploaded file.
"""

from .csvfile import parse_csv, to_csv
from .items import DatasetImportError, ItemData, clean_item
from .jsonl import parse_jsonl, to_jsonl
from .upload import parse, read_upload

__all__ = [
    "DatasetImportError",
    "ItemData",
    "clean_item",
    "parse",
    "parse_csv",
    "parse_jsonl",
    "read_upload",
    "to_csv",
    "to_jsonl",
]
