"""The record pipeline: the proxy hands over records without waiting; a writer thread prices and
attributes them and bulk-inserts batches.

Without Redis the writer inserts straight into the database. With Redis, batches go to a Redis stream first
(one pipelined round trip per batch, never per request) and every gateway process's writer consumes that
stream as one consumer group: an entry is acknowledged only after its row is committed, and entries a dead
process had read are claimed by the others after INGATE_RECORD_CLAIM_SECONDS. Inserts ignore ids already
present, so a batch replayed after a crash is never counted twice."""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections, transaction

from proxy.records import ProxyRecord

from . import retention, rollups
from .insert import insert_records
from .models import RequestBody, RequestRecord
from .rows import OrgPolicies, build_row, slim, to_record, unslim

log = logging.getLogger(__name__)

GROUP = "writers"
# The writer makes sure the coming days' partitions exist (PostgreSQL), so it never depends on celery beat.
_PARTITION_CHECK_SECONDS = 3600.0


def insert_rows(rows: Iterable[dict[str, Any]]) -> int:
    """Insert rows (and their bodies), skipping ids already stored (a replayed batch). Returns how many were given."""
    rows = list(rows)
    if not rows:
        return 0
    with transaction.atomic():
        ids = [row["id"] for row in rows]
        stored = {str(pk) for pk in RequestRecord.objects.filter(pk__in=ids).values_list("pk", flat=True)}
        fresh = [row for row in rows if row["id"] not in stored]
        bodies = [row.pop("body") for row in fresh if "body" in row]
        insert_records(fresh)
        RequestBody.objects.bulk_create(
            [RequestBody(**body) for body in bodies], batch_size=200, ignore_conflicts=True
        )
        rollups.apply([to_record(row) for row in fresh])  # only what was new: a replay counts nothing twice
    return len(rows)


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
        self._pending: collections.deque[ProxyRecord] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._policies = OrgPolicies()
        self._redis = None
        # One consumer name per process: a restarted process is a new consumer, and the old one's pending
        # entries are claimed after INGATE_RECORD_CLAIM_SECONDS.
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._partitions_checked = -_PARTITION_CHECK_SECONDS
        self.dropped = 0

    # --- the proxy's side ------------------------------------------------------------------------

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
                except Exception:  # noqa: BLE001  (keep the records and try again next round)
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
        close_old_connections()
        if time.monotonic() - self._partitions_checked > _PARTITION_CHECK_SECONDS:
            self._partitions_checked = time.monotonic()
            retention.ensure_partitions()
        batch = []
        while self._pending and len(batch) < self.batch_size * 10:
            batch.append(self._pending.popleft())
        batch = [record for record in batch if record.org_id]  # refused before a key was known: no tenant
        try:
            if not self.redis_url:
                return insert_rows([build_row(record, *self._policies.of(record.org_id)) for record in batch])
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
        """Ask a Celery worker to ingest, at most once a second (beat also asks every 10 s)."""
        if produced and time.monotonic() - self._kicked > 1.0:
            from .tasks import ingest_records

            self._kicked = time.monotonic()
            ingest_records.delay()

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

    def _produce(self, entries: list[bytes]) -> None:
        if not entries:
            return
        pipe = self._client().pipeline(transaction=False)
        for entry in entries:
            pipe.xadd(self.stream, {"record": entry})
        pipe.execute()

    def _consume(self) -> int:
        client = self._client()
        # First, entries a writer read but never acknowledged (it died) once they are idle long enough.
        _, claimed, _ = client.xautoclaim(self.stream, GROUP, self.consumer, self.claim_ms, "0-0", count=self.batch_size)
        written = self._write_entries(client, claimed)
        while True:
            response = client.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=self.batch_size)
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
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]
        if not entries:
            return 0
        records = [unslim(fields[b"record"]) for _, fields in entries]
        insert_rows([build_row(record, *self._policies.of(record.org_id)) for record in records])
        ids = [entry_id for entry_id, _ in entries]
        pipe = client.pipeline(transaction=False)
        pipe.xack(self.stream, GROUP, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()
        return len(entries)
