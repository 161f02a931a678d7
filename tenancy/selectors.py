"""Reads the proxy needs, returned as plain data (the proxy never holds model instances)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from django.db.models import F, Q

from proxy.providers import OPENAI_COMPATIBLE

from . import crypto
from .models import (
    DEFAULT_MOVE_ON_STATUSES,
    APIKey,
    Budget,
    CacheSettings,
    GuardrailPolicy,
    LimitScope,
    Organization,
    ProviderCredential,
    RateLimit,
    Route,
    RouteTarget,
)
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


# --- budgets and rate limits ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScopeConfig:
    """What a budget or rate limit applies to. `kind`: org | team | app | key | user (tenancy.models.LimitScope);
    `id`: the team's, app's or key's id (None for org and user); for `user`, `user_id` names the end user and
    `app_id` narrows it to one app. A user scope with an app and no user_id is that app's default: each user of
    the app is counted on their own (the counter is per budget and user), unless the app has a budget or limit of
    that kind for that user (`LimitsConfig.budgets_for` applies the rule)."""

    kind: str
    id: int | None = None
    user_id: str = ""
    app_id: int | None = None

    @property
    def is_user_default(self) -> bool:
        return self.kind == LimitScope.USER and self.app_id is not None and not self.user_id

    def matches(self, *, team_id: int | None, app_id: int | None, key_id: int | None, user_id: str) -> bool:
        """Does a request of this team, app, key and end user fall under the scope (user defaults included)?"""
        kind = self.kind
        if kind == LimitScope.ORG:
            return True
        if kind == LimitScope.TEAM:
            return team_id is not None and team_id == self.id
        if kind == LimitScope.APP:
            return app_id is not None and app_id == self.id
        if kind == LimitScope.KEY:
            return key_id is not None and key_id == self.id
        if not user_id or (self.app_id is not None and self.app_id != app_id):
            return False
        return not self.user_id or self.user_id == user_id


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    id: int
    name: str
    scope: ScopeConfig
    amount_usd: Decimal
    period: str  # day | week | month | total (tenancy.periods), in LimitsConfig.timezone
    hard: bool  # refuse once reached (and refuse unpriced requests); False: alerts only
    thresholds: tuple[int, ...]  # percentages, sorted, each recorded once per period
    fail_open: bool  # Redis unreachable: let requests through (True) or refuse them


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    id: int
    name: str
    scope: ScopeConfig
    requests_per_minute: int | None
    tokens_per_minute: int | None  # input + output (+ cache reads when count_cache_reads)
    concurrent: int | None
    count_cache_reads: bool
    fail_open: bool


def _applicable(items: tuple, *, team_id, app_id, key_id, user_id) -> tuple:
    found = [i for i in items if i.scope.matches(team_id=team_id, app_id=app_id, key_id=key_id, user_id=user_id)]
    # An app's per-user default gives way to the app's own entry for that user.
    if any(i.scope.kind == LimitScope.USER and i.scope.user_id and i.scope.app_id == app_id for i in found):
        found = [i for i in found if not i.scope.is_user_default]
    return tuple(found)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """An org's enabled budgets and rate limits, as the limits stage caches them (invalidated by kind `limits`,
    value the org id)."""

    org_id: int
    timezone: str  # IANA name; budget periods reset at its calendar boundaries
    budgets: tuple[BudgetConfig, ...]
    rate_limits: tuple[RateLimitConfig, ...]

    @property
    def empty(self) -> bool:
        """Nothing to enforce: the stage costs nothing for this org."""
        return not self.budgets and not self.rate_limits

    def budgets_for(
        self, *, team_id: int | None, app_id: int | None, key_id: int | None, user_id: str = ""
    ) -> tuple[BudgetConfig, ...]:
        """The budgets a request must all pass."""
        return _applicable(self.budgets, team_id=team_id, app_id=app_id, key_id=key_id, user_id=user_id)

    def rate_limits_for(
        self, *, team_id: int | None, app_id: int | None, key_id: int | None, user_id: str = ""
    ) -> tuple[RateLimitConfig, ...]:
        """The rate limits a request must all pass."""
        return _applicable(self.rate_limits, team_id=team_id, app_id=app_id, key_id=key_id, user_id=user_id)


_SCOPE_COLUMNS = ("id", "name", "scope", "team_id", "app_id", "key_id", "user_id")


def _scope(row: dict) -> ScopeConfig:
    kind = row["scope"]
    if kind == LimitScope.USER:
        return ScopeConfig(kind, None, row["user_id"], row["app_id"])
    return ScopeConfig(kind, {"team": row["team_id"], "app": row["app_id"], "key": row["key_id"]}.get(kind))


def budget_config(budget: Budget) -> BudgetConfig:
    """One budget (enabled or not) as the same plain data, for pages that show it."""
    row = {name: getattr(budget, name) for name in (*_SCOPE_COLUMNS, "amount_usd", "period", "hard", "fail_open")}
    return BudgetConfig(
        id=row["id"],
        name=row["name"],
        scope=_scope(row),
        amount_usd=row["amount_usd"],
        period=row["period"],
        hard=row["hard"],
        thresholds=tuple(budget.thresholds or ()),
        fail_open=row["fail_open"],
    )


def limits_for_org(org_id: int) -> LimitsConfig:
    """The org's enabled budgets and rate limits as frozen plain data; three queries. For the limits stage's cache
    (run on its database threads). An org that does not exist has none."""
    tz = Organization.objects.filter(pk=org_id).values_list("timezone", flat=True).first() or "UTC"
    budgets = tuple(
        BudgetConfig(
            id=row["id"],
            name=row["name"],
            scope=_scope(row),
            amount_usd=row["amount_usd"],
            period=row["period"],
            hard=row["hard"],
            thresholds=tuple(row["thresholds"] or ()),
            fail_open=row["fail_open"],
        )
        for row in Budget.objects.filter(org_id=org_id, enabled=True)
        .order_by("pk")
        .values(*_SCOPE_COLUMNS, "amount_usd", "period", "hard", "thresholds", "fail_open")
    )
    rate_limits = tuple(
        RateLimitConfig(
            id=row["id"],
            name=row["name"],
            scope=_scope(row),
            requests_per_minute=row["requests_per_minute"],
            tokens_per_minute=row["tokens_per_minute"],
            concurrent=row["concurrent"],
            count_cache_reads=row["count_cache_reads"],
            fail_open=row["fail_open"],
        )
        for row in RateLimit.objects.filter(org_id=org_id, enabled=True)
        .order_by("pk")
        .values(
            *_SCOPE_COLUMNS, "requests_per_minute", "tokens_per_minute", "concurrent", "count_cache_reads", "fail_open"
        )
    )
    return LimitsConfig(org_id=org_id, timezone=tz, budgets=budgets, rate_limits=rate_limits)


# --- the response cache -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheSettingsConfig:
    """Effective response cache settings for a request (tenancy.models.CacheSettings, as plain data)."""

    enabled: bool
    ttl_seconds: int
    max_entry_bytes: int
    endpoints: frozenset[str]  # empty: every endpoint of proxy.response_cache.key.CACHEABLE_ENDPOINTS
    cache_positive_temperature: str  # never | when_asked | always (tenancy.models.PositiveTemperature)
    namespace_per_app: bool
    allow_files: bool

    def covers(self, endpoint: str) -> bool:
        """Does the setting let this endpoint's answers be kept (the key module still decides what is cacheable)?"""
        return not self.endpoints or endpoint in self.endpoints


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """An org's response cache settings as the cache stage keeps them (invalidated by kind `cache`, value the org
    id): the org's default and each app's own row, which replaces the default for that app."""

    org_id: int
    default: CacheSettingsConfig | None
    apps: MappingProxyType  # app id -> CacheSettingsConfig

    @property
    def empty(self) -> bool:
        """Caching is off for every app: the stage costs nothing for this org."""
        return not (self.default is not None and self.default.enabled) and not any(
            c.enabled for c in self.apps.values()
        )

    def for_app(self, app_id: int | None) -> CacheSettingsConfig | None:
        """The settings for a request of this app (its own row, else the org's default); None when caching is off."""
        found = self.apps.get(app_id, self.default) if app_id is not None else self.default
        return found if found is not None and found.enabled else None


