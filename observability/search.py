"""The logs' one search box: full-text search over a record's short text (model, session, user, client, route,
properties, error) and, where an org keeps full bodies, its prompt and answer text.

PostgreSQL matches `to_tsvector` expressions that GIN indexes hold (migration 0010, which spells the same
SQL); SQLite matches an FTS5 table that triggers keep in step with the records and bodies tables, so the
writer's insert path (observability/insert.py) is unchanged. Both sides split text on anything that is not a
letter or digit and match every word of the query as a word prefix, case-insensitively: "refund-flow" finds
session `Refund-Flow-42`, "alice@" finds user `alice@example.com`, "haiku" finds `claude-haiku-4-5`."""

from __future__ import annotations

import re

from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

# The columns searched, in one place: the PostgreSQL expression below and the SQLite trigger (migration 0010)
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
