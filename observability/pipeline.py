"""The record pipeline: the proxy hands over records without waiting; a writer thread prices and
attributes them and bulk-inserts batches.

Without Redis the writer inserts straight into the database. With Redis, batches go to a Redis stream first
(one pipelined round trip per batch, never per request) and every gateway process's writer consumes that
stream as one consumer group: an entry is acknowledged only after its row is committed, and entries a dead
process had read are claimed by the others after INGATE_RECORD_CLAIM_SECONDS. Inserts ignore ids already
present, so a batch replayed after a crash is never counted twice."""

from __future__ import annotations

import collections
import json
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
from .models import RequestBody, RequestRecord
from .rows import OrgPolicies, build_row, to_models

log = logging.getLogger(__name__)

GROUP = "writers"
# The writer makes sure the coming days' partitions exist (PostgreSQL), so it never depends on celery beat.
_PARTITION_CHECK_SECONDS = 3600.0


def insert_rows(rows: Iterable[dict[str, Any]]) -> int:
    """Insert rows (and their bodies), skipping ids already stored (a replayed batch). Returns how many were given."""
    pairs = [to_models(row) for row in rows]
    if pairs:
        with transaction.atomic():
            stored = {
                str(pk) for pk in RequestRecord.objects.filter(pk__in=[r.pk for r, _ in pairs]).values_list("pk", flat=True)
            }
            fresh = [(record, body) for record, body in pairs if str(record.pk) not in stored]
            RequestRecord.objects.bulk_create([record for record, _ in fresh], batch_size=500, ignore_conflicts=True)
            bodies = [body for _, body in fresh if body is not None]
            RequestBody.objects.bulk_create(bodies, batch_size=200, ignore_conflicts=True)
            rollups.apply([record for record, _ in fresh])  # only what was new: a replay counts nothing twice
    return len(pairs)


class RecordPipeline:
    """The proxy's record sink (INGATE_RECORD_SINK). `submit` is a deque append: it never blocks or raises."""

    def __init__(self):
        self.batch_size = settings.INGATE_RECORD_BATCH_SIZE
        self.interval = settings.INGATE_RECORD_FLUSH_SECONDS
        self.max_pending = settings.INGATE_RECORD_MAX_PENDING
        self.redis_url = settings.REDIS_URL
        self.claim_ms = int(settings.INGATE_RECORD_CLAIM_SECONDS * 1000)
        self.stream = settings.INGATE_RECORD_STREAM
        self._pending: collections.deque[ProxyRecord] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._policies = OrgPolicies()
        self._redis = None
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
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
        try:
            rows = [build_row(record, *self._policies.of(record.org_id)) for record in batch if record.org_id]
        except Exception:
            self._pending.extendleft(reversed(batch))
            raise
        if not self.redis_url:
            try:
                return insert_rows(rows)
            except Exception:
                self._pending.extendleft(reversed(batch))
                raise
        try:
            self._produce(rows)
        except Exception:
            self._pending.extendleft(reversed(batch))
            raise
        return self._consume()

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

    def _produce(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        pipe = self._client().pipeline(transaction=False)
        for row in rows:
            pipe.xadd(self.stream, {"row": json.dumps(row)})
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

    def _write_entries(self, client, entries) -> int:
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]
        if not entries:
            return 0
        insert_rows(json.loads(fields[b"row"]) for _, fields in entries)
        ids = [entry_id for entry_id, _ in entries]
        pipe = client.pipeline(transaction=False)
        pipe.xack(self.stream, GROUP, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()
        return len(entries)
