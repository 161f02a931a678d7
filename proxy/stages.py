"""The request path as stages. One request is one `Exchange` passed through a short ordered list of stages
(settings.INGATE_PROXY_STAGES, like Django's MIDDLEWARE), then relayed and recorded by the pipeline itself:

| order | stage | request side | response side |
|---|---|---|---|
| 1 | `proxy.stages.Authenticate` | the gateway key (cached), its scope; the org | — |
| 2 | `proxy.routing.stage.Routing` | a routed request (its model names a route, or X-Ingate-Route/-Fallback): its plan | — |
| 3 | `proxy.stages.Upstream` | the upstream and its credential | — |
| 4 | `prompts.stage.PromptStage` | renders a registry prompt into the body (`X-Ingate-Prompt`) | — |
| 5 | `proxy.stages.UsageOptions` | model and stream flag for the record; asks a stream for its usage | hides that usage from a client that did not ask |
| 6 | `proxy.guardrails.stage.GuardrailsIn` | a guardrail policy's request checks: block (before cache and limits: nothing filled or reserved), redact into placeholders (before the cache key), flag | — |
| 7 | `proxy.response_cache.stage.ResponseCache` | a hit answers here (`ex.answer`); a miss goes on | `X-Ingate-Cache`; stores a clean 2xx when done |
| 8 | `proxy.limits.stage.Limits` | budgets and rate limits: the worst case reserved, or a 429 | `x-ratelimit-*`, `X-Ingate-Budget-Remaining`; settled when done |
| 9 | `proxy.guardrails.stage.GuardrailsOut` | — | last (after the cache captured the answer as the provider sent it): placeholders restored, the answer checked whole or as it streams (hold/watch); stored bodies redacted when done |
| 10 | `observability.otel.Tracing` (only with `OTEL_EXPORTER_OTLP_ENDPOINT`) | — | when done: the record queued for its span (built and exported on threads) |
| — | relay (proxy/relay.py) | the credential, the body forwarded on the shared client (a routed request: each attempt, proxy/routing/attempts.py) | bytes relayed (translated back for a target of another format), usage read on the side |
| — | record (proxy/relay.py) | — | a plain record handed to the sink (never blocks) |

The contract. A stage is built once per configuration with the `ProxyApp` (for its shared caches and database
threads). `request(ex)` runs in order before the upstream is called: it reads and sets what it needs on the
exchange, may rewrite the body (`ex.replace_body`), may answer itself by setting `ex.answer` (status, headers,
body: the later stages and the upstream are skipped), and refuses by raising `ProxyError`, which the client gets in
its own wire format. `response(ex, status, headers)` runs when the upstream's answer starts, in order; it may
return an `Editor` that sees (and may rewrite) each body chunk as it passes. `done(ex)` runs when the request is
over and its record complete (schedule what must not delay the client). `invalidate(kind, value)` drops
what a stage caches when data changes (proxy/invalidation.py). A stage not configured for the request's org
returns at once from both hooks: that is what "costs nothing" means here. No stage runs a database query on the
event loop (`ProxyApp.db` runs them on threads, behind caches). Wire formats are the formats' (`ex.fmt`,
`proxy/formats`); a stage never parses a provider's JSON or SSE itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.module_loading import import_string

from . import formats, invalidation
from .codes import ErrorCode
from .credentials import missing_credential
from .errors import ProxyError
from .exchange import Editor, Exchange
from .formats import HiddenUsage, ask_for_usage

if TYPE_CHECKING:
    from .relay import ProxyApp


class Stage:
    """A stage of the request path (see the module docstring for the contract)."""

    def __init__(self, app: ProxyApp):
        self.app = app

    async def request(self, ex: Exchange) -> None:
        """Before the upstream is called; raise ProxyError to refuse."""

    def response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> Editor | None:
        """When the upstream's answer starts; an Editor to see and rewrite its body, or None."""
        return None

    def done(self, ex: Exchange) -> None:
        """When the request is over and its record complete (whatever happened), before the record goes to the
        sink: bookkeeping that must not delay the client (schedule it; never raise, never block)."""

    def invalidate(self, kind: str, value: str) -> None:
        """Drop what this stage caches about `kind` (key, credentials, prompts, org, or all when unknown)."""


