"""Export runs: each org's records written to its bucket hour by hour, and the bodies it keeps only there.

An hour goes to the same objects every time (`records/date=YYYY-MM-DD/part-HH.parquet`, and `.jsonl`), written
whole from the database, so a run done again rewrites them and nothing is doubled. The org's watermark
(`StorageExport.exported_until`) moves past an hour only once its objects are written: a run that fails (the
bucket is down, the keys are wrong) leaves it where it was, the run is listed as failed on the page and in
/ingate/health, the records stay in Ingate, and the next run starts again from there. An hour is written once it
ended SETTLE ago, so records still on their way (the record stream) are in it.

Bodies kept in Ingate's database go to `bodies/date=…/part-HH.parquet` with their hour's records. Bodies of an
org that keeps them only in its bucket wait in PendingBody: each run merges them into their hour's bodies object
(by record id, so a retried merge doubles nothing) and deletes them once it is written."""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Min
from django.utils import timezone

from tenancy.models import ExportFormat, RunStatus, StorageExport, StorageExportRun

from ..models import RequestBody, RequestRecord
from . import files
from .bucket import Bucket, BucketError
from .models import PendingBody

log = logging.getLogger(__name__)

HOUR = datetime.timedelta(hours=1)
SETTLE = datetime.timedelta(minutes=5)
# A run writes at most this many hours (a week); a bucket added to an org with months of records catches up over
# the next runs.
MAX_HOURS_PER_RUN = 168
# Bodies moved to the bucket per run, at most (large bodies: a run stays within memory).
MAX_BODIES_PER_RUN = 20_000
# A run still marked running after this long died with its process; another may start.
_STALE_RUN = datetime.timedelta(hours=1)
# Runs older than this are deleted (the page and the API list the recent ones).
RUNS_KEPT = datetime.timedelta(days=30)
_CHUNK = 500
_BODY_COLUMNS = ("record_id", "created_at", "metadata", "request", "response", "truncated")


def floor_hour(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)


def object_key(bucket: Bucket, kind: str, hour: datetime.datetime, ext: str) -> str:
    """Where an hour's rows go: the same name every time, so a run done again overwrites instead of adding."""
    return bucket.key(kind, f"date={hour:%Y-%m-%d}", f"part-{hour:%H}.{ext}")


def export_due(now: datetime.datetime | None = None) -> int:
    """Run the export of every enabled org whose next hours are due (celery beat; the embedded writer). Returns
    the runs made. Orgs are done one after the other: one bucket that hangs delays the others, never the proxy."""
    now = now or timezone.now()
    done = 0
    for export in StorageExport.objects.filter(enabled=True).only("org_id", "exported_until", "every_hours"):
        end = floor_hour(now - SETTLE)
        if export.exported_until is not None and export.exported_until + export.every_hours * HOUR > end:
            if not PendingBody.objects.filter(org_id=export.org_id).exists():
                continue
        if export_org(export.org_id, now=now) is not None:
            done += 1
    return done


def export_org(org_id: int, *, trigger: str = "schedule", now: datetime.datetime | None = None):
    """One run for one org: the hours since its watermark, then its pending bodies. Returns the run (None when
    another run of the org is under way or the org has no bucket)."""
    now = now or timezone.now()
    export = StorageExport.objects.select_related("org").filter(org_id=org_id).first()
    if export is None:
        return None
    running = StorageExportRun.objects.filter(org_id=org_id, status=RunStatus.RUNNING, started_at__gt=now - _STALE_RUN)
    if running.exists():
        return None
    end = floor_hour(now - SETTLE)
    start = export.exported_until or _first_hour(org_id) or end
    run = StorageExportRun.objects.create(org_id=org_id, trigger=trigger, started_at=now, window_start=start)
    hour = start
    try:
        bucket = Bucket(export)
        bucket.check()
        while hour < end and hour < start + MAX_HOURS_PER_RUN * HOUR:
            records, bodies, written = _write_hour(bucket, export, hour)
            hour += HOUR
            # The watermark moves only now that the hour is in the bucket.
            StorageExport.objects.filter(pk=export.pk).update(exported_until=hour)
            run.records += records
            run.bodies += bodies
            run.written += written
        bodies, written = _move_pending_bodies(bucket, export)
        run.bodies += bodies
        run.written += written
        run.status = RunStatus.SUCCEEDED
    except BucketError as exc:
        run.status, run.error = RunStatus.FAILED, str(exc)
        log.warning("Export of org %s to its bucket failed: %s", org_id, exc)
    except Exception as exc:  # whatever went wrong, the run is marked failed and says why
        run.status, run.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"[:1000]
        log.exception("Export of org %s failed", org_id)
    run.window_end = hour
    run.finished_at = timezone.now()
    run.save()
    # A bucket down for a week leaves a failed run every few minutes: the page shows the last ones.
    StorageExportRun.objects.filter(org_id=org_id, started_at__lt=now - RUNS_KEPT).delete()
    return run


def _first_hour(org_id: int) -> datetime.datetime | None:
    """Where an org's first run starts: the hour of its oldest record still kept."""
    oldest = RequestRecord.objects.filter(org_id=org_id).aggregate(first=Min("created_at"))["first"]
    return floor_hour(oldest) if oldest else None


