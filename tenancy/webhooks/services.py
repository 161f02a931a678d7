"""Writes on webhook endpoints (audited like every tenancy write): create and rotate return the new secret,
which is never shown again; "send again" and "send test event" go through the outbox like any event."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .. import crypto
from ..audit import Actor, audit_record
from ..models import Organization, WebhookDelivery, WebhookEndpoint, WebhookEvent, clean_statuses
from ..services import _delete, audited_create, audited_update
from . import outbox, signing
from .addresses import UnsafeURL, check
from .events import CATALOGUE

# How long a rotated-out secret keeps signing next to the new one, by default.
DEFAULT_OVERLAP = datetime.timedelta(hours=24)
MAX_OVERLAP = datetime.timedelta(days=7)


def clean_events(value) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValidationError('Give the events as a list of event types, such as ["budget.exceeded"].')
    unknown = sorted({v for v in value if v not in CATALOGUE})
    if unknown:
        raise ValidationError(f"Unknown event types: {', '.join(unknown)}. Known: {', '.join(CATALOGUE)}.")
    return sorted(set(value))


def clean_url(url: str) -> str:
    try:
        check(url)
    except UnsafeURL as exc:
        raise ValidationError(str(exc)) from exc
    return url


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    for name, cleaner in (("url", clean_url), ("events", clean_events), ("failed_statuses", clean_statuses)):
        if name in fields:
            try:
                fields[name] = cleaner(fields[name])
            except ValidationError as exc:
                errors[name] = exc.messages
    if errors:
        raise ValidationError(errors)
    return fields


def _set_secret(endpoint: WebhookEndpoint, secret: str) -> None:
    endpoint.secret_encrypted = crypto.encrypt(secret)
    endpoint.secret_hint = crypto.hint(secret)


@transaction.atomic
def webhook_endpoint_create(
    *,
    actor: Actor,
    org: Organization,
    url: str,
    events: list[str] | None = None,
    description: str = "",
    enabled: bool = True,
    failed_statuses: list[int] | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (`whsec_…`), which is returned here only."""
    fields = _clean({"url": url, "events": events or [], "failed_statuses": failed_statuses or []})
    endpoint = WebhookEndpoint(org=org, description=description, enabled=enabled, **fields)
    secret = signing.new_secret()
    _set_secret(endpoint, secret)
    return audited_create(actor=actor, obj=endpoint), secret


@transaction.atomic
def webhook_endpoint_update(*, actor: Actor, endpoint: WebhookEndpoint, **fields) -> WebhookEndpoint:
    """Change settings. Enabling an endpoint again clears its disabled notice and failure streak."""
    fields = _clean(fields)
    if fields.get("enabled") and not endpoint.enabled:
        fields.update(disabled_at=None, disabled_reason="", failing_since=None)
    fields["updated_at"] = timezone.now()
    return audited_update(actor=actor, obj=endpoint, fields=fields)


@transaction.atomic
def webhook_endpoint_rotate_secret(
    *, actor: Actor, endpoint: WebhookEndpoint, overlap: datetime.timedelta = DEFAULT_OVERLAP
) -> str:
    """A new secret; the one it replaces keeps signing (both signatures on every message) for `overlap`, so
    receivers can switch without dropping a message. Returns the new secret, shown once."""
    if overlap < datetime.timedelta(0) or overlap > MAX_OVERLAP:
        raise ValidationError({"overlap_hours": "Keep the old secret valid for 0 to 168 hours."})
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    secret = signing.new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted if overlap else ""
    endpoint.previous_expires_at = timezone.now() + overlap if overlap else None
    _set_secret(endpoint, secret)
    endpoint.updated_at = timezone.now()
    endpoint.save(
        update_fields=[
            "secret_encrypted",
            "secret_hint",
            "previous_secret_encrypted",
            "previous_expires_at",
            "updated_at",
        ]
    )
    audit_record(
        actor=actor,
        action="webhook_secret_rotate",
        obj=endpoint,
        changes={"previous_valid_until": endpoint.previous_expires_at.isoformat() if overlap else None},
    )
    return secret


@transaction.atomic
def webhook_endpoint_delete(*, actor: Actor, endpoint: WebhookEndpoint) -> None:
    _delete(actor=actor, obj=endpoint)


@transaction.atomic
def webhook_send_test(*, actor: Actor, endpoint: WebhookEndpoint) -> WebhookEvent:
    if not endpoint.enabled:
        raise ValidationError({"enabled": "This endpoint is disabled; enable it before sending a test event."})
    event = outbox.send_test(endpoint)
    audit_record(actor=actor, action="webhook_test", obj=endpoint, changes={"event": event.id})
    return event


@transaction.atomic
def webhook_redeliver(*, actor: Actor, delivery: WebhookDelivery) -> WebhookDelivery:
    """ "Send again": the same event (same webhook-id) to the same endpoint, now, with a fresh retry schedule."""
    if not delivery.endpoint.enabled:
        raise ValidationError({"endpoint": "This endpoint is disabled; enable it before sending events again."})
    copy = outbox.redeliver(delivery)
    audit_record(actor=actor, action="webhook_redeliver", obj=delivery.endpoint, changes={"event": delivery.event_id})
    return copy
