"""Reads the proxy needs, returned as plain data (the proxy never holds model instances)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from django.db.models import F, Q

from proxy.providers import OPENAI_COMPATIBLE

from . import crypto
from .models import DEFAULT_MOVE_ON_STATUSES, APIKey, ProviderCredential, Route, RouteTarget
from .permissions import creator_role_subquery

# The proxy's default credentials: the one named after a built-in provider, and every OpenAI-compatible one
# (each is a provider by its name). Other credentials of a built-in provider are pooled keys for routes.
_PROVIDERS_OWN = Q(provider=OPENAI_COMPATIBLE) | Q(name=F("provider"))
_CREDENTIAL_FIELDS = ("name", "provider", "base_url", "api_version", "auth_style", "secret_encrypted")


def gateway_key_by_prefix(prefix: str) -> dict[str, Any] | None:
    """The key row for a prefix with what the proxy checks (org state, app, team, and its creator's standing
    in the org: the proxy narrows the key's scopes to it, see `tenancy.permissions.scopes_of_creator`), or None."""
    return (
        APIKey.objects.filter(prefix=prefix)
        .annotate(creator_role=creator_role_subquery())
        .values(
            "id",
            "prefix",
            "digest",
            "scopes",
            "expires_at",
            "revoked_at",
            "org_id",
            "app_id",
            "app__team_id",
            "org__slug",
            "org__is_active",
            "created_by_id",
            "created_by__is_active",
            "created_by__is_staff",
            "creator_role",
        )
        .first()
    )


def _decrypted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        token = row.pop("secret_encrypted")
        row["secret"] = crypto.decrypt(token) if token else ""
    return rows


def provider_credentials_of(org_id: int) -> list[dict[str, Any]]:
    """The credential of each provider an org reaches by name, secrets decrypted: the one named after a built-in
    provider, and its OpenAI-compatible ones. Pooled keys are left out (see `pooled_credentials_of`). For the
    proxy's in-memory cache only."""
    return _decrypted(
        list(ProviderCredential.objects.filter(_PROVIDERS_OWN, org_id=org_id).values(*_CREDENTIAL_FIELDS))
    )


def pooled_credentials_of(org_id: int) -> list[dict[str, Any]]:
    """An org's extra keys of built-in providers (`openai-backup` for openai), in the same shape as
    `provider_credentials_of`: what route targets name besides those. For the proxy's in-memory cache only."""
    rows = ProviderCredential.objects.filter(org_id=org_id).exclude(_PROVIDERS_OWN).values(*_CREDENTIAL_FIELDS)
    return _decrypted(list(rows))


# --- routes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteTargetConfig:
    """Where one attempt of a route goes. `credential`: the name of the org's credential to use (a pooled key,
    see `pooled_credentials_of`), or None for the provider's usual one. `params`: read-only overrides merged
    into the request body (copy before changing)."""

    provider: str  # a proxy.providers REGISTRY name, or the org's custom OpenAI-compatible provider's name
    model: str  # sent to the provider as is; never looked up as a route again
    credential: str | None
    weight: int  # 1..1000, for loadbalance
    params: MappingProxyType


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """A route as the routing stage reads it. `retry_on_statuses`: the statuses the route opted in to besides
    `DEFAULT_MOVE_ON_STATUSES`; `move_on_statuses` is both together."""

    name: str
    strategy: str  # fallback | loadbalance | lowest-latency (tenancy.models.Strategy)
    targets: tuple[RouteTargetConfig, ...]  # in order, at least one
    retry_on_statuses: frozenset[int]
    retries_per_target: int  # 0..5: tries of the same target again before the next one
    max_attempts: int  # 1..10: upstream calls in all, retries included
    deadline_seconds: float  # no new attempt starts this long after the request arrived
    first_byte_timeout_seconds: float | None  # a target silent this long is left for the next one (None: no limit)
    drop_unsupported: bool  # drop parameters another format cannot take instead of refusing

    @property
    def move_on_statuses(self) -> frozenset[int]:
        return DEFAULT_MOVE_ON_STATUSES | self.retry_on_statuses


_ROUTE_FIELDS = (
    "id",
    "name",
    "strategy",
    "retry_on_statuses",
    "retries_per_target",
    "max_attempts",
    "deadline_seconds",
    "first_byte_timeout_seconds",
    "drop_unsupported",
)


def routes_for_org(org_id: int) -> dict[str, RouteConfig]:
    """The org's enabled routes by name (what clients send as `model`), as frozen plain data; two queries.
    A route with no targets left is omitted. For the routing stage's cache (run on its database threads)."""
    targets: dict[int, list[RouteTargetConfig]] = {}
    rows = (
        RouteTarget.objects.filter(route__org_id=org_id, route__enabled=True)
        .order_by("route_id", "position", "pk")
        .values_list("route_id", "provider", "model", "credential__name", "weight", "params")
    )
    for route_id, provider, model, credential, weight, params in rows:
        targets.setdefault(route_id, []).append(
            RouteTargetConfig(provider, model, credential, weight, MappingProxyType(dict(params or {})))
        )
    routes = {}
    for row in Route.objects.filter(org_id=org_id, enabled=True).values(*_ROUTE_FIELDS):
        if row["id"] not in targets:
            continue
        routes[row["name"]] = RouteConfig(
            name=row["name"],
            strategy=row["strategy"],
            targets=tuple(targets[row["id"]]),
            retry_on_statuses=frozenset(row["retry_on_statuses"] or ()),
            retries_per_target=row["retries_per_target"],
            max_attempts=row["max_attempts"],
            deadline_seconds=row["deadline_seconds"],
            first_byte_timeout_seconds=row["first_byte_timeout_seconds"],
            drop_unsupported=row["drop_unsupported"],
        )
    return routes
