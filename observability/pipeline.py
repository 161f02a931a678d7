"""The record pipeline: the proxy hands over records without waiting; a writer thread prices and
attributes them and bulk-inserts batches.

Without Redis the writer inserts straight into the database. With Redis, batches go to a Redis stream first
(one entry per batch of records, one round trip, never per request) and every gateway process's writer consumes that
stream as one consumer group: an entry is acknowledged only after its row is committed, and entries a dead
process had read are claimed by the others after INGATE_RECORD_CLAIM_SECONDS. Inserts ignore ids already
present and the rollups count only the rows the database says it inserted, so an entry streamed twice (a write
that timed out but was applied) or a batch replayed after a crash is never counted twice.

No record can hold the others back: rows are sanitised, and a batch that still fails is split until the row
at fault is found; that one goes to the dead letters (DeadRecord) and the rest are written."""

from __future__ import annotations

import collections
import contextlib
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from django.db.models import F
from django.utils import timezone

from proxy import formats, invalidation
from proxy.codes import ErrorCode
from proxy.formats import Tokens
from proxy.records import Outcome, ProxyRecord
from tenancy.models import APIKey, App, Organization, Team
from tenancy.webhooks import outbox as webhook_outbox
from tenancy.webhooks import sources as webhook_sources

from . import limits, retention, rollups
from .export import runs as exports
from .insert import insert_bodies, insert_records
from .models import DeadRecord, PendingBody
from .pricing import PriceBook, UnpricedUsage, cost_of
from .rows import OrgPolicies, build_row, record_cost, slim, unslim
from .sanitise import clean_error, clean_text
from .selectors import body_capture_bytes

log = logging.getLogger(__name__)

GROUP = "writers"
# The Celery task that drains the stream (observability/tasks.py). The writer asks for it by name: the task
# module builds on this one, not the reverse.
INGEST_TASK = "observability.ingest_records"
# The writer makes sure the coming days' partitions exist (PostgreSQL), so it never depends on celery beat.
_PARTITION_CHECK_SECONDS = 3600.0
# Without Redis no celery beat runs, so the gateway's own writer enforces retention, as often as beat would.
_RETENTION_SECONDS = 3600.0


# A stream entry holds a batch of records up to about this size (bodies kept in full can be large).
_ENTRY_BYTES = 1 << 20

# The database is away or overloaded: the batch is retried later, and no row is blamed for it.
_UNAVAILABLE = (OperationalError, InterfaceError)


@contextlib.contextmanager
def _collector_paused():
    """Pause the cyclic garbage collector while a batch is turned into rows: records and rows are plain data
    without cycles, yet the thousands of dicts a batch allocates set off collections that walked every object
    of the process, up to a third of the time spent reading records. Collections resume (and catch up) after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def store_records(records: Iterable[ProxyRecord], policies: OrgPolicies) -> int:
    """Price, attribute, sanitise and insert records (and their bodies) in one transaction, with their rollups.
    A record that still cannot be stored goes to the dead letters instead. Returns the rows inserted."""
    prices = PriceBook()
    with _collector_paused(), transaction.atomic():
        rows: list[dict[str, Any]] = []
        by_id: dict[str, ProxyRecord] = {}
        for record in records:
            if record.request_id in by_id:
                continue  # the same entry streamed twice and read in one batch
            by_id[record.request_id] = record
            policy = policies.of(record.org_id)  # a database error here is the database's, not the record's
            try:
                row = build_row(record, *policy, prices)
            except Exception as exc:  # noqa: BLE001  (one odd record must not stop the others)
                dead_letter(record, stage="build", error=exc)
                continue
            if "body" in row and policies.bodies_in_bucket(record.org_id):
                row["pending_body"] = {**row.pop("body"), "org_id": record.org_id}  # for the bucket only
            rows.append(row)
        _drop_dangling(rows, by_id)
        return _insert_splitting(rows, by_id)


def _drop_dangling(rows: list[dict[str, Any]], records: dict[str, ProxyRecord]) -> None:
    """Rows whose org, team, app or key was deleted while they were in flight. The foreign keys are checked only
    at commit (deferred), where one such row would fail the whole batch on every retry: a gone team, app or key
    is cleared (what deleting it does to stored records), a gone org's record goes to the dead letters."""
    related = {"org_id": Organization, "team_id": Team, "app_id": App, "key_id": APIKey}
    wanted = {name: {row[name] for row in rows if row.get(name) is not None} for name in related}
    present = _present({related[name]: ids for name, ids in wanted.items() if ids})
    for name, model in related.items():
        gone = wanted[name] - present.get(model, set())
        if not gone:
            continue
        for row in list(rows):
            if row.get(name) not in gone:
                continue
            if name == "org_id":
                rows.remove(row)
                dead_letter(
                    records[row["id"]], stage="insert", error=LookupError(f"organization {row[name]} no longer exists")
                )
            else:
                row["flags"].append(f"{name}: {row[name]} no longer exists, cleared")
                row[name] = None


