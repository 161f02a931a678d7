"""Routes on the request path: the `Routing` stage finds whether a request is routed (its `model` names one of the
org's routes, `X-Ingate-Route` names one, or `X-Ingate-Fallback` carries a chain), and if so leaves a `RoutedRequest`
on the exchange. The relay then asks it for one `Leg` per attempt (the upstream, the body in the target's format,
the editor that turns the answer back into the client's) and reports how each attempt went.

A request that is not routed costs one dict lookup here: nothing else runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings

from .. import formats
from ..codes import ErrorCode
from ..credentials import missing_credential
from ..errors import ProxyError
from ..formats import HiddenUsage
from ..providers import REGISTRY, Route
from ..stages import Stage
from .retry import Attempt, Plan, Target

if TYPE_CHECKING:
    from ..credentials import Upstream
    from ..exchange import Editor, Exchange

ROUTE_HEADER = b"x-ingate-route"
FALLBACK_HEADER = b"x-ingate-fallback"
_ANTHROPIC_ONLY = (b"anthropic-version", b"anthropic-beta")


@dataclass(slots=True)
class Leg:
    """One attempt's request: where it goes and in which format, and how its answer comes back."""

    attempt: Attempt
    upstream: Upstream
    fmt: formats.WireFormat  # what the upstream speaks
    url: str
    body: bytes
    headers: list[tuple[bytes, bytes]]
    translator: Any = None  # formats.Translator when the target speaks another format than the client
    hide_usage: bool = False  # usage was asked for on the client's behalf
    passthrough: bool = False

    @property
    def label(self) -> str:
        return f"{self.attempt.target.provider}/{self.attempt.target.model}"

    def editor(self, status: int, streamed: bool) -> Editor | None:
        if self.translator is not None:
            return self.translator.editor(status, streamed)
        if self.hide_usage and streamed:
            return HiddenUsage()
        return None