def _put(bucket: Bucket, kind: str, hour: datetime.datetime, built: files.HourFile) -> list[str]:
    """Upload an hour's object (and its JSON Lines); returns the object keys written."""
    parquet, lines = built.finish()
    key = object_key(bucket, kind, hour, "parquet")
    bucket.put(key, parquet, "application/vnd.apache.parquet")
    keys = [key]
    if lines is not None:
        key = object_key(bucket, kind, hour, "jsonl")
        bucket.put(key, lines, "application/x-ndjson")
        keys.append(key)
    return keys


def _write_hour(bucket: Bucket, export: StorageExport, hour: datetime.datetime) -> tuple[int, int, list[str]]:
    """An hour's records (and the bodies Ingate keeps of them), rewritten whole, read and written _CHUNK rows at a
    time. An hour without records writes nothing."""
    jsonl = export.formats == ExportFormat.PARQUET_JSONL
    records = files.HourFile(RequestRecord, with_jsonl=jsonl)
    with_bodies = export.include_bodies and not export.bodies_only_in_bucket
    bodies = files.HourFile(PendingBody, with_jsonl=jsonl) if with_bodies else None
    query = (
        RequestRecord.objects.filter(org_id=export.org_id, created_at__gte=hour, created_at__lt=hour + HOUR)
        .order_by("created_at", "id")
        .values_list(*files.columns_of(RequestRecord))
    )
    columns = files.columns_of(RequestRecord)
    chunk: list[tuple] = []
    for values in query.iterator(chunk_size=_CHUNK):
        chunk.append(values)
        if len(chunk) >= _CHUNK:
            _add_chunk(export, columns, chunk, records, bodies)
            chunk = []
    _add_chunk(export, columns, chunk, records, bodies)
    if not records.rows:
        return 0, 0, []
    written = _put(bucket, "records", hour, records)
    if bodies is not None and bodies.rows:
        written += _put(bucket, "bodies", hour, bodies)
    return records.rows, bodies.rows if bodies is not None else 0, written


def _add_chunk(export, columns, chunk, records: files.HourFile, bodies: files.HourFile | None) -> None:
    rows = files.normalise(RequestRecord, [dict(zip(columns, values, strict=True)) for values in chunk])
    records.add(rows)
    if bodies is not None and rows:
        found = RequestBody.objects.filter(record_id__in=[row["id"] for row in rows]).values(*_BODY_COLUMNS)
        kept = sorted(
            ({**row, "org_id": export.org_id} for row in found), key=lambda r: (r["created_at"], str(r["record_id"]))
        )
        bodies.add(files.normalise(PendingBody, kept))


def _move_pending_bodies(bucket: Bucket, export: StorageExport) -> tuple[int, list[str]]:
    """Bodies the org keeps only in its bucket: those waiting in PendingBody, and any left in RequestBody (kept
    before the option was on, or in the seconds the record writer took to learn of it), merged into their hour's
    bodies object and then deleted from the database."""
    pending = list(
        PendingBody.objects.filter(org_id=export.org_id)
        .order_by("created_at")
        .values("org_id", *_BODY_COLUMNS)[:MAX_BODIES_PER_RUN]
    )
    kept = []
    if export.bodies_only_in_bucket:
        kept = [
            {**row, "org_id": export.org_id}
            for row in RequestBody.objects.filter(record__org_id=export.org_id)
            .order_by("created_at")
            .values(*_BODY_COLUMNS)[:MAX_BODIES_PER_RUN]
        ]
    by_hour: dict[datetime.datetime, list[dict[str, Any]]] = defaultdict(list)
    for row in pending + kept:
        by_hour[floor_hour(row["created_at"])].append(row)
    written: list[str] = []
    moved = 0
    for hour, rows in sorted(by_hour.items()):
        fresh = files.normalise(PendingBody, rows)
        existing = bucket.get(object_key(bucket, "bodies", hour, "parquet"))
        merged = {row["record_id"]: row for row in (files.read_parquet(existing) if existing else [])}
        merged.update((row["record_id"], row) for row in fresh)
        ordered = sorted(merged.values(), key=lambda row: (row["created_at"], row["record_id"]))
        built = files.HourFile(PendingBody, with_jsonl=export.formats == ExportFormat.PARQUET_JSONL)
        built.add(ordered)
        written += _put(bucket, "bodies", hour, built)
        ids = [row["record_id"] for row in rows]
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            PendingBody.objects.filter(org_id=export.org_id, record_id__in=chunk).delete()
            RequestBody.objects.filter(record_id__in=chunk, record__org_id=export.org_id).delete()
        moved += len(rows)
    return moved, written


# --- without Celery beat (embedded mode) -----------------------------------------------------------------------

_embedded_lock = threading.Lock()
_embedded_last = [-float("inf")]


def maybe_export() -> None:
    """What beat does with Redis, done by the embedded record writer: every INGATE_STORAGE_EXPORT_SECONDS, the due
    runs, on a thread of their own so that a slow bucket never holds the records back. Costs one check of the
    clock when it is not time; nothing when no org has a bucket."""
    if time.monotonic() - _embedded_last[0] < settings.INGATE_STORAGE_EXPORT_SECONDS:
        return
    if not _embedded_lock.acquire(blocking=False):
        return  # the last round is still running
    _embedded_last[0] = time.monotonic()

    def run() -> None:
        try:
            export_due()
            close_old_connections()
        except Exception:  # tried again next round
            log.exception("Storage export round failed")
        finally:
            _embedded_lock.release()

    threading.Thread(target=run, name="ingate-storage-export", daemon=True).start()
