"""Writes to guardrail policies: each validates (every check compiled: a bad regex or schema is refused with the
field named), saves and writes one audit entry in the same transaction. The request path reads the policies
through `tenancy.selectors.guardrail_policies_of`, told of each change once committed (tenancy/signals.py)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from .audit import Actor, audit_record, save_audited_update, snapshot
from .models import GuardrailPolicy, Organization

FIELDS = (
    "app",
    "key",
    "name",
    "enabled",
    "checks",
    "message",
    "stream_mode",
    "restore",
    "redact_stored",
    "on_error",
)
# What a policy applies to (org, app, key) is what it is; the rest may change.
UPDATABLE = tuple(name for name in FIELDS if name not in ("app", "key"))


def check(obj: GuardrailPolicy) -> None:
    """Validate an unsaved or changed policy as the services will (forms, serializers). ValidationError names the
    field."""
    if obj.org_id is None:
        raise ValidationError({"org": ["Choose the organization."]})
    obj.full_clean(exclude=["org"], validate_unique=False, validate_constraints=False)


@transaction.atomic
def guardrail_policy_create(*, actor: Actor, org: Organization, **fields) -> GuardrailPolicy:
    """A policy of `org` (FIELDS; without `app` or `key`: the org's default)."""
    obj = GuardrailPolicy(org=org, **{k: v for k, v in fields.items() if k in FIELDS})
    check(obj)
    obj.save()
    audit_record(actor=actor, action="create", obj=obj, changes={"after": snapshot(obj)})
    return obj


@transaction.atomic
def guardrail_policy_update(*, actor: Actor, policy: GuardrailPolicy, **fields) -> GuardrailPolicy:
    """Change a policy (UPDATABLE; what it applies to stays)."""
    obj = GuardrailPolicy.objects.select_for_update(of=("self",)).select_related("org", "app", "key").get(pk=policy.pk)
    before = snapshot(obj)
    for name, value in fields.items():
        if name in UPDATABLE:
            setattr(obj, name, value)
    check(obj)
    save_audited_update(actor=actor, obj=obj, before=before)
    return obj


@transaction.atomic
def guardrail_policy_delete(*, actor: Actor, policy: GuardrailPolicy) -> None:
    audit_record(actor=actor, action="delete", obj=policy, changes={"before": snapshot(policy)})
    policy.delete()