def build(app: ProxyApp) -> list[Stage]:
    """The configured stages, in order."""
    return [import_string(path)(app) for path in settings.INGATE_PROXY_STAGES]


class Authenticate(Stage):
    """The gateway key, from the header each SDK puts its key in, resolved through the key cache; the org it
    belongs to. Ingate's own calls arrive with their principal already set."""

    async def request(self, ex: Exchange) -> None:
        app = self.app
        if ex.principal is None:
            plaintext, ex.own_key = ex.incoming.gateway_key(ex.query_key)
            if plaintext is None:
                raise ProxyError(
                    401,
                    ErrorCode.MISSING_GATEWAY_KEY,
                    "No Ingate gateway key: send it as your API key (Authorization: Bearer, x-api-key, api-key "
                    "or x-goog-api-key) or in the X-Ingate-Key header.",
                )
            ex.principal = await app.keys.resolve(plaintext)
        key, record = ex.principal, ex.record
        record.org_id, record.app_id, record.team_id, record.key_id = key.org_id, key.app_id, key.team_id, key.id
        ex.org = await app.credentials.org(key.org_id)

    def invalidate(self, kind: str, value: str) -> None:
        if kind == invalidation.KEY:
            self.app.keys.invalidate(prefix=value)
        elif kind == invalidation.ORG:
            self.app.keys.invalidate(org_id=int(value))
        elif kind not in invalidation.KINDS:
            self.app.keys.invalidate()


class Upstream(Stage):
    """Where the request goes: the org's stored credential for the provider, else the instance's; refused when
    neither has a key (unless the client sent its own) or the provider has no address."""

    async def request(self, ex: Exchange) -> None:
        if ex.routed is not None:
            return  # the route picks an upstream per attempt (proxy/routing)
        key = ex.principal
        upstream = self.app.credentials.upstream(ex.org, key.org_slug, ex.route)
        ex.upstream = upstream
        ex.fmt = formats.of(upstream.spec.format, ex.route.endpoint)  # a custom provider's spec names its family
        ex.record.passthrough = ex.own_key
        if not upstream.base_url or not (ex.own_key or upstream.has_credential):
            raise missing_credential(upstream, key.org_slug)

    def invalidate(self, kind: str, value: str) -> None:
        if kind in invalidation.ORG_CONFIG:  # cached with the org's credentials
            self.app.credentials.invalidate(int(value))
        elif kind not in invalidation.KINDS:
            self.app.credentials.invalidate()


class UsageOptions(Stage):
    """Reads the model and the stream flag for the record. The body goes on byte for byte, with one exception:
    an OpenAI-style chat stream without `stream_options.include_usage` gets it added (usage is otherwise never
    reported), and the extra usage is hidden from the client on the way back."""

    async def request(self, ex: Exchange) -> None:
        record, route = ex.record, ex.route
        if route.endpoint.endswith("streamGenerateContent"):
            record.stream = True
        parsed = await ex.json()
        if parsed is None:
            return
        model = ex.fmt.model(parsed)
        if model:
            record.model = model
        stream = ex.fmt.streams(parsed, route.endpoint)
        record.stream = record.stream or stream
        record.body = parsed
        if (
            stream
            and ex.routed is None
            and route.endpoint == "chat.completions"
            and ex.upstream.spec.stream_usage_option
        ):
            asked = ask_for_usage(await ex.body(), parsed)
            if asked is not None:
                ex.replace_body(asked)
                ex.hide_usage = True

    def response(self, ex: Exchange, status: int, headers) -> Editor | None:
        return HiddenUsage() if ex.hide_usage and ex.streamed else None
