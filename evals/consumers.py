"""Live progress of an eval run: the run's counters, read once a second and pushed while they change. Polling
the database is what lets any worker on any machine report progress without a channel layer between them.
The first message is always the run's state as it is now, so a page that reconnects catches up at once."""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tenancy.permissions import VIEW, Principal, restrict

from .models import EvalRun

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


@database_sync_to_async
def _progress(user, run_id: int) -> dict | None:
    run = restrict(EvalRun.objects.filter(pk=run_id), Principal.for_user(user), VIEW).first()
    if run is None:
        return None
    return {
        "status": run.status,
        "status_display": run.get_status_display(),
        "done": run.done,
        "total": run.total,
        "failed": run.failed,
        "finished": run.finished,
        "error": run.error,
    }


class RunProgressConsumer(AsyncJsonWebsocketConsumer):
    # Nothing is sent to it over the channel layer: without one, an open socket holds no Redis connection and a
    # Redis restart does not drop it.
    channel_layer_alias = None

    async def connect(self):
        user = self.scope.get("user")
        run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        first = await _progress(user, run_id) if user is not None and user.is_authenticated else None
        if first is None:
            await self.close(code=4403)
            return
        await self.accept()
        await self.send_json(first)
        self._task = asyncio.get_running_loop().create_task(self._follow(user, run_id, first))

    async def _follow(self, user, run_id: int, last: dict):
        try:
            while not last["finished"]:
                await asyncio.sleep(POLL_SECONDS)
                now = await _progress(user, run_id)
                if now is None:
                    break
                if now != last:
                    await self.send_json(now)
                last = now
        except asyncio.CancelledError:
            raise
        except Exception:  # e.g. the database went away: close, and the page reconnects
            log.exception("Progress of eval run %s stopped", run_id)
            await self.close(code=1011)
            return
        await self.close()

    async def disconnect(self, code):
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
