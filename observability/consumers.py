"""The live tail: a websocket that pushes an org's new request records as they are written, resumable.

It polls the database once a second rather than listening on the channel layer: records are written by
whichever gateway process (or worker) handled the request, so the database is the one place that sees them
all. Each message carries a cursor; a client that reconnects with `?after=<cursor>` gets only what came since.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Q
from django.utils import timezone

from tenancy.models import Organization
from tenancy.permissions import VIEW, Principal, orgs_where

from . import selectors
from .models import RequestRecord

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# A page opened fresh shows what happened in the last moments, not the org's history (the logs page has that).
FIRST_LOOKBACK = datetime.timedelta(seconds=5)
# Records are stamped when the request started, so a long one lands after later, shorter ones: rows this much
# older than the newest one sent are still looked for, and sent once when they appear.
LATE = datetime.timedelta(minutes=2)
BATCH = 200
LATE_SCAN = 5000  # ids looked at per poll for late rows: bounds the cost on a busy org
_FIELDS = (
    "id",
    "created_at",
    "provider",
    "model",
    "response_model",
    "status",
    "outcome",
    "stream",
    "input_tokens",
    "output_tokens",
    "cost_total",
    "usage_source",
    "total_ms",
    "session_id",
    "client",
)


@dataclass
class Tail:
    """Where one socket is: the newest (created_at, id) sent (the cursor), and the ids sent or known to the
    client within the late window before it."""

    at: datetime.datetime
    last_id: uuid.UUID | None = None
    seen: dict[uuid.UUID, datetime.datetime] = field(default_factory=dict)

    @property
    def cursor(self) -> str:
        return str(self.last_id) if self.last_id else ""


@database_sync_to_async
def _org_for(user, slug: str) -> Organization | None:
    return orgs_where(Principal.for_user(user), RequestRecord, VIEW).filter(slug=slug).first()


def _records(user, org_id: int):
    return selectors.records_for(Principal.for_user(user)).filter(org_id=org_id)


@database_sync_to_async
def _start(user, org_id: int, after: str) -> Tail:
    """The tail resumes after the client's cursor when it names one of the org's records, else starts now. Rows
    already in the late window are taken as known: the client has them, or they predate the page."""
    try:
        after_id = uuid.UUID(after) if after else None
    except ValueError:
        after_id = None
    row = _records(user, org_id).filter(pk=after_id).values_list("created_at", "id").first() if after_id else None
    tail = Tail(at=row[0], last_id=row[1]) if row else Tail(at=timezone.now() - FIRST_LOOKBACK)
    window = _records(user, org_id).filter(created_at__gte=tail.at - LATE, created_at__lte=tail.at)
    tail.seen = dict(window.values_list("id", "created_at")[:LATE_SCAN])
    return tail


def _plain(row: dict) -> dict:
    row["id"] = str(row["id"])
    row["created_at"] = row["created_at"].isoformat(timespec="microseconds")
    row["cost_total"] = None if row["cost_total"] is None else str(row["cost_total"])
    return row


@database_sync_to_async
def _poll(user, org_id: int, tail: Tail) -> list[tuple[dict, str]]:
    """(row, cursor) pairs: late rows within the window not sent yet, then rows after the cursor in order. A
    row's cursor is where a client holding it resumes: a late row leaves the cursor where it was."""
    records = _records(user, org_id)
    floor = tail.at - LATE
    # Strictly before the cursor: what is at or after it comes below, as newer rows.
    in_window = records.filter(created_at__gte=floor, created_at__lt=tail.at).values_list("id", flat=True)
    missing = [pk for pk in in_window[:LATE_SCAN] if pk not in tail.seen]
    late = (
        list(
            selectors.with_cost_flags(records.filter(pk__in=missing))
            .order_by("created_at", "id")
            .values(*_FIELDS, "is_failed", "is_unpriced")
        )
        if missing
        else []
    )
    sent = [(row, tail.cursor) for row in late]
    after = Q(created_at__gt=tail.at)
    if tail.last_id is not None:
        after |= Q(created_at=tail.at, id__gt=tail.last_id)
    for row in (
        selectors.with_cost_flags(records.filter(after))
        .order_by("created_at", "id")
        .values(*_FIELDS, "is_failed", "is_unpriced")[:BATCH]
    ):
        tail.at, tail.last_id = row["created_at"], row["id"]
        sent.append((row, tail.cursor))
    for row, _ in sent:
        tail.seen[row["id"]] = row["created_at"]
    floor = tail.at - LATE
    tail.seen = {pk: at for pk, at in tail.seen.items() if at >= floor}
    return [(_plain(row), cursor) for row, cursor in sent]


class LiveRecordsConsumer(AsyncJsonWebsocketConsumer):
    # Nothing is sent to it over the channel layer: without one, an open socket holds no Redis connection and a
    # Redis restart does not drop it.
    channel_layer_alias = None

    async def connect(self):
        user = self.scope.get("user")
        query = parse_qs(self.scope.get("query_string", b"").decode())
        slug, after = query.get("org", [""])[0], query.get("after", [""])[0]
        org = await _org_for(user, slug) if user is not None and user.is_authenticated else None
        if org is None:
            await self.close(code=4403)
            return
        await self.accept()
        tail = await _start(user, org.pk, after)
        self._task = asyncio.get_running_loop().create_task(self._tail(user, org.pk, tail))

    async def _tail(self, user, org_id: int, tail: Tail):
        try:
            while True:
                for row, cursor in await _poll(user, org_id, tail):
                    await self.send_json({"type": "record", "record": row, "cursor": cursor})
                await asyncio.sleep(POLL_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception:  # e.g. the database went away: close, and the page reconnects and resumes
            log.exception("Live tail of org %s stopped", org_id)
            await self.close(code=1011)

    async def disconnect(self, code):
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
