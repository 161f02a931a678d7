"""The logs' one search box: full-text search over a record's short text (model, session, user, client, route,
properties, error) and, where an org keeps full bodies, its prompt and answer text.

PostgreSQL matches `to_tsvector` expressions that GIN indexes hold (migration 0013, which spells the same
SQL); SQLite matches an FTS5 table that triggers keep in step with the records and bodies tables, so the
writer's insert path (observability/insert.py) is unchanged. Both sides split text on anything that is not a
letter or digit and match every word of the query as a word prefix, case-insensitively: "refund-flow" finds
session `Refund-Flow-42`, "alice@" finds user `alice@example.com`, "haiku" finds `claude-haiku-4-5`."""

from __future__ import annotations

import re

from django.db import connection, connections
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

# The columns searched, in one place: the PostgreSQL expression below and the SQLite triggers (migration 0013, and
# SQLITE_TRIGGERS below)
# list the same ones. Properties are searched as their JSON text (names and values).
RECORD_TEXT_COLUMNS = (
    "model",
    "response_model",
    "provider",
    "session_id",
    "session_name",
    "user_id",
    "client",
    "route",
    "error_type",
    "error",
)
# Bodies are capped before they are tokenised: a tsvector holds at most 1 MB, and the first 200,000
# characters of a prompt and of its answer are what a person searches for.
BODY_CHARS = 200_000


def _joined(columns: tuple[str, ...], table: str = "") -> str:
    prefix = f"{table}." if table else ""
    return " || ' ' || ".join(f'{prefix}"{c}"' for c in columns)


# Kept equal, character for character, to the index expressions of migration 0010: a different expression
# would not use the index (tests/test_logs_search.py checks the plan on PostgreSQL).
RECORD_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace("
    + _joined(RECORD_TEXT_COLUMNS)
    + " || ' ' || \"properties\"::text, '[^[:alnum:]]+', ' ', 'g'))"
)
BODY_DOCUMENT = (
    f"to_tsvector('simple'::regconfig, regexp_replace(left(\"request\", {BODY_CHARS}) || ' ' || "
    f"left(\"response\", {BODY_CHARS}), '[^[:alnum:]]+', ' ', 'g'))"
)
# The partial index leaves out the bodies of orgs that keep metadata only (empty text).
BODY_KEPT = "(\"request\" <> '' OR \"response\" <> '')"
SQLITE_TABLE = "observability_search"
# On PostgreSQL a search reaches the newest this many records by their bodies (all of them by their own text).
BODY_MATCHES = 1000

_WORD = re.compile(r"[^\W_]+")
MAX_TERMS = 12


class SearchTooLong(ValueError):
    pass


def terms(text: str) -> list[str]:
    """The words of a query, lowercased, as both databases split them (punctuation and spaces separate)."""
    found = _WORD.findall(text.lower())
    if len(found) > MAX_TERMS:
        raise SearchTooLong(f"Search for at most {MAX_TERMS} words at a time.")
    return found


def _tsquery(words: list[str]) -> str:
    return " & ".join(f"{word}:*" for word in words)


def _fts5_query(words: list[str]) -> str:
    # The text column only: record_id is indexed for the delete triggers, not for searching.
    return "text : (" + " AND ".join(f'"{word}"*' for word in words) + ")"


def matching(queryset: QuerySet, text: str, *, bodies: bool) -> QuerySet:
    """`queryset`'s records whose text holds every word of `text` (as word prefixes); with `bodies`, also those
    whose prompt or answer does. An empty query (only punctuation) narrows nothing."""
    words = terms(text)
    if not words:
        return queryset
    if connection.vendor == "postgresql":
        query = _tsquery(words)
        found = Q(
            RawSQL(f"{RECORD_DOCUMENT} @@ to_tsquery('simple'::regconfig, %s)", [query], output_field=BooleanField())
        )
        if bodies:
            # The newest BODY_MATCHES records whose bodies match, as an array computed once: `id = ANY(…)` lets
            # the planner OR the records' GIN bitmap with the primary key's (or keep walking the time index),
            # where `id IN (subquery)` made it test every row's text.
            in_bodies = (
                'SELECT "record_id" FROM "observability_requestbody" '
                f"WHERE {BODY_KEPT} AND {BODY_DOCUMENT} @@ to_tsquery('simple'::regconfig, %s) "
                f'ORDER BY "created_at" DESC LIMIT {BODY_MATCHES}'
            )
            found |= Q(RawSQL(f'"observability_requestrecord"."id" = ANY(ARRAY({in_bodies}))', [query], BooleanField()))
        return queryset.filter(found)
    # SQLite: one FTS5 table holds both kinds of rows; records of orgs without bodies simply have no body row.
    kinds = "" if bodies else " AND kind = 'record'"
    sql = f'"observability_requestrecord"."id" IN (SELECT record_id FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH %s{kinds})'
    return queryset.filter(RawSQL(sql, [_fts5_query(words)], output_field=BooleanField()))


# SQLite rebuilds a table for many schema changes (a field's choices, a new column with some defaults), and a
# rebuild drops the table's triggers: a later migration on the records or bodies table would silently stop
# the search from seeing new rows. So after every migrate these are put back where the search table exists
# (observability/apps.py); they are migration 0013's, with IF NOT EXISTS.
SQLITE_TABLE = "observability_search"
SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS observability_search_record_in AFTER INSERT ON observability_requestrecord
    BEGIN
        INSERT INTO {SQLITE_TABLE} (record_id, kind, text) VALUES (
            new.id, 'record', {_joined(RECORD_TEXT_COLUMNS, "new")} || ' ' || new."properties");
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS observability_search_record_out AFTER DELETE ON observability_requestrecord
    BEGIN
        DELETE FROM {SQLITE_TABLE} WHERE rowid IN (
            SELECT rowid FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH 'record_id : "' || old.id || '"');
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS observability_search_body_in AFTER INSERT ON observability_requestbody
        WHEN new.request <> '' OR new.response <> '' BEGIN
        INSERT INTO {SQLITE_TABLE} (record_id, kind, text) VALUES (
            new.record_id, 'body',
            substr(new.request, 1, {BODY_CHARS}) || ' ' || substr(new.response, 1, {BODY_CHARS}));
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS observability_search_body_out AFTER DELETE ON observability_requestbody BEGIN
        DELETE FROM {SQLITE_TABLE} WHERE kind = 'body' AND rowid IN (
            SELECT rowid FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH 'record_id : "' || old.record_id || '"');
    END""",
)


def restore_sqlite_triggers(using: str = "default", **kwargs) -> None:
    """post_migrate: the search triggers back on SQLite after a migration rebuilt the records or bodies table."""
    db = connections[using]
    if db.vendor != "sqlite" or SQLITE_TABLE not in db.introspection.table_names():
        return
    with db.cursor() as cursor:
        for sql in SQLITE_TRIGGERS:
            cursor.execute(sql)
