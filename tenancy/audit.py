"""Writing the audit log: who (user or key), from where, did what to which object, and the change."""

from __future__ import annotations

import datetime
import decimal
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Model
from django.utils import timezone

from .models import APIKey, AuditLog, Organization
from .permissions import Principal

# Never copied into an entry: digests and ciphertexts are secrets too (offline guessing, key rotation).
SECRET_FIELDS = frozenset(
    {
        "digest",
        "secret_encrypted",
        "previous_secret_encrypted",
        "password",
        "access_key_encrypted",
        "secret_key_encrypted",
    }
)
MASK = "********"


@dataclass(frozen=True)
class Actor:
    """A principal plus where the action came from, passed to every service that writes."""

    principal: Principal
    ip: str | None = None
    via: str = ""

    @classmethod
    def system(cls, via: str = "cli") -> Actor:
        return cls(principal=Principal(), via=via)

    @classmethod
    def from_request(cls, request, *, via: str, principal: Principal | None = None) -> Actor:
        """Who acts through a request, and from where: the signed-in user unless a principal is given (an API
        caller may be a gateway key); `via` is "web", "admin" or "api"."""
        return cls(
            principal=principal if principal is not None else Principal.for_user(request.user),
            ip=client_ip(request),
            via=via,
        )

    @property
    def user(self):
        return self.principal.user

    @property
    def key(self) -> APIKey | None:
        return self.principal.key

    def __str__(self) -> str:
        if self.user is not None or self.key is not None:
            return str(self.principal)
        return "anonymous" if self.via in ("admin", "web", "api") else f"system ({self.via})"


def client_ip(request) -> str | None:
    """The caller's address; X-Forwarded-For only counts behind a trusted proxy (INGATE_BEHIND_PROXY)."""
    if settings.INGATE_TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.META.get("REMOTE_ADDR") or None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return value


def snapshot(obj: Model) -> dict[str, Any]:
    """The object's concrete field values, JSON-safe, secrets masked."""
    data = {}
    for f in obj._meta.concrete_fields:
        value = f.value_from_object(obj)
        data[f.attname] = (MASK if value else "") if f.name in SECRET_FIELDS else _jsonable(value)
    return data


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def _org_of(obj: Model | None) -> Organization | None:
    if obj is None:
        return None
    if isinstance(obj, Organization):
        return obj
    org = getattr(obj, "org", None)
    if org is None and hasattr(obj, "team"):
        org = obj.team.org
    return org


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: Model | None = None,
    org: Organization | None = None,
    changes: dict[str, Any] | None = None,
    object_repr: str | None = None,
) -> AuditLog:
    org = org or _org_of(obj)
    # An organization being deleted cannot be referenced any more; its slug stays in org_slug.
    org_ref = org if org is not None and org.pk is not None else None
    return AuditLog.objects.create(
        org=org_ref,
        org_slug=org.slug if org is not None else "",
        actor_user=actor.user if actor.user is not None and actor.user.pk else None,
        actor_key=actor.key,
        actor=str(actor)[:200],
        action=action,
        object_type=obj._meta.label if obj is not None else "",
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=(object_repr if object_repr is not None else str(obj) if obj is not None else "")[:200],
        changes=changes or {},
        ip=actor.ip,
        via=actor.via,
    )


def save_audited_update(*, actor: Actor, obj: Model, before: dict[str, Any]) -> None:
    """Stamp and save `obj`, changed since `before` (its snapshot), and write the audit row of what changed: none
    when nothing did (the update stamp alone is no change)."""
    obj.updated_at = timezone.now()
    obj.save()
    changes = diff(before, snapshot(obj))
    changes.pop("updated_at", None)
    if changes:
        audit_record(actor=actor, action="update", obj=obj, changes=changes)