_CACHE_COLUMNS = (
    "enabled",
    "ttl_seconds",
    "max_entry_bytes",
    "endpoints",
    "cache_positive_temperature",
    "namespace_per_app",
    "allow_files",
)


def _cache_settings_config(row: dict) -> CacheSettingsConfig:
    return CacheSettingsConfig(
        **{name: row[name] for name in _CACHE_COLUMNS if name != "endpoints"},
        endpoints=frozenset(row["endpoints"] or ()),
    )


def guardrail_policies_of(org_id: int) -> list[dict]:
    """The org's enabled guardrail policies as plain rows, for the proxy to compile (proxy/guardrails/policy.py)
    with its credentials; one query."""
    return list(
        GuardrailPolicy.objects.filter(org_id=org_id, enabled=True).values(
            "id", "name", "app_id", "key_id", "checks", "message", "stream_mode", "restore", "redact_stored", "on_error"
        )
    )


def cache_settings_for_org(org_id: int) -> CacheConfig:
    """The org's response cache settings as frozen plain data; one query. For the cache stage's cache (run on its
    database threads). An org without settings, or that does not exist, caches nothing."""
    default = None
    apps = {}
    for row in CacheSettings.objects.filter(org_id=org_id).values("app_id", *_CACHE_COLUMNS):
        config = _cache_settings_config(row)
        if row["app_id"] is None:
            default = config
        else:
            apps[row["app_id"]] = config
    return CacheConfig(org_id=org_id, default=default, apps=MappingProxyType(apps))