def _present(wanted: dict[type, set[int]]) -> dict[type, set[int]]:
    """Which of the ids still exist, per model: one round trip for all of them (a UNION ALL of their lookups)."""
    if not wanted:
        return {}
    ops = connection.ops
    parts, params, models = [], [], list(wanted)
    for n, model in enumerate(models):
        ids = sorted(wanted[model])
        pk = ops.quote_name(model._meta.pk.column)
        parts.append(
            f"SELECT {n}, {pk} FROM {ops.quote_name(model._meta.db_table)} WHERE {pk} IN ({', '.join(['%s'] * len(ids))})"
        )
        params.extend(ids)
    found: dict[type, set[int]] = {model: set() for model in models}
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        for n, pk in cursor.fetchall():
            found[models[n]].add(pk)
    return found


def _insert_splitting(rows: list[dict[str, Any]], records: dict[str, ProxyRecord]) -> int:
    if not rows:
        return 0
    try:
        with transaction.atomic():  # a savepoint: a failed half leaves the other half's work in place
            return _insert(rows)
    except _UNAVAILABLE:
        raise
    except Exception as exc:  # noqa: BLE001  (split until the row at fault is found)
        if len(rows) == 1:
            dead_letter(records[rows[0]["id"]], stage="insert", error=exc)
            return 0
        middle = len(rows) // 2
        return _insert_splitting(rows[:middle], records) + _insert_splitting(rows[middle:], records)


def _insert(rows: list[dict[str, Any]]) -> int:
    inserted = insert_records(rows)
    fresh = [row for row in rows if row["id"] in inserted]
    insert_bodies([row["body"] for row in fresh if "body" in row])
    insert_bodies([row["pending_body"] for row in fresh if "pending_body" in row], model=PendingBody)
    rollups.apply(fresh)  # only what this insert added: nothing counts twice
    _webhook_events(fresh)
    return len(fresh)


# What `request.failed` means: any ending but a good answer, a refusal by the org's own limits (those have
# `ratelimit.exceeded` and the budget events) and a client that hung up.
WEBHOOK_FAILED_OUTCOMES = frozenset(Outcome) - {Outcome.OK, Outcome.LIMITED, Outcome.CLIENT_DISCONNECT}


def _webhook_events(rows: list[dict[str, Any]]) -> None:
    """Webhook events the new rows cause (rate limits, failures, guardrails), in the rows' transaction: sent
    once it commits, and never twice for a row. Their trouble must not cost the records: a savepoint of its own."""
    try:
        with transaction.atomic():
            webhook_sources.on_records(
                rows, rate_limited=ErrorCode.RATE_LIMITED, failed_outcomes=WEBHOOK_FAILED_OUTCOMES
            )
    except _UNAVAILABLE:
        raise
    except Exception:  # webhooks must not cost the records
        log.exception("Webhook events for %d records could not be recorded", len(rows))


