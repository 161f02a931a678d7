"""Sending: one attempt of one delivery, the retry schedule, and disabling an endpoint that keeps failing.

An attempt first claims its delivery (one UPDATE: pending and due → sending, due again after a lease), so two
workers, or a worker and the sweep, never send it twice at once, and one that died mid-attempt is taken up again
when its lease ends. Nothing here waits between attempts: a failed one sets `next_attempt_at` from
INGATE_WEBHOOK_RETRY_SCHEDULE and `deliver_due` (celery beat, or the embedded worker thread) sends it then."""

from __future__ import annotations

import datetime
import logging
import time

import httpx
import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from . import signing
from .addresses import UnsafeURL, resolve

log = logging.getLogger(__name__)

EXCERPT_CHARS = 2000
USER_AGENT = "Ingate-Webhooks/1"
# Deliveries sent per sweep at most (the rest wait for the next one).
_SWEEP_BATCH = 200


def body_of(payload: dict) -> str:
    """The exact bytes signed and sent (compact JSON, keys in the payload's order)."""
    return orjson.dumps(payload).decode()


def _lease() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.INGATE_WEBHOOK_TIMEOUT + 60)


def claim(delivery_id: int, now: datetime.datetime) -> bool:
    return bool(
        WebhookDelivery.objects.filter(
            pk=delivery_id,
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING],
            next_attempt_at__lte=now,
        ).update(status=DeliveryStatus.SENDING, next_attempt_at=now + _lease())
    )


def deliver(delivery_id: int, now: datetime.datetime | None = None) -> tuple[str | None, WebhookEndpoint | None]:
    """Make the next attempt of a delivery if it is due and nobody else is making it. Returns its status after
    (None when there was nothing to do) and its endpoint if this attempt got the endpoint disabled."""
    now = now or timezone.now()
    if not claim(delivery_id, now):
        return None, None
    delivery = WebhookDelivery.objects.select_related("endpoint", "event").filter(pk=delivery_id).first()
    if delivery is None:  # its endpoint was deleted meanwhile
        return None, None
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        _finish(delivery, DeliveryStatus.FAILED, error="The endpoint is disabled.")
        return DeliveryStatus.FAILED, None
    try:
        status, excerpt, error, ms = _send(endpoint, delivery)
    except Exception as exc:  # a failed attempt like any other (say, a secret no configured key decrypts)
        log.exception("Webhook delivery %s could not be sent", delivery_id)
        status, excerpt, error, ms = None, "", f"Could not send: {exc}", 0.0
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.response_status, delivery.response_excerpt, delivery.error = status, excerpt, error[:500]
    delivery.duration_ms = ms
    if status is not None and 200 <= status < 300:
        delivery.delivered_at = timezone.now()
        _finish(delivery, DeliveryStatus.DELIVERED)
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False).update(failing_since=None)
        return DeliveryStatus.DELIVERED, None
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    schedule = settings.INGATE_WEBHOOK_RETRY_SCHEDULE
    if delivery.attempts <= len(schedule):
        delivery.next_attempt_at = now + datetime.timedelta(seconds=schedule[delivery.attempts - 1])
        _finish(delivery, DeliveryStatus.PENDING)
        return DeliveryStatus.PENDING, None
    _finish(delivery, DeliveryStatus.FAILED)
    return DeliveryStatus.FAILED, _maybe_disable(endpoint.pk, now)


def _finish(delivery: WebhookDelivery, status: str, error: str | None = None) -> None:
    delivery.status = status
    if error is not None:
        delivery.error = error
    if status != DeliveryStatus.PENDING:
        delivery.next_attempt_at = None
    delivery.save(
        update_fields=[
            "status",
            "attempts",
            "next_attempt_at",
            "response_status",
            "response_excerpt",
            "error",
            "duration_ms",
            "last_attempt_at",
            "delivered_at",
        ]
    )


def _send(endpoint: WebhookEndpoint, delivery: WebhookDelivery):
    """POST the event. Returns (status or None, response excerpt, error, milliseconds). No redirect is followed
    (a 3xx is a failed attempt), and the connection goes to the address just checked."""
    body = body_of(delivery.event.payload)
    started = time.perf_counter()
    try:
        target = resolve(endpoint.url)
    except UnsafeURL as exc:
        return None, "", f"Refused: {exc}", 0.0
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": target.host_header,
        # Signed with the wall clock, whatever `now` the schedule was computed with: receivers check the timestamp.
        **signing.headers(signing.active_secrets(endpoint, timezone.now()), delivery.event_id, timezone.now(), body),
    }
    extensions = {"sni_hostname": target.host} if target.url.startswith("https:") else {}
    timeout = httpx.Timeout(settings.INGATE_WEBHOOK_TIMEOUT)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST", target.connect_url, content=body.encode(), headers=headers, extensions=extensions
            )
            response = client.send(request, stream=True)
            try:
                excerpt = _excerpt(response)
                status = response.status_code
            finally:
                response.close()
    except httpx.TimeoutException:
        return None, "", f"Timed out after {settings.INGATE_WEBHOOK_TIMEOUT:g}s.", _ms(started)
    except httpx.HTTPError as exc:
        return None, "", f"Could not connect: {exc.__class__.__name__}: {exc}", _ms(started)
    error = ""
    if 300 <= status < 400:
        error = f"Redirect to {response.headers.get('location', '?')} not followed; give the final URL."
    elif not 200 <= status < 300:
        error = f"The endpoint answered HTTP {status}."
    return status, excerpt, error, _ms(started)


def _excerpt(response: httpx.Response) -> str:
    """The start of the answer (for the log), read no further than needed, nor longer than one timeout (a
    receiver trickling its answer must not hold the worker)."""
    chunks, size = [], 0
    deadline = time.monotonic() + settings.INGATE_WEBHOOK_TIMEOUT
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= EXCERPT_CHARS * 4 or time.monotonic() > deadline:
            break
    return b"".join(chunks).decode("utf-8", "replace")[:EXCERPT_CHARS]


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _maybe_disable(endpoint_id: int, now: datetime.datetime) -> WebhookEndpoint | None:
    """A delivery ran out of retries: disable its endpoint when nothing was delivered to it for
    INGATE_WEBHOOK_DISABLE_AFTER seconds (the webhooks page says so). Returns it when this disabled it."""
    cutoff = now - datetime.timedelta(seconds=settings.INGATE_WEBHOOK_DISABLE_AFTER)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        if not endpoint.enabled or endpoint.failing_since is None or endpoint.failing_since > cutoff:
            return None
        endpoint.enabled = False
        endpoint.disabled_at = now
        endpoint.disabled_reason = (
            f"Disabled automatically: every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC and one "
            "ran out of retries. Fix the receiver, then enable the endpoint again (and send the failed events again)."
        )
        endpoint.save(update_fields=["enabled", "disabled_at", "disabled_reason"])
        log.warning("Webhook endpoint %s of org %s disabled after persistent failure", endpoint.pk, endpoint.org_id)
    return endpoint


def due_ids(now: datetime.datetime) -> list[int]:
    return list(
        WebhookDelivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING], next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:_SWEEP_BATCH]
    )
