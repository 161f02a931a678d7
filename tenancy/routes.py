"""Writes to routes (virtual models) and their targets: each validates the route and every target, saves them and
writes one audit entry in one transaction. A route's targets are always written together, as an ordered list."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .audit import Actor, audit_record, diff, snapshot
from .models import MAX_TARGETS, Organization, ProviderCredential, Route, RouteTarget

# What a client may set on a route besides its targets (the org is fixed once it exists).
ROUTE_FIELDS = (
    "name",
    "strategy",
    "retry_on_statuses",
    "retries_per_target",
    "max_attempts",
    "deadline_seconds",
    "first_byte_timeout_seconds",
    "drop_unsupported",
    "enabled",
)
TARGET_FIELDS = ("provider", "model", "credential", "weight", "params")


def build_targets(route: Route, targets: list[dict[str, Any]]) -> list[RouteTarget]:
    """Unsaved targets of `route`, in the given order. Each dict holds TARGET_FIELDS (`credential`: a
    ProviderCredential or None; `weight` and `params` may be left out)."""
    return [
        RouteTarget(route=route, position=position, **{k: v for k, v in target.items() if k in TARGET_FIELDS})
        for position, target in enumerate(targets)
    ]


def target_errors(route: Route, targets: list[RouteTarget]) -> list[dict[str, list[str]]]:
    """Every target's field errors, by position (an empty dict for a target without any)."""
    found = []
    for target in targets:
        try:
            target.full_clean(exclude=["route", "position"])
        except ValidationError as exc:
            found.append(exc.message_dict)
        else:
            found.append({})
    return found


def check_count(targets: list) -> None:
    if not targets:
        raise ValidationError({"targets": ["A route needs at least one target."]})
    if len(targets) > MAX_TARGETS:
        raise ValidationError({"targets": [f"A route has at most {MAX_TARGETS} targets."]})


def check_name(route: Route) -> None:
    """The name is free in the route's org (a field error rather than the constraint's generic one)."""
    taken = Route.objects.filter(org_id=route.org_id, name=route.name).exclude(pk=route.pk)
    if route.name and route.org_id and taken.exists():
        raise ValidationError({"name": [f"{route.org.name} already has a route named {route.name!r}."]})


def _validate(route: Route, targets: list[RouteTarget]) -> None:
    check_count(targets)
    check_name(route)
    route.full_clean(validate_unique=False, validate_constraints=False)
    errors = target_errors(route, targets)
    if any(errors):
        raise ValidationError(
            {
                "targets": [
                    f"Target {position + 1}, {field}: {message}"
                    for position, fields in enumerate(errors)
                    for field, messages in fields.items()
                    for message in messages
                ]
            }
        )


def target_snapshot(target: RouteTarget) -> dict[str, Any]:
    """A target as the audit log and the API show it: the credential by name."""
    return {
        "provider": target.provider,
        "model": target.model,
        "credential": target.credential.name if target.credential_id else None,
        "weight": target.weight,
        "params": target.params,
    }


def _route_snapshot(route: Route, targets: list[RouteTarget]) -> dict[str, Any]:
    return {**snapshot(route), "targets": [target_snapshot(t) for t in targets]}


def _current_targets(route: Route) -> list[RouteTarget]:
    return list(route.targets.select_related("credential").order_by("position", "pk"))


def route_audit_snapshot(route: Route) -> dict[str, Any]:
    """The route and its stored targets, as its audit entries show them."""
    return _route_snapshot(route, _current_targets(route))


def route_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """What changed between two snapshots, the update stamp aside."""
    changes = diff(before, after)
    changes.pop("updated_at", None)
    return changes


@transaction.atomic
def route_create(*, actor: Actor, org: Organization, targets: list[dict[str, Any]], **fields) -> Route:
    """A route of `org` with its targets, in order. ValidationError names the field (targets: each one)."""
    route = Route(org=org, **{k: v for k, v in fields.items() if k in ROUTE_FIELDS})
    built = build_targets(route, targets)
    _validate(route, built)
    route.save()
    for target in built:
        target.route = route
    RouteTarget.objects.bulk_create(built)
    audit_record(actor=actor, action="create", obj=route, changes={"after": _route_snapshot(route, built)})
    return route


@transaction.atomic
def route_update(*, actor: Actor, route: Route, targets: list[dict[str, Any]] | None = None, **fields) -> Route:
    """Change a route's settings; `targets`, when given, replaces its whole list of targets."""
    route = Route.objects.select_for_update().select_related("org").get(pk=route.pk)
    before_targets = _current_targets(route)
    before = _route_snapshot(route, before_targets)
    for name, value in fields.items():
        if name in ROUTE_FIELDS:
            setattr(route, name, value)
    built = build_targets(route, targets) if targets is not None else before_targets
    _validate(route, built)
    route.updated_at = timezone.now()
    route.save()
    if targets is not None:
        route.targets.all().delete()
        RouteTarget.objects.bulk_create(built)
    if changes := route_changes(before, _route_snapshot(route, built)):
        audit_record(actor=actor, action="update", obj=route, changes=changes)
    return route


@transaction.atomic
def route_delete(*, actor: Actor, route: Route) -> None:
    audit_record(actor=actor, action="delete", obj=route, changes={"before": route_audit_snapshot(route)})
    route.delete()


def params_text(params: dict) -> str:
    """A target's parameters as the routes page shows and edits them ("" for none)."""
    return json.dumps(params, sort_keys=True) if params else ""


def credential_by_name(org: Organization, name: str | None) -> ProviderCredential | None:
    """The org's credential called `name` (None for no name); ValidationError when the org has none by that name.
    Another org's credential of the same name is never found."""
    if not name:
        return None
    found = ProviderCredential.objects.filter(org=org, name=name).first()
    if found is None:
        raise ValidationError(f"{org.name} has no provider credential named {name!r}.")
    return found