def dead_letter(record: ProxyRecord, *, stage: str, error: BaseException) -> None:
    """Keep a record that could not be stored where an operator sees it (admin: Dead records), counting attempts."""
    log.error("Record %s could not be stored (%s); kept as a dead record", record.request_id, error)
    record_id = clean_text(str(record.request_id))[0][:64]
    now = timezone.now()
    fields = {"stage": stage, "error": clean_error(error), "last_seen": now}
    if DeadRecord.objects.filter(record_id=record_id).update(attempts=F("attempts") + 1, **fields):
        return
    try:
        with transaction.atomic():
            DeadRecord.objects.create(
                record_id=record_id,
                org_id=record.org_id if isinstance(record.org_id, int) else None,
                payload=slim(record).decode("utf-8", "replace"),
                first_seen=now,
                **fields,
            )
    except IntegrityError:  # another writer dead-lettered it at the same moment
        DeadRecord.objects.filter(record_id=record_id).update(attempts=F("attempts") + 1, **fields)


def _close_old_connections() -> None:
    """Django's close_old_connections, except that the writer keeps its own SQLite connection from flush to flush:
    SQLite runs with CONN_MAX_AGE 0, so every flush (five a second) reopened the file and reran its PRAGMAs, ~6 %
    of the embedded writer's time. A connection in error, or left outside autocommit, is still closed."""
    for conn in connections.all(initialized_only=True):
        if conn.vendor == "sqlite":
            conn.close_at = None
        conn.close_if_unusable_or_obsolete()


