"""On PostgreSQL, make request records a table range-partitioned by day (see observability/retention.py).

Partitioned tables need the partition key in every unique constraint, so the primary key becomes
(id, created_at); ids are UUIDs and stay unique. Foreign keys and indexes move to the new table under
their old names. Other databases keep the plain table."""

import datetime

from django.db import migrations

TABLE = "observability_requestrecord"


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            [TABLE],
        )
        foreign_keys = cursor.fetchall()
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE '%%_pkey'", [TABLE]
        )
        indexes = cursor.fetchall()
        cursor.execute(f'ALTER TABLE "{TABLE}" RENAME TO "{TABLE}_old"')
        cursor.execute(f'ALTER TABLE "{TABLE}_old" RENAME CONSTRAINT "{TABLE}_pkey" TO "{TABLE}_old_pkey"')
        for name, _ in foreign_keys:
            cursor.execute(f'ALTER TABLE "{TABLE}_old" DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(
            f'CREATE TABLE "{TABLE}" (LIKE "{TABLE}_old" INCLUDING DEFAULTS) PARTITION BY RANGE (created_at)'
        )
        cursor.execute(f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{TABLE}_pkey" PRIMARY KEY (id, created_at)')
        for name, definition in foreign_keys:
            cursor.execute(f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            cursor.execute(definition)  # CREATE INDEX name ON public.observability_requestrecord ...
        cursor.execute(f'CREATE TABLE "{TABLE}_default" PARTITION OF "{TABLE}" DEFAULT')
        today = datetime.date.today()
        for offset in range(-1, 8):
            day = today + datetime.timedelta(days=offset)
            end = day + datetime.timedelta(days=1)
            cursor.execute(
                f'CREATE TABLE "{TABLE}_p{day:%Y%m%d}" PARTITION OF "{TABLE}" '
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{end.isoformat()}')"
            )
        cursor.execute(f'INSERT INTO "{TABLE}" SELECT * FROM "{TABLE}_old"')
        cursor.execute(f'DROP TABLE "{TABLE}_old"')


class Migration(migrations.Migration):
    dependencies = [("observability", "0001_initial")]
    operations = [migrations.RunPython(partition, migrations.RunPython.noop)]
