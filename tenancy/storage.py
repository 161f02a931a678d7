"""Writes to an org's bucket settings (tenancy.models.StorageExport): each validates, encrypts the access keys,
saves and writes one audit entry in the same transaction. The export itself (observability/export) reads them."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from . import crypto
from .audit import Actor, audit_record, save_audited_update, snapshot
from .models import Organization, StorageExport

FIELDS = (
    "enabled",
    "endpoint_url",
    "region",
    "bucket",
    "prefix",
    "formats",
    "include_bodies",
    "bodies_only_in_bucket",
    "every_hours",
)


def _private_endpoint(url: str) -> str | None:
    """Why an endpoint is refused: it names (or resolves to) a private, loopback or link-local address, which an
    org admin must not be able to make Ingate's workers write to. None when it is public."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return f"The endpoint's host {host!r} does not resolve."
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            return (
                f"The endpoint's host {host!r} is a private or local address ({ip}). Use a public endpoint, or ask "
                "your Ingate administrator to set INGATE_STORAGE_ALLOW_PRIVATE_ENDPOINTS."
            )
    return None


def check(obj: StorageExport) -> None:
    """Validate unsaved or changed settings as the services will (forms, serializers). ValidationError by field."""
    if obj.org_id is None:
        raise ValidationError({"org": ["Choose the organization."]})
    obj.full_clean(exclude=["org"], validate_unique=False, validate_constraints=False)
    if obj.endpoint_url and urlsplit(obj.endpoint_url).scheme not in ("http", "https"):
        raise ValidationError({"endpoint_url": ["The endpoint is an http:// or https:// URL."]})
    if obj.endpoint_url and not settings.INGATE_STORAGE_ALLOW_PRIVATE_ENDPOINTS:
        refused = _private_endpoint(obj.endpoint_url)
        if refused:
            raise ValidationError({"endpoint_url": [refused]})
    taken = StorageExport.objects.filter(org_id=obj.org_id).exclude(pk=obj.pk)
    if taken.exists():
        raise ValidationError({"org": ["This organization already has its bucket; change that one instead."]})


def _set_keys(obj: StorageExport, access_key: str | None, secret_key: str | None) -> None:
    """None: keep what is stored; "": clear it (an endpoint that needs no keys, or the instance's own role)."""
    if access_key is not None:
        obj.access_key_encrypted = crypto.encrypt(access_key) if access_key else ""
        obj.access_key_hint = crypto.hint(access_key) if access_key else ""
    if secret_key is not None:
        obj.secret_key_encrypted = crypto.encrypt(secret_key) if secret_key else ""
        obj.secret_key_hint = crypto.hint(secret_key) if secret_key else ""


@transaction.atomic
def storage_export_create(
    *, actor: Actor, org: Organization, access_key: str = "", secret_key: str = "", **fields
) -> StorageExport:
    obj = StorageExport(org=org, **{k: v for k, v in fields.items() if k in FIELDS})
    check(obj)
    _set_keys(obj, access_key, secret_key)
    obj.save()
    audit_record(actor=actor, action="create", obj=obj, changes={"after": snapshot(obj)})
    return obj


@transaction.atomic
def storage_export_update(
    *,
    actor: Actor,
    export: StorageExport,
    access_key: str | None = None,
    secret_key: str | None = None,
    **fields,
) -> StorageExport:
    """Change the settings (FIELDS); keys given replace the stored ones, keys not given stay."""
    obj = StorageExport.objects.select_for_update(of=("self",)).select_related("org").get(pk=export.pk)
    before = snapshot(obj)
    for name, value in fields.items():
        if name in FIELDS:
            setattr(obj, name, value)
    check(obj)
    _set_keys(obj, access_key, secret_key)
    save_audited_update(actor=actor, obj=obj, before=before)
    return obj


@transaction.atomic
def storage_export_delete(*, actor: Actor, export: StorageExport) -> None:
    audit_record(actor=actor, action="delete", obj=export, changes={"before": snapshot(export)})
    export.delete()
