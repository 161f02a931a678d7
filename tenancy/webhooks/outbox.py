"""Emitting events and getting their deliveries going, in both modes.

`emit` writes the event and one delivery row per endpoint that wants it, in the caller's transaction, and
asks for the first attempts once that transaction commits. With Redis a Celery task per delivery makes the
attempt (`tenancy.webhooks_deliver`) and celery beat's `tenancy.webhooks_deliver_due` makes the retries when they
are due. Without Redis (Celery eager) an attempt must not run inside the request that caused it, nor a retry
sleep in anyone's thread: the process's `EmbeddedWorker` thread makes first attempts as they come and looks for
due retries every INGATE_WEBHOOK_SWEEP_SECONDS. Either way, retries are rows with a `next_attempt_at`, never a
task waiting with a countdown, so nothing recurses and a restart loses nothing."""

from __future__ import annotations

import datetime
import logging
import queue
import threading
import time
import uuid
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connections, transaction
from django.utils import timezone

from ..models import (
    BudgetEvent,
    BudgetEventKind,
    DeliveryStatus,
    Organization,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from . import delivery as sending
from .events import CATALOGUE, budget_data, disabled_data, envelope, test_data, wanted_by

log = logging.getLogger(__name__)

DELIVER_TASK = "tenancy.webhooks_deliver"


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def emit(
    *, org_id: int, event_type: str, data: dict[str, Any], cause: str | None = None, only: WebhookEndpoint | None = None
) -> WebhookEvent | None:
    """Record `event_type` for the org's endpoints that want it and send it once the transaction commits.
    `cause`, when given, makes it fire once: a second emit with the same cause does nothing. Returns the
    event, or None when no endpoint wants it (nothing is stored) or its cause already fired."""
    if event_type not in CATALOGUE:
        raise ValueError(f"Unknown webhook event type {event_type!r}; add it to tenancy/webhooks/events.py.")
    if only is not None:
        endpoints = [only]
    else:
        endpoints = [
            e for e in WebhookEndpoint.objects.filter(org_id=org_id, enabled=True) if wanted_by(e, event_type, data)
        ]
    if not endpoints:
        return None
    org = Organization.objects.only("pk", "slug").get(pk=org_id)
    now = timezone.now()
    event_id = new_event_id()
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                id=event_id,
                org_id=org_id,
                type=event_type,
                payload=envelope(event_id, event_type, now, org, data),
                cause=cause,
                created_at=now,
            )
    except IntegrityError:
        if cause is None:
            raise
        return None  # this cause fired already
    made = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint=e, event=event, org_id=org_id, next_attempt_at=now, created_at=now)
            for e in endpoints
        ]
    )
    _dispatch_on_commit([d.pk for d in made])
    return event


def redeliver(original: WebhookDelivery) -> WebhookDelivery:
    """ "Send again": a new delivery of the same event to the same endpoint (same webhook-id), sent at once."""
    copy = WebhookDelivery.objects.create(
        endpoint_id=original.endpoint_id, event_id=original.event_id, org_id=original.org_id, redelivery_of=original
    )
    _dispatch_on_commit([copy.pk])
    return copy


def send_test(endpoint: WebhookEndpoint) -> WebhookEvent:
    """A `webhook.test` event to this endpoint alone, whatever events it lists."""
    return emit(org_id=endpoint.org_id, event_type="webhook.test", data=test_data(endpoint), only=endpoint)


def _dispatch_on_commit(ids: list[int]) -> None:
    transaction.on_commit(lambda: dispatch(ids))


def dispatch(ids: list[int]) -> None:
    """Ask for the first attempt of these deliveries, off the caller's thread."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        WORKER.submit(ids)
        return
    for delivery_id in ids:
        try:
            current_app.send_task(DELIVER_TASK, args=[delivery_id], ignore_result=True)
        except Exception:  # noqa: BLE001  (the broker is away: the sweep sends it when it is due)
            log.warning("Could not queue webhook delivery %s; the next sweep will send it", delivery_id)


def attempt(delivery_id: int, now: datetime.datetime | None = None) -> str | None:
    """One attempt (see delivery.deliver); an endpoint it disabled is announced to the org's other endpoints."""
    status, disabled = sending.deliver(delivery_id, now)
    if disabled is not None:
        emit(
            org_id=disabled.org_id,
            event_type="webhook.disabled",
            data=disabled_data(disabled),
            cause=f"webhook.disabled:{disabled.pk}:{disabled.disabled_at.isoformat()}",
        )
    return status


