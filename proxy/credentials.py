"""Where a request goes and with which provider key: the org's stored credential, else the instance's from
the environment. An org's credentials are read once (one query, secrets decrypted) and then cached."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from tenancy import selectors

from .cache import LoadingCache
from .codes import ErrorCode
from .db import DatabaseThreads
from .errors import ProxyError
from .guardrails.policy import config_of as guardrails_config
from .providers import AUTH_HEADERS, CUSTOM_COMPATIBLE, OPENAI_COMPATIBLE, REGISTRY, ProviderSpec, Route


def _normalise_base(url: str) -> str:
    url = url.strip().rstrip("/")
    if url and "://" not in url:  # OLLAMA_HOST is often host:port
        url = "http://" + url
    return url.replace("://0.0.0.0", "://127.0.0.1")  # a bind address, as OLLAMA_HOST often holds


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str  # registry name or the org's custom provider name
    spec: ProviderSpec
    base_url: str  # no trailing slash; may be "" (Azure with no endpoint)
    auth_headers: tuple[tuple[bytes, bytes], ...]  # what to add when the client's own key is not passed through
    api_version: str = ""
    source: str = "environment"  # or "organization"

    @classmethod
    def build(
        cls,
        name: str,
        spec: ProviderSpec,
        base_url: str,
        secret: str,
        auth: str = "",
        api_version: str = "",
        source: str = "environment",
    ) -> Upstream:
        header = AUTH_HEADERS.get(auth or spec.auth)
        value = f"Bearer {secret}" if header == "authorization" else secret
        # Bytes as they go on the wire; a secret HTTP/1.1 cannot carry (a line break, non-Latin-1) is refused by the
        # upstream client when it is used, with an error naming the upstream.
        auth_headers = ((header.encode(), value.encode("utf-8")),) if header and secret else ()
        return cls(name, spec, _normalise_base(base_url), auth_headers, api_version, source)

    @property
    def has_credential(self) -> bool:
        return bool(self.auth_headers) or not self.spec.needs_secret

    def url(self, path: str, query: str) -> str:
        # A base that already ends in the path's first segment (…/v1 with /v1/chat/completions) is not repeated.
        cut = path.find("/", 1)
        first = path[:cut] if cut > 0 else path
        if first and self.base_url.endswith(first):
            path = path[len(first) :]
        if self.api_version and "api-version=" not in query and path.startswith("/openai/deployments/"):
            query = f"{query}&api-version={self.api_version}" if query else f"api-version={self.api_version}"
        return f"{self.base_url}{path}?{query}" if query else f"{self.base_url}{path}"


def environment_upstreams(provider_env: dict[str, dict[str, str]], azure_api_version: str) -> dict[str, Upstream]:
    """The instance-wide upstream of every registry provider (its key may be missing)."""
    return {
        name: Upstream.build(
            name,
            spec,
            provider_env.get(name, {}).get("base_url") or spec.base_url,
            provider_env.get(name, {}).get("api_key", ""),
            api_version=azure_api_version if name == "azure" else "",
        )
        for name, spec in REGISTRY.items()
    }


@dataclass(frozen=True, slots=True)
class OrgConfig:
    """What the proxy needs to know about an org, read in one go and cached."""

    upstreams: dict[str, Upstream]
    body_capture: int = 0  # bytes of request and response body to keep for the record (0: keep none)
    pooled: dict[str, Upstream] = field(default_factory=dict)  # extra keys of a provider, named, for route targets
    routes: dict[str, Any] = field(default_factory=dict)  # name -> tenancy.selectors.RouteConfig
    limits: Any = None  # tenancy.selectors.LimitsConfig: the org's budgets and rate limits
    cache: Any = None  # tenancy.selectors.CacheConfig, or None when no app of the org caches
    guardrails: Any = None  # proxy.guardrails.policy.GuardrailsConfig, or None when the org has no policy


def _no_bodies(org_id: int) -> int:
    return 0


class CredentialCache:
    """`body_capture(org_id)`: how many bytes of bodies the record sink keeps for an org (it decides: it is what
    stores them); called on the database threads with the org's credentials, and cached with them."""

    def __init__(
        self,
        db: DatabaseThreads,
        environment: dict[str, Upstream],
        *,
        ttl: float,
        body_capture: Callable[[int], int] = _no_bodies,
    ):
        self._db = db
        self._environment = environment
        self._body_capture = body_capture
        self._cache: LoadingCache[int, OrgConfig] = LoadingCache(self._fetch, ttl=ttl, miss_ttl=ttl)

    async def org(self, org_id: int) -> OrgConfig:
        return await self._cache.get(org_id)

    def upstream(self, config: OrgConfig, org_slug: str, route: Route) -> Upstream:
        """The org's upstream for the route's provider, else the instance's. ProxyError 400 for a name nobody knows."""
        stored = config.upstreams
        upstream = stored.get(route.provider) or self._environment.get(route.provider)
        if upstream is None:
            known = ", ".join(sorted(REGISTRY))
            custom = sorted(set(stored) - set(REGISTRY))
            extra = f"; and for organization '{org_slug}': {', '.join(custom)}" if custom else ""
            raise ProxyError(
                400,
                ErrorCode.UNKNOWN_PROVIDER,
                f"Unknown provider '{route.provider}'. Known providers: {known}{extra}. An organization adds its own "
                "OpenAI-compatible provider as a provider credential with a name and base URL.",
            )
        return upstream

    async def _fetch(self, org_id: int) -> OrgConfig:
        rows, pooled_rows, routes, limits, cache, policies, body_capture = await self._db.run(self._load, org_id)
        guardrails = None
        if policies:
            # Compiled on a worker thread, not the event loop, and outside the database timeout: the first PII
            # check of a process loads Presidio's recognizers (a second or so).
            guardrails = await asyncio.get_running_loop().run_in_executor(
                None, guardrails_config, policies, settings.INGATE_GUARDRAILS_SPACY_MODEL
            )
        return OrgConfig(
            self._upstreams(rows),
            body_capture,
            self._upstreams(pooled_rows),
            routes,
            limits,
            None if cache.empty else cache,
            guardrails,
        )

    def _upstreams(self, rows: list[dict]) -> dict[str, Upstream]:
        upstreams = {}
        for row in rows:
            name = row["name"]
            if row["provider"] == OPENAI_COMPATIBLE:
                spec = REGISTRY.get(name, CUSTOM_COMPATIBLE)
            else:
                spec = REGISTRY[row["provider"]]
            # A pooled key (`openai-backup`) reaches its provider where the provider's own key does.
            environment = self._environment.get(name) or self._environment.get(row["provider"])
            base = row["base_url"] or (environment.base_url if environment else "") or spec.base_url
            api_version = row["api_version"] or (environment.api_version if environment else "")
            upstreams[name] = Upstream.build(
                name, spec, base, row["secret"], row["auth_style"], api_version, source="organization"
            )
        return upstreams

    def _load(self, org_id: int) -> tuple[list[dict], list[dict], dict, Any, Any, list[dict], int]:
        return (
            selectors.provider_credentials_of(org_id),
            selectors.pooled_credentials_of(org_id),
            selectors.routes_for_org(org_id),
            selectors.limits_for_org(org_id),
            selectors.cache_settings_for_org(org_id),
            selectors.guardrail_policies_of(org_id),
            self._body_capture(org_id),
        )

    def invalidate(self, org_id: int | None = None) -> None:
        self._cache.invalidate(org_id)


def missing_credential(upstream: Upstream, org_slug: str) -> ProxyError:
    spec = upstream.spec
    if not upstream.base_url:
        return ProxyError(
            401,
            ErrorCode.MISSING_CREDENTIAL,
            f"No {spec.label} endpoint is configured for organization '{org_slug}': add a {spec.name} provider "
            f"credential with your resource's base URL, or set {spec.env_base_url or 'INGATE_UPSTREAM_' + spec.name.upper()} "
            "for the whole instance.",
        )
    instance = f", or set {spec.env_key} for the whole instance" if spec.env_key else ""
    return ProxyError(
        401,
        ErrorCode.MISSING_CREDENTIAL,
        f"No {spec.label} credential is configured for organization '{org_slug}'. Add a '{upstream.name}' provider "
        f"credential (admin or API){instance}; or send your own provider key with the gateway key in X-Ingate-Key.",
    )
