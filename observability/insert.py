"""Bulk insert of record rows (and their body rows) without the ORM's per-field work. Rows already stored (a
replayed batch, an entry streamed twice) are skipped by the database, which says which rows it did insert
(RETURNING): only those may be counted in the rollups.

On PostgreSQL the rows go in with COPY into a temporary table, then one INSERT … SELECT … ON CONFLICT DO NOTHING:
a multi-row INSERT of ~10,000 parameters was re-parsed by psycopg's client-side binding on every batch (half
the worker's CPU), where COPY hands values over as text in C. Values travel as the rows hold them (ids, times
and costs as text, parsed by the server); only JSON columns are serialised here. On SQLite, whose transactions
start with the write lock (transaction_mode IMMEDIATE), one query finds the ids already stored and one
executemany of a prepared single-row INSERT writes the rest: Django's cursor rewrote every placeholder of a
multi-row INSERT on each statement."""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Callable, Iterable
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
    if kind == "UUIDField" or field.is_relation and field.target_field.get_internal_type() == "UUIDField":
        return _uuid_hex  # a record's id, a body's record id
    if kind == "DateTimeField":
        return lambda v: (
            _utc_text(v)
            or ops.adapt_datetimefield_value(
                v if isinstance(v, datetime.datetime) else datetime.datetime.fromisoformat(v)
            )
        )
    if kind == "DecimalField":
        return lambda v: v if type(v) is str and _DECIMAL.fullmatch(v) else str(Decimal(v))
    return None


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UTC_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00")
# What str(Decimal) writes for a cost (build_row's): no exponent, no sign, nothing to normalise.
_DECIMAL = re.compile(r"\d+(\.\d+)?")


def _uuid_hex(value: Any) -> str:
    """A UUID as Django keeps it on SQLite (32 hex digits); the writer's ids, canonical, without parsing them."""
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value.replace("-", "")
    return uuid.UUID(str(value)).hex


def _utc_text(value: Any) -> str | None:
    """build_row's created_at (UTC, ISO) as Django keeps a datetime on SQLite (naive UTC, a space between), or
    None for anything else."""
    if type(value) is str and _UTC_ISO.fullmatch(value):
        return f"{value[:10]} {value[11:-6]}"
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
        if vendor == "sqlite":  # sqlite3's own placeholders: the statement goes to the driver as it is
            quote = connection.ops.quote_name
            names = ", ".join(quote(c) for c in self.columns)
            self.insert_one = (
                f"INSERT INTO {quote(self.table)} ({names}) VALUES ({', '.join(['?'] * len(self.columns))})"
            )
            self.select_ids = f"SELECT {quote(self.pk)} FROM {quote(self.table)} WHERE {quote(self.pk)} IN ({{}})"

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
    return {_canonical(pk) for pk in _insert(_table(RequestRecord), rows, returning=True)}


def _canonical(pk: Any) -> str:
    """A stored record id as the writer's rows hold it (PostgreSQL returns UUIDs, SQLite its 32 hex digits)."""
    if type(pk) is uuid.UUID:
        return str(pk)
    if type(pk) is str and len(pk) == 32:
        return f"{pk[:8]}-{pk[8:12]}-{pk[12:16]}-{pk[16:20]}-{pk[20:]}"
    return str(uuid.UUID(str(pk)))


def insert_bodies(bodies: list[dict[str, Any]], model: type[Model] = RequestBody) -> None:
    """Insert body rows (RequestBody values; `model`: PendingBody, for bodies kept only in the org's bucket),
    skipping records that already have one."""
    if bodies:
        _insert(_table(model), bodies, returning=False)


def _insert(table: _Table, rows: list[dict[str, Any]], returning: bool) -> list[Any]:
    if connection.vendor == "postgresql":
        return _copy(table, rows, returning)
    if connection.in_atomic_block and getattr(connection, "transaction_mode", None) == "IMMEDIATE":
        return _executemany(table, rows, returning)
    return _values(table, rows, returning)


def _executemany(table: _Table, rows: list[dict[str, Any]], returning: bool) -> list[Any]:
    """SQLite, in a transaction that holds the write lock: nobody else can insert between the lookup and the
    insert, so the ids not found are exactly the rows this call inserts (each once, as ON CONFLICT did)."""
    pk_index = table.columns.index(table.pk)
    params = [table.params(row) for row in rows]
    with connection.wrap_database_errors:  # sqlite3's errors as Django's (OperationalError: retry, not blame)
        cursor = connection.connection.cursor()
        try:
            seen: set[Any] = set()
            for start in range(0, len(params), _ROWS_PER_STATEMENT):
                ids = [values[pk_index] for values in params[start : start + _ROWS_PER_STATEMENT]]
                cursor.execute(table.select_ids.format(", ".join(["?"] * len(ids))), ids)
                seen.update(pk for (pk,) in cursor.fetchall())
            fresh = []
            for values in params:
                if values[pk_index] not in seen:
                    seen.add(values[pk_index])
                    fresh.append(values)
            cursor.executemany(table.insert_one, fresh)
        finally:
            cursor.close()
    return [values[pk_index] for values in fresh] if returning else []


def _copy(table: _Table, rows: list[dict[str, Any]], returning: bool) -> list[Any]:
    tail = "ON CONFLICT DO NOTHING"
    if returning:
        tail += f" RETURNING {connection.ops.quote_name(table.pk)}"
    return _through_staging(table.table, table.columns, (table.params(row) for row in rows), tail, returning)


def upsert(model: type[Model], columns: list[str], rows: list[tuple], tail: str) -> None:
    """PostgreSQL: insert `rows` (values in `columns` order, as Python values) through a COPY, ending with `tail`
    (ON CONFLICT … DO UPDATE …; it names the rows as `excluded`). One statement, whatever the rows' number."""
    _through_staging(model._meta.db_table, columns, rows, tail, False, whole=False)


def _through_staging(
    table: str, names: list[str], rows: Iterable[list | tuple], tail: str, returning: bool, whole: bool = True
) -> list:
    """`whole`: the staging table has every column of the target (and its defaults), else only `names`."""
    ops = connection.ops
    target = ops.quote_name(table)
    staging = ops.quote_name(f"ingate_staging_{table}" if whole else f"ingate_staging_{table}_{len(names)}")
    columns = ", ".join(ops.quote_name(c) for c in names)
    shape = f"(LIKE {target} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    if not whole:
        shape = f"ON COMMIT DELETE ROWS AS SELECT {columns} FROM {target} WITH NO DATA"
    # In a transaction (the caller's, or one of its own): the staging table empties itself at commit.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        # Per session, emptied at every commit; created again if a rolled-back transaction took it away.
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} {shape}")
        with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
            for values in rows:
                copy.write_row(values)
        cursor.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} {tail}")
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