def emit_budget_events(limit: int = 200) -> int:
    """A `budget.threshold` / `budget.exceeded` event for each BudgetEvent not sent yet (observability records
    them as it reconciles spend). `delivered_at` is claimed first, so each fires once however many sweeps run."""
    sent = 0
    pending = BudgetEvent.objects.filter(delivered_at__isnull=True).select_related("budget").order_by("pk")[:limit]
    for budget_event in pending:
        with transaction.atomic():
            claimed = BudgetEvent.objects.filter(pk=budget_event.pk, delivered_at__isnull=True).update(
                delivered_at=timezone.now()
            )
            if not claimed:
                continue
            kind = "budget.exceeded" if budget_event.kind == BudgetEventKind.REACHED else "budget.threshold"
            emit(
                org_id=budget_event.org_id,
                event_type=kind,
                data=budget_data(budget_event),
                cause=f"budget_event:{budget_event.pk}",
            )
            sent += 1
    return sent


def deliver_due(now: datetime.datetime | None = None) -> int:
    """Budget events not sent yet, then every delivery whose attempt is due (retries, first attempts whose task
    was lost, leases of dead workers). Returns how many attempts were made."""
    emit_budget_events()
    done = 0
    for delivery_id in sending.due_ids(now or timezone.now()):
        if attempt(delivery_id, now) is not None:
            done += 1
    return done


def prune(now: datetime.datetime | None = None) -> int:
    """Forget events (and their deliveries) older than INGATE_WEBHOOK_LOG_DAYS, unless one is still being sent.
    Returns the events deleted."""
    cutoff = (now or timezone.now()) - datetime.timedelta(days=settings.INGATE_WEBHOOK_LOG_DAYS)
    busy = WebhookDelivery.objects.filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING])
    old = WebhookEvent.objects.filter(created_at__lt=cutoff).exclude(pk__in=busy.values("event_id"))
    return old.delete()[1].get(WebhookEvent._meta.label, 0)


_PRUNE_SECONDS = 3600.0


class EmbeddedWorker:
    """Without Redis: one daemon thread per process that makes first attempts as they are handed over and
    sweeps for due retries every INGATE_WEBHOOK_SWEEP_SECONDS. Started on first use (a dispatch, or the record
    writer's nudge), so a gateway that restarts picks up the retries it left."""

    def __init__(self):
        self._queue: queue.Queue[int] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.idle = threading.Event()  # set while nothing is queued or being sent (tests wait on it)
        self.idle.set()

    def submit(self, ids: list[int]) -> None:
        self.idle.clear()
        for delivery_id in ids:
            self._queue.put(delivery_id)
        self.nudge()

    def nudge(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name="ingate-webhooks", daemon=True)
                    thread.start()
                    self._thread = thread

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread after what it is sending (what is still queued stays due in the database and goes out
        with the next sweep); the next submit or nudge starts a new one. For a process shutting down, and tests."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._stopping.set()
            self._queue.put(None)
        thread.join(timeout)
        with self._lock:
            self._stopping.clear()
            self._queue = queue.Queue()
            self.idle.set()

    def _run(self) -> None:
        swept, pruned = time.monotonic(), -_PRUNE_SECONDS
        work = self._queue
        while not self._stopping.is_set():
            wait = max(0.05, settings.INGATE_WEBHOOK_SWEEP_SECONDS - (time.monotonic() - swept))
            try:
                delivery_id = work.get(timeout=wait)
            except queue.Empty:
                delivery_id = None
            if self._stopping.is_set():
                break
            try:
                close_old_connections()
                if delivery_id is not None:
                    attempt(delivery_id)
                if time.monotonic() - swept >= settings.INGATE_WEBHOOK_SWEEP_SECONDS:
                    swept = time.monotonic()
                    deliver_due()
                if time.monotonic() - pruned >= _PRUNE_SECONDS:  # what celery beat does hourly with Redis
                    pruned = time.monotonic()
                    prune()
            except Exception:  # the row stays due; the next sweep tries again
                log.exception("Webhook delivery failed unexpectedly")
            finally:
                if work.empty():
                    self.idle.set()
        connections.close_all()  # this thread's own connections


WORKER = EmbeddedWorker()
