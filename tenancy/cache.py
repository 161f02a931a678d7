"""Writes to the response cache's settings, and purges of what it keeps: each validates, saves and writes one
audit entry in the same transaction. The request path reads the settings through
`tenancy.selectors.cache_settings_for_org`, told of each change once committed (tenancy/signals.py)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from proxy.response_cache import store

from .audit import Actor, audit_record, save_audited_update, snapshot
from .models import CacheSettings, Organization

FIELDS = (
    "app",
    "enabled",
    "ttl_seconds",
    "max_entry_bytes",
    "endpoints",
    "cache_positive_temperature",
    "namespace_per_app",
    "allow_files",
)
# What may change after creation: the app a row stands for is what it is.
UPDATABLE = tuple(name for name in FIELDS if name != "app")


def check(obj: CacheSettings) -> None:
    """Validate unsaved or changed settings as the services will (for forms and serializers). ValidationError with
    the fields' messages."""
    if obj.org_id is None:
        raise ValidationError({"org": ["Choose the organization."]})
    obj.full_clean(exclude=["org"], validate_unique=False, validate_constraints=False)


@transaction.atomic
def cache_settings_create(*, actor: Actor, org: Organization, **fields) -> CacheSettings:
    """Cache settings of `org` (FIELDS; without `app`: the org's default). ValidationError names the field."""
    obj = CacheSettings(org=org, **{k: v for k, v in fields.items() if k in FIELDS})
    check(obj)
    obj.save()
    audit_record(actor=actor, action="create", obj=obj, changes={"after": snapshot(obj)})
    return obj


@transaction.atomic
def cache_settings_update(*, actor: Actor, settings: CacheSettings, **fields) -> CacheSettings:
    """Change cache settings (UPDATABLE; the org and app stay)."""
    obj = CacheSettings.objects.select_for_update(of=("self",)).select_related("org", "app").get(pk=settings.pk)
    before = snapshot(obj)
    for name, value in fields.items():
        if name in UPDATABLE:
            setattr(obj, name, value)
    check(obj)
    save_audited_update(actor=actor, obj=obj, before=before)
    return obj


@transaction.atomic
def cache_settings_delete(*, actor: Actor, settings: CacheSettings) -> None:
    audit_record(actor=actor, action="delete", obj=settings, changes={"before": snapshot(settings)})
    settings.delete()


def cache_purge(*, actor: Actor, org: Organization, namespace: str | None = None, key: str | None = None) -> int:
    """Drop `org`'s cached answers: all of them, one namespace's, or one entry (`key`: the entry's cache key, in
    a namespace or in any). Returns how many were dropped; the audit entry says so. Never another org's."""
    dropped = store.purge(org.pk, namespace=namespace, key=key)
    audit_record(
        actor=actor,
        action="cache_purge",
        obj=org,
        changes={"namespace": namespace, "key": key, "dropped": dropped},
        object_repr=f"{org.slug}: response cache",
    )
    return dropped