@dataclass(slots=True)
class RoutedRequest:
    """A routed request's plan and what its attempts did (for the record and the response headers)."""

    name: str  # the route's name, or "fallback" for a chain from X-Ingate-Fallback
    plan: Plan
    targets: tuple  # RouteTargetConfig-like: provider, model, credential, params
    retry_on: frozenset[int]
    first_byte_timeout: float | None
    drop_unsupported: bool
    credentials: Any  # the app's CredentialCache
    attempts: list[dict[str, Any]] = field(default_factory=list)
    answered: Leg | None = None

    def leg(self, ex: Exchange, attempt: Attempt) -> Leg:
        """The request for `attempt`, or ProxyError when this target cannot take it (no credential, a parameter
        its format cannot say): the relay then moves on like after a failed attempt."""
        target = self.targets[attempt.index]
        upstream = _upstream(ex, target, self.credentials)
        if not upstream.base_url or not upstream.has_credential:
            raise missing_credential(upstream, ex.principal.org_slug)
        # The target's own format: OpenAI's for the endpoint asked (chat, responses) when it speaks OpenAI's, else
        # its family's native one (an Anthropic target of an OpenAI chat request speaks Messages).
        family = upstream.spec.format
        fmt = formats.of(family, ex.route.endpoint) if family == "openai" else formats.of(family)
        parsed = ex.parsed or {}
        passthrough = bool(ex.own_key and target.credential is None and target.provider == ex.route.provider)
        drop = set(_ANTHROPIC_ONLY) if fmt.name != "anthropic" else set()
        hide = False
        translator = None
        if fmt.name == ex.fmt.name:
            body = {**parsed, "model": target.model, **target.params}
            path, query = ex.route.path, ex.query
            if (
                body.get("stream") is True
                and ex.route.endpoint == "chat.completions"
                and upstream.spec.stream_usage_option
                and not (isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage"))
            ):
                body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
                hide = True
            raw = orjson.dumps(body)
        else:
            translator = formats.translator(
                ex.fmt,
                fmt,
                drop_unsupported=self.drop_unsupported,
                target_provider=upstream.spec.name,
                default_max_tokens=settings.INGATE_ROUTE_DEFAULT_MAX_TOKENS,
            )
            if translator is None:
                raise ProxyError(
                    400,
                    ErrorCode.UNTRANSLATABLE_PARAMETER,
                    f"The route '{self.name}' sends this {ex.fmt.name} request ({ex.route.endpoint}) to "
                    f"{target.provider}, which speaks {fmt.name}: Ingate translates only chat requests between the "
                    "OpenAI chat completions and Anthropic Messages formats.",
                )
            body = translator.request(parsed, target.model)
            if target.params:
                body = {**body, **target.params}
            raw = orjson.dumps(body)
            path, query = translator.endpoint(target.model, provider=upstream.spec.name, azure_api_version="")
        headers = ex.incoming.upstream_headers(
            upstream.auth_headers,
            passthrough,
            identity=hide or translator is not None or (ex.guard is not None and ex.guard.reads_answer),
        )
        if drop:
            headers = [h for h in headers if h[0] not in drop]
        if translator is not None:
            headers.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in translator.headers)
        url = upstream.url(path, query)
        return Leg(attempt, upstream, fmt, url, raw, headers, translator, hide, passthrough)

    def note(self, attempt: Attempt, *, status: int, error: str, ms: float, code: str = "") -> None:
        """What one attempt did, for the record (the list the logs and the request page show)."""
        target = self.targets[attempt.index]
        self.attempts.append(
            {
                "provider": target.provider,
                "model": target.model,
                "credential": target.credential or "",
                "status": status,
                "error": error[:500],
                "ms": round(ms, 1),
                "error_code": code,  # Ingate's code when Ingate refused the attempt itself (missing_credential, …)
            }
        )

    def note_skipped(self) -> None:
        """Targets the plan passed over because their circuit was open: in the record, not in X-Ingate-Attempts."""
        tried = {(a["provider"], a["model"], a["credential"]) for a in self.attempts}
        for index in self.plan.skipped:
            target = self.targets[index]
            ident = (target.provider, target.model, target.credential or "")
            if ident in tried:
                continue
            failure = self.plan.health.last_failure(self.plan.keys[index])
            why = f" after {failure.describe()}" if failure is not None else ""
            self.attempts.append(
                {
                    **dict(zip(("provider", "model", "credential"), ident, strict=True)),
                    "status": 0,
                    "error": f"skipped: paused{why}",
                    "ms": 0.0,
                    "error_code": "",
                    "skipped": True,
                }
            )

    @property
    def tried(self) -> int:
        return sum(1 for attempt in self.attempts if not attempt.get("skipped"))

    def chose(self, leg: Leg, record) -> None:
        """The attempt whose answer the client gets: the record prices the model that answered, in its format."""
        target = leg.attempt.target
        record.provider, record.model = target.provider, target.model
        record.passthrough = leg.passthrough
        self.note_skipped()
        record.attempts = self.attempts
        self.answered = leg

    def headers(self, leg: Leg) -> list[tuple[bytes, bytes]]:
        """What the client learns about the route: its name, the target that answered, how many attempts."""
        target = leg.attempt.target
        return [
            (b"x-ingate-route", self.name.encode("latin-1", "replace")),
            (b"x-ingate-provider", target.provider.encode("latin-1", "replace")),
            (b"x-ingate-model", target.model.encode("latin-1", "replace")),
            (b"x-ingate-attempts", str(self.tried).encode()),
        ]


def _upstream(ex: Exchange, target, credentials) -> Upstream:
    org = ex.org
    if target.credential:
        pooled = org.pooled.get(target.credential) or org.upstreams.get(target.credential)
        if pooled is not None:
            return pooled
    return credentials.upstream(org, ex.principal.org_slug, Route(target.provider, ex.route.endpoint, ""))


@dataclass(frozen=True, slots=True)
class ChainTarget:
    provider: str
    model: str
    credential: str | None = None
    weight: int = 1
    params: dict = field(default_factory=dict)


