"""An org's bucket through boto3: a client made from its settings (access keys decrypted only here), objects
written and read back, every failure turned into one BucketError whose message says what went wrong and never
carries a secret."""

from __future__ import annotations

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tenancy import crypto
from tenancy.models import StorageExport

# A bucket that does not answer fails the run quickly; the next run tries again.
_CONFIG = {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 2, "mode": "standard"}}


class BucketError(Exception):
    """The bucket could not be written or read: unreachable, refused the keys, or does not exist."""


class Bucket:
    def __init__(self, export: StorageExport):
        access = crypto.decrypt(export.access_key_encrypted) if export.access_key_encrypted else None
        secret = crypto.decrypt(export.secret_key_encrypted) if export.secret_key_encrypted else None
        # With no keys stored, boto3's own chain applies (an instance role, AWS_* variables), as the AWS SDKs do.
        self.name = export.bucket
        self.prefix = export.prefix
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=export.endpoint_url or None,
            region_name=export.region or None,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            # Path-style addressing: what MinIO and most S3-compatible servers expect; AWS still serves it.
            config=Config(s3={"addressing_style": "path" if export.endpoint_url else "auto"}, **_CONFIG),
        )

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def check(self) -> None:
        """Is the bucket there and ours to use? Every run asks first, so wrong settings fail the run visibly even
        when there is nothing to write yet."""
        try:
            self._client.head_bucket(Bucket=self.name)
        except (BotoCoreError, ClientError) as exc:
            raise BucketError(f"Cannot use bucket {self.name!r}: {_reason(exc)}") from None

    def put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self._client.put_object(Bucket=self.name, Key=key, Body=body, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise BucketError(f"Could not write s3://{self.name}/{key}: {_reason(exc)}") from None

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        try:
            return self._client.get_object(Bucket=self.name, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise BucketError(f"Could not read s3://{self.name}/{key}: {_reason(exc)}") from None
        except BotoCoreError as exc:
            raise BucketError(f"Could not read s3://{self.name}/{key}: {_reason(exc)}") from None


_CODES = {"404": "NoSuchBucket", "403": "AccessDenied", "301": "PermanentRedirect (another region?)"}


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "error"))
        return f"{_CODES.get(code, code)}: {error.get('Message', '') or 'no details'}".strip()[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
