"""Bulk insert of record rows (and their body rows) without the ORM's per-field work. Rows already stored (a
replayed batch, an entry streamed twice) are skipped by the database, which says which rows it did insert
(RETURNING): only those may be counted in the rollups.

On PostgreSQL the rows go in with COPY into a temporary table, then one INSERT … SELECT … ON CONFLICT DO NOTHING:
a multi-row INSERT of ~10,000 parameters was re-parsed by psycopg's client-side binding on every batch (half
the worker's CPU), where COPY hands values over as text in C. Values travel as the rows hold them (ids, times
and costs as text, parsed by the server); only JSON columns are serialised here. SQLite takes multi-row INSERTs."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import Model
from django.db.models.constants import OnConflict

from .models import RequestBody, RequestRecord

# Rows per statement: well under SQLite's 32,766 and PostgreSQL's 65,535 parameters at ~50 columns a row.
_ROWS_PER_STATEMENT = 200


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson refuses (integers beyond 64 bits) the standard library writes
        return json.dumps(value)


def _converter(field, vendor: str) -> Callable[[Any], Any] | None:
    """How a row's value becomes a parameter for `field`'s column, or None when it goes as it is."""
    kind = field.get_internal_type()
    if kind == "JSONField":
        return _json_text
    if vendor == "postgresql":
        return None  # text the server parses by the column's type (uuid, timestamptz, numeric) is taken as it is
    ops = connection.ops
    if kind == "UUIDField":
        return lambda v: uuid.UUID(str(v)).hex
    if kind == "DateTimeField":
        return lambda v: ops.adapt_datetimefield_value(
            v if isinstance(v, datetime.datetime) else datetime.datetime.fromisoformat(v)
        )
    if kind == "DecimalField":
        return lambda v: str(Decimal(v))
    if field.is_relation and field.target_field.get_internal_type() == "UUIDField":
        return lambda v: uuid.UUID(str(v)).hex  # a body's record id
    return None


class _Table:
    """What inserting into one model's table needs, worked out once per connection vendor."""

    def __init__(self, model: type[Model], vendor: str):
        fields = model._meta.concrete_fields
        self.model = model
        self.fields = fields
        self.table = model._meta.db_table
        self.columns = [field.column for field in fields]
        self.pk = model._meta.pk.column
        # (row key, default, converter or None) per column.
        self.values = [(field.attname, field.get_default(), _converter(field, vendor)) for field in fields]

    def params(self, row: dict[str, Any]) -> list[Any]:
        out = []
        for name, default, convert in self.values:
            value = row.get(name, default)
            out.append(value if convert is None or value is None else convert(value))
        return out


_TABLES: dict[tuple[type[Model], str], _Table] = {}


def _table(model: type[Model]) -> _Table:
    key = (model, connection.vendor)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = _Table(model, connection.vendor)
    return table


def insert_records(rows: list[dict[str, Any]]) -> set[str]:
    """Insert `rows`, skipping ids already stored. Returns the ids this call inserted."""
    if not rows:
        return set()
    return {str(uuid.UUID(str(pk))) for pk in _insert(_table(RequestRecord), rows, returning=True)}


def insert_bodies(bodies: list[dict[str, Any]]) -> None:
    """Insert body rows (RequestBody values), skipping records that already have one."""
    if bodies:
        _insert(_table(RequestBody), bodies, returning=False)


def _insert(table: _Table, rows: list[dict[str, Any]], returning: bool) -> list[Any]:
    if connection.vendor == "postgresql":
        return _copy(table, rows, returning)
    return _values(table, rows, returning)


def _copy(table: _Table, rows: list[dict[str, Any]], returning: bool) -> list[Any]:
    ops = connection.ops
    target = ops.quote_name(table.table)
    staging = ops.quote_name(f"ingate_staging_{table.table}")
    columns = ", ".join(ops.quote_name(c) for c in table.columns)
    sql = f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} ON CONFLICT DO NOTHING"
    if returning:
        sql += f" RETURNING {ops.quote_name(table.pk)}"
    # In a transaction (the caller's, or one of its own): the staging table empties itself at commit.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        # Per session, emptied at every commit; created again if a rolled-back transaction took it away.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(table.params(row))
        cursor.execute(sql)
        inserted = [pk for (pk,) in cursor.fetchall()] if returning else []
        cursor.execute(f"DELETE FROM {staging}")  # the next batch of this transaction (a split half) starts empty
    return inserted


def _values(table: _Table, rows: list[dict[str, Any]], returning: bool) -> list[Any]:
    ops = connection.ops
    fields = table.fields
    placeholders = "({})".format(", ".join(["%s"] * len(table.columns)))
    head = "{} {} ({}) VALUES ".format(
        ops.insert_statement(on_conflict=OnConflict.IGNORE),
        ops.quote_name(table.table),
        ", ".join(ops.quote_name(c) for c in table.columns),
    )
    tail = " " + ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None)
    if returning:
        tail += f" RETURNING {ops.quote_name(table.pk)}"
    inserted: list[Any] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            params = [value for row in chunk for value in table.params(row)]
            cursor.execute(head + ", ".join([placeholders] * len(chunk)) + tail, params)
            if returning:
                inserted.extend(pk for (pk,) in cursor.fetchall())
    return inserted
