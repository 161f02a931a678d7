"""Full-text search for the logs (observability/search.py, whose expressions these must equal).

PostgreSQL: GIN indexes over a `to_tsvector` of each record's short text and of each kept body (on the
partitioned records table, so every partition, present and future, has its own). SQLite: an FTS5 table that
triggers fill as records and bodies are inserted and empty as they are deleted, filled here with the rows
already stored. The SQL is spelled out rather than imported so that this migration means the same thing
forever; tests/test_logs_search.py checks that the searches use these indexes."""

from django.db import migrations

COLUMNS = (
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


def _joined(prefix=""):
    return " || ' ' || ".join(f'{prefix}"{c}"' for c in COLUMNS)


PG_RECORD = (
    "to_tsvector('simple'::regconfig, regexp_replace("
    + _joined()
    + " || ' ' || \"properties\"::text, '[^[:alnum:]]+', ' ', 'g'))"
)
PG_BODY = (
    "to_tsvector('simple'::regconfig, regexp_replace(left(\"request\", 200000) || ' ' || "
    "left(\"response\", 200000), '[^[:alnum:]]+', ' ', 'g'))"
)
BODY_KEPT = "(\"request\" <> '' OR \"response\" <> '')"

SQLITE_TABLE = "observability_search"
SQLITE_RECORD_TEXT = _joined("new.") + " || ' ' || new.\"properties\""
SQLITE_FORWARD = [
    # record_id is indexed (not UNINDEXED) so the delete triggers find a record's rows by MATCH, not by a scan.
    f"CREATE VIRTUAL TABLE {SQLITE_TABLE} USING fts5(record_id, kind UNINDEXED, text, "
    "tokenize = 'unicode61 remove_diacritics 0')",
    f"""CREATE TRIGGER observability_search_record_in AFTER INSERT ON observability_requestrecord BEGIN
        INSERT INTO {SQLITE_TABLE} (record_id, kind, text) VALUES (new.id, 'record', {SQLITE_RECORD_TEXT});
    END""",
    f"""CREATE TRIGGER observability_search_record_out AFTER DELETE ON observability_requestrecord BEGIN
        DELETE FROM {SQLITE_TABLE} WHERE rowid IN (
            SELECT rowid FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH 'record_id : "' || old.id || '"');
    END""",
    f"""CREATE TRIGGER observability_search_body_in AFTER INSERT ON observability_requestbody
        WHEN new.request <> '' OR new.response <> '' BEGIN
        INSERT INTO {SQLITE_TABLE} (record_id, kind, text) VALUES (
            new.record_id, 'body', substr(new.request, 1, 200000) || ' ' || substr(new.response, 1, 200000));
    END""",
    f"""CREATE TRIGGER observability_search_body_out AFTER DELETE ON observability_requestbody BEGIN
        DELETE FROM {SQLITE_TABLE} WHERE kind = 'body' AND rowid IN (
            SELECT rowid FROM {SQLITE_TABLE} WHERE {SQLITE_TABLE} MATCH 'record_id : "' || old.record_id || '"');
    END""",
    f"""INSERT INTO {SQLITE_TABLE} (record_id, kind, text)
        SELECT id, 'record', {_joined()} || ' ' || "properties" FROM observability_requestrecord""",
    f"""INSERT INTO {SQLITE_TABLE} (record_id, kind, text)
        SELECT record_id, 'body', substr(request, 1, 200000) || ' ' || substr(response, 1, 200000)
        FROM observability_requestbody WHERE request <> '' OR response <> ''""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS observability_search_record_in",
    "DROP TRIGGER IF EXISTS observability_search_record_out",
    "DROP TRIGGER IF EXISTS observability_search_body_in",
    "DROP TRIGGER IF EXISTS observability_search_body_out",
    f"DROP TABLE IF EXISTS {SQLITE_TABLE}",
]
PG_FORWARD = [
    f"CREATE INDEX IF NOT EXISTS record_search ON observability_requestrecord USING gin (({PG_RECORD}))",
    f"CREATE INDEX IF NOT EXISTS body_search ON observability_requestbody USING gin (({PG_BODY})) WHERE {BODY_KEPT}",
]
PG_BACKWARD = ["DROP INDEX IF EXISTS record_search", "DROP INDEX IF EXISTS body_search"]


def _run(statements):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        chosen = statements.get(vendor, [])
        with schema_editor.connection.cursor() as cursor:
            for sql in chosen:
                cursor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("observability", "0012_pending_body")]
    operations = [
        migrations.RunPython(
            _run({"postgresql": PG_FORWARD, "sqlite": SQLITE_FORWARD}),
            _run({"postgresql": PG_BACKWARD, "sqlite": SQLITE_BACKWARD}),
        )
    ]
