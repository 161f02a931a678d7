"""Rows as the files that go to a bucket: Parquet with a schema read off the model's fields (ids as text, times
as UTC timestamps, costs as exact decimals, JSON columns as JSON text), and JSON Lines of the same rows."""

from __future__ import annotations

import datetime
import functools
import io
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from django.db.models import Model

_TYPES = {
    "UUIDField": pa.string(),
    "CharField": pa.string(),
    "TextField": pa.string(),
    "JSONField": pa.string(),
    "BooleanField": pa.bool_(),
    "FloatField": pa.float64(),
    "PositiveIntegerField": pa.int64(),
    "PositiveSmallIntegerField": pa.int32(),
    "IntegerField": pa.int64(),
    "BigAutoField": pa.int64(),
    "AutoField": pa.int64(),
    "ForeignKey": pa.int64(),
    "DateTimeField": pa.timestamp("us", tz="UTC"),
}


def _arrow_type(field) -> pa.DataType:
    kind = field.get_internal_type()
    if kind == "DecimalField":
        return pa.decimal128(field.max_digits, field.decimal_places)
    if kind == "ForeignKey" and field.target_field.get_internal_type() == "UUIDField":
        return pa.string()
    return _TYPES.get(kind, pa.string())


@functools.cache
def schema_of(model: type[Model]) -> pa.Schema:
    """The Parquet schema of a model's rows: one column per concrete field, named by its attname (org_id, …)."""
    return pa.schema([pa.field(f.attname, _arrow_type(f)) for f in model._meta.concrete_fields])


def columns_of(model: type[Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def _plain(value: Any, json_column: bool) -> Any:
    if json_column:
        return None if value is None else orjson.dumps(value).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@functools.cache
def _json_columns(model: type[Model]) -> frozenset[str]:
    return frozenset(f.attname for f in model._meta.concrete_fields if f.get_internal_type() == "JSONField")


def normalise(model: type[Model], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`.values()` rows made ready for Arrow: ids as text, JSON columns as JSON text."""
    json_columns = _json_columns(model)
    return [{name: _plain(value, name in json_columns) for name, value in row.items()} for row in rows]


def read_parquet(data: bytes) -> list[dict[str, Any]]:
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _jsonl_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    """Normalised rows as JSON Lines (times in ISO 8601, costs as decimal strings)."""
    return b"".join(
        orjson.dumps(
            {k: v.isoformat() if isinstance(v, datetime.datetime) else v for k, v in row.items()},
            default=_jsonl_default,
        )
        + b"\n"
        for row in rows
    )


class HourFile:
    """One hour's object being built chunk by chunk (a row group per chunk), so an hour of a busy org is never
    held as Python rows all at once; JSON Lines alongside when asked for."""

    def __init__(self, model: type[Model], *, with_jsonl: bool):
        self.model = model
        self.rows = 0
        self._parquet = io.BytesIO()
        self._writer = pq.ParquetWriter(self._parquet, schema_of(model), compression="zstd")
        self._jsonl = io.BytesIO() if with_jsonl else None

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Normalised rows, in the order they go in the file."""
        if not rows:
            return
        self._writer.write_table(pa.Table.from_pylist(rows, schema=schema_of(self.model)))
        if self._jsonl is not None:
            self._jsonl.write(jsonl(rows))
        self.rows += len(rows)

    def finish(self) -> tuple[bytes, bytes | None]:
        """The Parquet file's bytes, and the JSON Lines' (None when not asked for)."""
        self._writer.close()
        return self._parquet.getvalue(), self._jsonl.getvalue() if self._jsonl is not None else None
