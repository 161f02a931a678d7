"""Time partitions for request records on PostgreSQL, and retention.

Records are range-partitioned by day on PostgreSQL, so retention drops whole partitions past the longest
retention any org has, instead of deleting (and vacuuming) millions of rows; orgs that keep less have their
older rows deleted in batches. A DEFAULT partition catches rows outside the prepared days (clock skew,
imports); when a day's partition is created later, its rows move out of DEFAULT first. SQLite has no
partitions: retention deletes in batches there."""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from tenancy.models import Organization

from .models import ObservabilitySettings, PendingBody, RequestBody, RequestRecord, Score

log = logging.getLogger(__name__)

TABLE = RequestRecord._meta.db_table
_DELETE_BATCH = 10_000


def is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = %s::regclass", [TABLE])
        return cursor.fetchone() is not None


def partition_name(day: datetime.date) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def partitions() -> dict[str, datetime.date]:
    """The daily partitions that exist, by name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    prefix = f"{TABLE}_p"
    return {n: datetime.datetime.strptime(n[len(prefix) :], "%Y%m%d").date() for n in names if n.startswith(prefix)}


def ensure_partitions(days_ahead: int = 7, days_behind: int = 1) -> list[str]:
    """Create the daily partitions around today that are missing. Returns the ones created."""
    if not is_partitioned():
        return []
    existing = partitions()
    today = timezone.now().date()
    created = []
    for offset in range(-days_behind, days_ahead + 1):
        day = today + datetime.timedelta(days=offset)
        name = partition_name(day)
        if name not in existing:
            _create_partition(day, name)
            created.append(name)
    return created


@transaction.atomic
def _create_partition(day: datetime.date, name: str) -> None:
    start, end = day.isoformat(), (day + datetime.timedelta(days=1)).isoformat()
    with connection.cursor() as cursor:
        # Built apart and attached, so rows of that day already sitting in DEFAULT can move in first. With the
        # parent's CHECK constraints (a column added later brings one), which ATTACH requires a partition to have.
        cursor.execute(f'CREATE TABLE "{name}" (LIKE "{TABLE}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
        cursor.execute(
            f'WITH moved AS (DELETE FROM "{TABLE}_default" WHERE created_at >= %s AND created_at < %s RETURNING *) '
            f'INSERT INTO "{name}" SELECT * FROM moved',
            [start, end],
        )
        cursor.execute(f"ALTER TABLE \"{TABLE}\" ATTACH PARTITION \"{name}\" FOR VALUES FROM ('{start}') TO ('{end}')")


def _retention_days(org_ids: list[int]) -> dict[int, int]:
    custom = dict(ObservabilitySettings.objects.filter(org_id__in=org_ids).values_list("org_id", "retention_days"))
    return {org_id: custom.get(org_id, settings.INGATE_RECORD_RETENTION_DAYS) for org_id in org_ids}


def _delete_older(org_id: int, cutoff: datetime.datetime) -> int:
    deleted = 0
    while True:
        ids = list(
            RequestRecord.objects.filter(org_id=org_id, created_at__lt=cutoff).values_list("pk", flat=True)[
                :_DELETE_BATCH
            ]
        )
        if not ids:
            return deleted
        _, by_model = RequestRecord.objects.filter(pk__in=ids).delete()  # bodies go too (counted apart)
        deleted += by_model.get(RequestRecord._meta.label, 0)


def _delete_bodies_before(cutoff: datetime.datetime) -> None:
    """Bodies of records that went with a dropped partition."""
    while True:
        ids = list(RequestBody.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:_DELETE_BATCH])
        if not ids:
            return
        RequestBody.objects.filter(pk__in=ids).delete()


def _delete_orphan_scores() -> None:
    """Scores of records that went with a dropped partition (deleting records through the ORM takes their
    scores with them; dropping a partition does not)."""
    gone = ~Exists(RequestRecord.objects.filter(pk=OuterRef("record_id")))
    while True:
        ids = list(Score.objects.filter(gone).values_list("pk", flat=True)[:_DELETE_BATCH])
        if not ids:
            return
        Score.objects.filter(pk__in=ids).delete()


def enforce_retention(now: datetime.datetime | None = None) -> dict[str, int]:
    """Drop partitions no org still needs; delete the older rows of orgs that keep less. Idempotent."""
    now = now or timezone.now()
    org_ids = list(Organization.objects.values_list("pk", flat=True))
    days = _retention_days(org_ids)
    longest = max(days.values(), default=settings.INGATE_RECORD_RETENTION_DAYS)
    dropped = 0
    if is_partitioned():
        ensure_partitions()
        oldest_kept = (now - datetime.timedelta(days=longest)).date()
        for name, day in sorted(partitions().items(), key=lambda item: item[1]):
            if day + datetime.timedelta(days=1) <= oldest_kept:
                with connection.cursor() as cursor:
                    cursor.execute(f'DROP TABLE "{name}"')
                dropped += 1
        _delete_bodies_before(datetime.datetime.combine(oldest_kept, datetime.time(), datetime.UTC))
        if dropped:
            _delete_orphan_scores()
    deleted = 0
    newest = RequestRecord.objects.aggregate(newest=Max("created_at"))["newest"]
    if newest is not None:
        for org_id, keep in days.items():
            deleted += _delete_older(org_id, now - datetime.timedelta(days=keep))
    if PendingBody.objects.exists():  # bodies waiting for a bucket that never took them: kept no longer than records
        for org_id, keep in days.items():
            PendingBody.objects.filter(org_id=org_id, created_at__lt=now - datetime.timedelta(days=keep)).delete()
    if dropped or deleted:
        log.info("Retention: dropped %d partitions, deleted %d records", dropped, deleted)
    return {"partitions_dropped": dropped, "records_deleted": deleted}