class RecordPipeline:
    """The proxy's record sink (INGATE_RECORD_SINK). `submit` is a deque append: it never blocks or raises."""

    def __init__(self, consumer: str | None = None):
        self.batch_size = settings.INGATE_RECORD_BATCH_SIZE
        self.interval = settings.INGATE_RECORD_FLUSH_SECONDS
        self.max_pending = settings.INGATE_RECORD_MAX_PENDING
        self.redis_url = settings.REDIS_URL
        self.claim_ms = int(settings.INGATE_RECORD_CLAIM_SECONDS * 1000)
        self.stream = settings.INGATE_RECORD_STREAM
        self.ingest_here = not self.redis_url or settings.INGATE_RECORD_INGEST == "gateway"
        self._kicked = 0.0
        self._kick_owed = False
        self._pending: collections.deque[ProxyRecord] = collections.deque()
        # Side notes from the proxy that are not records (circuit transitions), bounded: for webhooks.
        self._notes: collections.deque[dict] = collections.deque(maxlen=1000)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._policies = OrgPolicies()
        invalidation.add_listener(self._policies.invalidate)
        self._redis = None
        # Stream entries per read: one to begin with (an entry may hold a batch), then what brings a batch.
        self._count = 1
        # One consumer name per process: a restarted process is a new consumer, and the old one's pending
        # entries are claimed after INGATE_RECORD_CLAIM_SECONDS.
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._partitions_checked = -_PARTITION_CHECK_SECONDS
        self._retention_enforced = -_RETENTION_SECONDS
        self.dropped = 0

    # --- the proxy's side ------------------------------------------------------------------------

    def body_capture_bytes(self, org_id: int) -> int:
        """How much of a request's and response's bodies to keep for an org's records (its body mode); asked by
        the proxy with the org's credentials, on its database threads."""
        return body_capture_bytes(org_id)

    def price(self, record: ProxyRecord) -> float | None:
        """What a record's usage costs, as its stored row will say (the org's overrides included): how Ingate's
        own calls (playground, evals, judges) learn their cost. Blocking: the proxy calls it on its DB threads."""
        tokens = formats.tokens(record.provider, record.usage)
        if tokens is None or record.org_id is None:
            return None
        cost = record_cost(record, tokens, self._policies.of(record.org_id)[0])
        return float(cost.total) if cost is not None else None

    def unit_prices(self, org_id: int, provider: str, model: str) -> tuple[float, float, float, float] | None:
        """USD per input, output, cache-read and cache-write token of `model` for an org (its price overrides
        included), or None when it has no price: what the limits stage reserves a request's worst case with and
        settles it by. Blocking (DB threads)."""
        overrides = self._policies.of(org_id)[0]
        million = 1_000_000

        def price(**tokens):
            return cost_of(Tokens(**tokens), provider=provider, models=[model], overrides=overrides)

        try:
            prompt, answer = price(input=million), price(output=million)
            read, write = price(input=million, cache_read=million), price(input=million, cache_write=million)
        except UnpricedUsage:
            return None
        if prompt is None or answer is None:
            return None
        return (
            float(prompt.total) / million,
            float(answer.total) / million,
            float(read.cache) / million if read is not None else float(prompt.total) / million,
            float(write.cache) / million if write is not None else float(prompt.total) / million,
        )

    def budget_spend(self, org_id: int) -> dict[int, float]:
        """Each budget's recorded spend this period (the database's), to seed the limits' counters. Blocking."""
        return {budget_id: float(spend) for budget_id, spend in limits.spend_by_budget(org_id).items()}

    def submit(self, record: ProxyRecord) -> None:
        if len(self._pending) >= self.max_pending:
            self.dropped += 1  # the database and Redis have both been unreachable for a long time
            if self.dropped % 1000 == 1:
                log.error("Record pipeline is full (%d pending): dropped %d records", self.max_pending, self.dropped)
            return
        self._pending.append(record)
        if self._thread is None:
            self._start()
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        """Start the writer at the gateway's startup rather than at its first record: in the embedded mode its
        rounds also run retention, budget alerts and (by nudging their thread) webhook retries left by a
        previous run, which must not wait for traffic."""
        if self._thread is None:
            self._start()

    def note(self, note: dict) -> None:
        """A side note from the proxy (a route target's circuit opened or closed): plain data, appended without
        blocking; the writer thread turns it into webhook events (tenancy.webhooks.sources.on_notes)."""
        self._notes.append(note)
        if self._thread is None:
            self._start()
        self._wake.set()

    def _send_notes(self) -> None:
        notes = []
        while self._notes:
            notes.append(self._notes.popleft())
        if notes:
            try:
                webhook_sources.on_notes(notes)
            except Exception:  # the records go on; the proxy logged the transitions too
                log.exception("Webhook events for %d circuit transitions could not be recorded", len(notes))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="ingate-record-writer", daemon=True)
                thread.start()
                self._thread = thread  # only a started thread: close() may join it from another thread

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is pending and stop (the gateway calls this on shutdown)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    # --- the writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.interval)
                self._wake.clear()
                stopping = self._stopping
                try:
                    self.flush()
                    while self._pending:  # a backlog: keep going rather than wait for the next round
                        self.flush()
                except Exception:  # keep the records and try again next round
                    log.exception("Record writer failed; retrying")
                    if stopping:
                        return
                    self._wake.wait(1.0)
                if stopping:
                    return
        finally:
            connections.close_all()

    def flush(self) -> int:
        """Move what is pending one step on: into the database, or into the stream and from it. Returns rows written."""
        _close_old_connections()
        if time.monotonic() - self._partitions_checked > _PARTITION_CHECK_SECONDS:
            self._partitions_checked = time.monotonic()
            retention.ensure_partitions()
        if not self.redis_url and time.monotonic() - self._retention_enforced > _RETENTION_SECONDS:
            self._retention_enforced = time.monotonic()
            retention.enforce_retention()
        if not self.redis_url:
            limits.maybe_reconcile()  # budget alerts without Celery beat (throttled inside)
            exports.maybe_export()  # each org's bucket, without Celery beat (throttled; on a thread of its own)
            webhook_outbox.WORKER.nudge()  # webhook retries without Celery beat (the worker thread sweeps)
        self._send_notes()
        batch = []
        while self._pending and len(batch) < self.batch_size * 10:
            batch.append(self._pending.popleft())
        batch = [record for record in batch if record.org_id]  # refused before a key was known: no tenant
        try:
            if not self.redis_url:
                return store_records(batch, self._policies)
            # With Redis the gateway only slims and streams; pricing and attribution happen where rows are written.
            self._produce([slim(record) for record in batch])
        except Exception:
            self._pending.extendleft(reversed(batch))
            raise
        if self.ingest_here:
            return self._consume()
        self._kick_workers(bool(batch))
        return 0

    def _kick_workers(self, produced: bool) -> None:
        """Ask a Celery worker to ingest, at most once a second (beat also asks every 10 s). A kick held back by
        that limit is owed, and sent by a later flush even if it produces nothing: otherwise the last records of
        a burst could wait in the stream for the next request (or for beat, where none runs)."""
        self._kick_owed = self._kick_owed or produced
        if self._kick_owed and time.monotonic() - self._kicked > 1.0:
            self._kicked = time.monotonic()
            self._kick_owed = False
            # Only reached with Redis, where tasks are never eager: sending by name is what `delay` would do.
            current_app.send_task(INGEST_TASK, ignore_result=True)

    def drain(self, seconds: float = 20.0) -> int:
        """Consume the stream until it is empty or `seconds` pass (the ingest task). Returns rows written."""
        deadline = time.monotonic() + seconds
        written = 0
        self._forget_idle_consumers()
        while time.monotonic() < deadline:
            close_old_connections()
            batch = self._consume()
            written += batch
            if not batch:
                break
        return written

    # --- Redis stream ----------------------------------------------------------------------------

    def _client(self):
        if self._redis is None:
            import redis

            client = redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
            try:
                client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._redis = client
        return self._redis

    def _produce(self, records: list[bytes]) -> None:
        """Put slimmed records on the stream, in one round trip: one entry per batch of records (at most
        INGATE_RECORD_BATCH_SIZE of them, and about a megabyte), each record a field of its own, so that one that
        cannot be read goes to the dead letters alone."""
        if not records:
            return
        pipe = self._client().pipeline(transaction=False)
        entry: dict[str, bytes] = {}
        size = 0
        for raw in records:
            entry[str(len(entry))] = raw
            size += len(raw)
            if len(entry) >= self.batch_size or size >= _ENTRY_BYTES:
                pipe.xadd(self.stream, entry)
                entry, size = {}, 0
        if entry:
            pipe.xadd(self.stream, entry)
        pipe.execute()

    def _consume(self) -> int:
        client = self._client()
        # First, entries a writer read but never acknowledged (it died) once they are idle long enough.
        _, claimed, _ = client.xautoclaim(self.stream, GROUP, self.consumer, self.claim_ms, "0-0", count=self._count)
        written = self._write_entries(client, claimed)
        while True:
            response = client.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=self._count)
            if not response or not response[0][1]:
                return written
            written += self._write_entries(client, response[0][1])

    def _forget_idle_consumers(self, idle_ms: int = 3_600_000) -> None:
        """Consumers of processes long gone, with nothing pending, would otherwise pile up in the group."""
        client = self._client()
        for info in client.xinfo_consumers(self.stream, GROUP):
            if info["pending"] == 0 and info["idle"] > idle_ms:
                client.xgroup_delconsumer(self.stream, GROUP, info["name"])

    def _write_entries(self, client, entries) -> int:
        """Store what a read brought (each entry a batch of records, one a field; entries streamed before batching
        hold one, under "record"), then acknowledge it. Returns the records read."""
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]
        if not entries:
            return 0
        records = []
        with _collector_paused():
            for entry_id, fields in entries:
                for name, raw in fields.items():
                    try:
                        records.append(unslim(raw))
                    except Exception as exc:  # noqa: BLE001  (not a record any more: keep what arrived, go on)
                        _dead_entry(entry_id, name, raw, exc, alone=len(fields) == 1)
            store_records(records, self._policies)
        read = sum(len(fields) for _, fields in entries)
        ids = [entry_id for entry_id, _ in entries]
        pipe = client.pipeline(transaction=False)
        pipe.xack(self.stream, GROUP, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()
        # Read about a batch's worth of records next time, however many a gateway put in an entry.
        self._count = max(1, min(self.batch_size, round(self.batch_size * len(entries) / read)))
        return read


def _dead_entry(entry_id, name, raw, error: BaseException, *, alone: bool) -> None:
    """A stream entry's record that is not readable: kept as it arrived, under its stream id (and its place in
    the entry, when the entry held several)."""
    entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    if not alone:
        entry += ":" + (name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name))
    log.error("Stream entry %s is not a record (%s); kept as a dead record", entry, error)
    raw = raw if isinstance(raw, bytes) else b""
    DeadRecord.objects.update_or_create(
        record_id=f"stream:{entry}"[:64],
        defaults={
            "stage": "read",
            "error": clean_error(error),
            "last_seen": timezone.now(),
            "payload": clean_text(raw.decode("utf-8", "replace"))[0],
        },
    )
