"""An uploaded file's items: the size limit, then JSONL or CSV by its name, content type or
content."""

from __future__ import annotations

from django.conf import settings

from .csvfile import parse_csv
from .items import BOM, DatasetImportError, ItemData
from .jsonl import parse_jsonl


def read_upload(upload) -> list[ItemData]:
    """Items from an uploaded file (a Django UploadedFile), refusing files over INGATE_EVAL_MAX_IMPORT_BYTES
    before reading them into memory."""
    limit = settings.INGATE_EVAL_MAX_IMPORT_BYTES
    if upload.size > limit:
        raise DatasetImportError(
            [
                (
                    0,
                    f"the file is {upload.size:,} bytes; imports take up to {limit:,} "
                    "(INGATE_EVAL_MAX_IMPORT_BYTES): split it into several imports",
                )
            ]
        )
    return parse(upload.read(), upload.name or "", upload.content_type or "")


def parse(data: bytes, filename: str = "", content_type: str = "") -> list[ItemData]:
    """Items from an uploaded file: JSONL or CSV by file extension, else by content type, else by content."""
    suffix = filename.rpartition(".")[2].lower() if "." in filename else ""
    if suffix in ("xlsx", "xls", "ods", "numbers"):
        raise DatasetImportError([(1, "spreadsheet files are not read; save it as CSV (UTF-8) or JSONL")])
    kind = _BY_SUFFIX.get(suffix) or _BY_TYPE.get(content_type.partition(";")[0].strip().lower())
    if kind is None:
        kind = "jsonl" if data.removeprefix(BOM).lstrip()[:1] in (b"{", b"[") else "csv"
    return parse_jsonl(data) if kind == "jsonl" else parse_csv(data)


_BY_SUFFIX = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "csv": "csv"}
_BY_TYPE = {
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/ndjson": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/json": "jsonl",
    "text/csv": "csv",
    "application/csv": "csv",
    "text/comma-separated-values": "csv",
    "application/vnd.ms-excel": "csv",  # what browsers on Windows send for a .csv when Excel is installed
}