class Routing(Stage):
    """Sets `ex.routed` for a request the org routes; nothing for any other."""

    def __init__(self, app):
        super().__init__(app)
        self._started = None  # the Health whose listener runs
        self._targets: dict[int, tuple[tuple, tuple[Target, ...]]] = {}

    async def request(self, ex: Exchange) -> None:
        routes = ex.org.routes
        ingate = ex.incoming.ingate
        named = ingate.get(ROUTE_HEADER)
        chain = ingate.get(FALLBACK_HEADER)
        if not routes and named is None and chain is None:
            return
        parsed = await ex.json()
        model = (ex.fmt.model(parsed) if parsed else "") or ex.route.model
        route = None
        if named is not None:
            name = named.decode("latin-1").strip()
            route = routes.get(name)
            if route is None:
                raise _unknown_route(name, routes)
        elif model and model in routes:
            route = routes[model]
        if route is None and chain is None:
            return
        if parsed is None:
            raise ProxyError(
                400, ErrorCode.INVALID_REQUEST, "A routed request needs a JSON body naming its model and messages."
            )
        config = settings
        health = self.app.health
        if health is not self._started:
            health.start()  # its listener, in the serving loop (none without Redis)
            self._started = health
        if route is not None:
            targets = route.targets
            planned = self._plan_targets(targets)
            name = route.name
            options = dict(
                strategy=route.strategy,
                retries=route.retries_per_target,
                max_attempts=route.max_attempts,
                deadline=route.deadline_seconds,
            )
            retry_on, first_byte, drop = (
                route.retry_on_statuses,
                route.first_byte_timeout_seconds,
                route.drop_unsupported,
            )
        else:
            own = ChainTarget(ex.route.provider, model)
            targets = (own, *_chain(chain.decode("latin-1"), ex))
            planned = _as_targets(targets)
            name = "fallback"
            options = dict(strategy="fallback", retries=0, max_attempts=len(targets), deadline=None)
            retry_on, first_byte, drop = frozenset(), None, False
        plan = Plan(
            ex.principal.org_id,
            planned,
            health=health,
            base=config.INGATE_ROUTE_RETRY_BASE,
            cap=config.INGATE_ROUTE_RETRY_CAP,
            **options,
        )
        ex.routed = RoutedRequest(name, plan, tuple(targets), retry_on, first_byte, drop, self.app.credentials)
        ex.record.route = name

    def _plan_targets(self, targets: tuple) -> tuple[Target, ...]:
        """The plan's view of a route's targets, made once per loaded route (the tuple is the org config's)."""
        made = self._targets.get(id(targets))
        if made is None or made[0] is not targets:
            if len(self._targets) > 10_000:
                self._targets.clear()
            made = self._targets[id(targets)] = (targets, _as_targets(targets))
        return made[1]

    def invalidate(self, kind: str, value: str) -> None:
        pass  # routes are cached with the org's credentials (proxy/credentials.py)


def _as_targets(targets) -> tuple[Target, ...]:
    return tuple(Target(t.provider, t.model, t.credential or "default", float(t.weight)) for t in targets)


def _chain(value: str, ex: Exchange) -> list[ChainTarget]:
    """`anthropic/claude-sonnet-4-5, openai/gpt-4.1` -> targets; 400 for a malformed entry or unknown provider."""
    found = []
    known = set(REGISTRY) | set(ex.org.upstreams)
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        provider, _, model = part.partition("/")
        provider, model = provider.strip(), model.strip()
        if not provider or not model:
            raise ProxyError(
                400,
                ErrorCode.INVALID_REQUEST,
                f"X-Ingate-Fallback entries are provider/model, comma-separated; got {part!r}.",
            )
        if provider not in known:
            raise ProxyError(
                400,
                ErrorCode.UNKNOWN_PROVIDER,
                f"X-Ingate-Fallback names an unknown provider {provider!r}. Known providers: "
                f"{', '.join(sorted(known))}.",
            )
        found.append(ChainTarget(provider, model))
    if len(found) > 8:
        raise ProxyError(400, ErrorCode.INVALID_REQUEST, "X-Ingate-Fallback takes at most 8 targets.")
    return found


def _unknown_route(name: str, routes: dict) -> ProxyError:
    listed = ", ".join(sorted(routes)) if routes else "none yet"
    return ProxyError(
        400,
        ErrorCode.UNKNOWN_ROUTE,
        f"Unknown route {name!r}. This organization's routes: {listed}. Routes are managed in the dashboard, the "
        "admin or the API (/ingate/api/v1/routes/).",
    )
