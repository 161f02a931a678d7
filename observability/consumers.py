"""The live tail: a websocket that pushes an org's new request records as they are written.

It polls the database once a second rather than listening on the channel layer: records are written by
whichever gateway process served the request, so the database is the one place that sees them all."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from tenancy.models import Organization
from tenancy.permissions import VIEW, Principal, orgs_where

from . import selectors
from .models import RequestRecord

POLL_SECONDS = 1.0
_FIELDS = ("id", "created_at", "provider", "model", "response_model", "status", "outcome", "stream", "input_tokens",
           "output_tokens", "cost_total", "usage_source", "total_ms", "session_id", "client")


@database_sync_to_async
def _org_for(user, slug: str) -> Organization | None:
    return orgs_where(Principal.for_user(user), RequestRecord, VIEW).filter(slug=slug).first()


@database_sync_to_async
def _new_records(user, org_id: int, after, seen: set[str]) -> list[dict]:
    rows = (
        selectors.records_for(Principal.for_user(user))
        .filter(org_id=org_id, created_at__gte=after)
        .order_by("created_at")
        .values(*_FIELDS)[:200]
    )
    fresh = []
    for row in rows:
        key = str(row["id"])
        if key in seen:
            continue
        seen.add(key)
        row["id"] = key
        row["created_at"] = row["created_at"].isoformat()
        row["cost_total"] = None if row["cost_total"] is None else str(row["cost_total"])
        fresh.append(row)
    return fresh


class LiveRecordsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        slug = parse_qs(self.scope.get("query_string", b"").decode()).get("org", [""])[0]
        org = await _org_for(user, slug) if user is not None and user.is_authenticated else None
        if org is None:
            await self.close(code=4403)
            return
        await self.accept()
        self._task = asyncio.get_running_loop().create_task(self._tail(user, org.pk))

    async def _tail(self, user, org_id: int):
        after = timezone.now() - timezone.timedelta(seconds=5)
        seen: set[str] = set()
        while True:
            rows = await _new_records(user, org_id, after, seen)
            for row in rows:
                await self.send_json({"type": "record", "record": row})
            if rows:
                # Rows are stamped when the request started; a slow one lands after faster, later ones.
                after = max(after, timezone.now() - timezone.timedelta(minutes=10))
            if len(seen) > 5000:
                seen.clear()
            await asyncio.sleep(POLL_SECONDS)

    async def disconnect(self, code):
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
