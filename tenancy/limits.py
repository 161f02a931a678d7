"""Writes to budgets and rate limits: each validates the whole object (its scope must belong to its org), saves it
and writes one audit entry in the same transaction. The request path reads them through
`tenancy.selectors.limits_for_org`, told of each change once committed (tenancy/signals.py)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from .audit import Actor, audit_record, save_audited_update, snapshot
from .models import Budget, Organization, RateLimit

SCOPE_FIELDS = ("scope", "team", "app", "key", "user_id")
BUDGET_FIELDS = (*SCOPE_FIELDS, "name", "enabled", "amount_usd", "period", "hard", "thresholds", "fail_open")
RATE_LIMIT_FIELDS = (
    *SCOPE_FIELDS,
    "name",
    "enabled",
    "requests_per_minute",
    "tokens_per_minute",
    "concurrent",
    "count_cache_reads",
    "fail_open",
)
FIELDS = {Budget: BUDGET_FIELDS, RateLimit: RATE_LIMIT_FIELDS}

# Changing the scope kind leaves the other scope fields as they were; these are cleared unless given again.
_SCOPE_OBJECTS = ("team", "app", "key", "user_id")


def _validate(obj: Budget | RateLimit) -> None:
    obj.full_clean(exclude=["org"], validate_unique=False, validate_constraints=False)


def _create(*, actor: Actor, model: type[Budget | RateLimit], org: Organization, fields: dict) -> Budget | RateLimit:
    obj = model(org=org, **{k: v for k, v in fields.items() if k in FIELDS[model]})
    _validate(obj)
    obj.save()
    audit_record(actor=actor, action="create", obj=obj, changes={"after": snapshot(obj)})
    return obj


def _update(*, actor: Actor, obj: Budget | RateLimit, fields: dict) -> Budget | RateLimit:
    model = type(obj)
    obj = model.objects.select_for_update().select_related("org").get(pk=obj.pk)
    before = snapshot(obj)
    if "scope" in fields and fields["scope"] != obj.scope:
        for name in _SCOPE_OBJECTS:
            if name not in fields:
                setattr(obj, name, "" if name == "user_id" else None)
    for name, value in fields.items():
        if name in FIELDS[model]:
            setattr(obj, name, value)
    _validate(obj)
    save_audited_update(actor=actor, obj=obj, before=before)
    return obj


def _delete(*, actor: Actor, obj: Budget | RateLimit) -> None:
    audit_record(actor=actor, action="delete", obj=obj, changes={"before": snapshot(obj)})
    obj.delete()


@transaction.atomic
def budget_create(*, actor: Actor, org: Organization, **fields) -> Budget:
    """A budget of `org` (BUDGET_FIELDS; the team, app or key must be the org's). ValidationError names the field."""
    return _create(actor=actor, model=Budget, org=org, fields=fields)


@transaction.atomic
def budget_update(*, actor: Actor, budget: Budget, **fields) -> Budget:
    """Change a budget; a new scope kind clears the scope fields it does not use unless they are given."""
    return _update(actor=actor, obj=budget, fields=fields)


@transaction.atomic
def budget_delete(*, actor: Actor, budget: Budget) -> None:
    _delete(actor=actor, obj=budget)


@transaction.atomic
def rate_limit_create(*, actor: Actor, org: Organization, **fields) -> RateLimit:
    """A rate limit of `org` (RATE_LIMIT_FIELDS; at least one of the three limits set)."""
    return _create(actor=actor, model=RateLimit, org=org, fields=fields)


@transaction.atomic
def rate_limit_update(*, actor: Actor, rate_limit: RateLimit, **fields) -> RateLimit:
    return _update(actor=actor, obj=rate_limit, fields=fields)


@transaction.atomic
def rate_limit_delete(*, actor: Actor, rate_limit: RateLimit) -> None:
    _delete(actor=actor, obj=rate_limit)


def check(obj: Budget | RateLimit) -> None:
    """Validate an unsaved or changed budget or rate limit as the services will (for forms and serializers).
    ValidationError with the fields' messages."""
    if obj.org_id is None:
        raise ValidationError({"org": ["Choose the organization."]})
    _validate(obj)
