"""Writes to an org's observability settings and price overrides, each with its audit entry."""

from __future__ import annotations

from django.db import transaction

from tenancy.audit import Actor
from tenancy.models import Organization
from tenancy.services import audited_create, audited_delete, audited_update

from .models import ObservabilitySettings, PriceOverride


@transaction.atomic
def observability_settings_set(*, actor: Actor, org: Organization, **fields) -> ObservabilitySettings:
    """Create or change an org's settings (body mode, body size cap, retention days)."""
    current = ObservabilitySettings.objects.select_for_update().filter(org=org).first()
    if current is None:
        return audited_create(actor=actor, obj=ObservabilitySettings(org=org, **fields))
    return audited_update(actor=actor, obj=current, fields=fields)


@transaction.atomic
def price_override_create(*, actor: Actor, org: Organization, model: str, **prices) -> PriceOverride:
    return audited_create(actor=actor, obj=PriceOverride(org=org, model=model, **prices))


@transaction.atomic
def price_override_update(*, actor: Actor, override: PriceOverride, **fields) -> PriceOverride:
    return audited_update(actor=actor, obj=override, fields=fields)


@transaction.atomic
def price_override_delete(*, actor: Actor, override: PriceOverride) -> None:
    audited_delete(actor=actor, obj=override)
