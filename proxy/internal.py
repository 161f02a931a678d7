"""Calls Ingate makes to models itself (the prompt page's test form, the playground, eval runs, LLM judges),
sent through the proxy's own request path so they are relayed, recorded and costed like any client's.

They act for an org whose membership the caller has already checked: there is no gateway key, and nothing
reachable over HTTP can construct a `Principal`. The body is built here for each provider's wire format and
the answer's text is read back out of it, streamed or not."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings

from . import formats
from .formats import WireFormat
from .headers import Incoming
from .providers import REGISTRY, Route, named_route
from .records import Outcome, ProxyRecord

if TYPE_CHECKING:
    from .upstream_client import UpstreamClient

USER_AGENT = "ingate-internal/1"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an internal call acts for: the shape of a checked gateway key, without one."""

    org_id: int
    org_slug: str
    app_id: int | None = None
    team_id: int | None = None
    id: None = None


@dataclass(slots=True)
class Answer:
    """A model's answer to an internal call, with what the request record will say about it."""

    status: int
    text: str
    error: str
    request_id: str
    latency_ms: float
    ttfb_ms: float | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    model: str = ""
    raw: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.error


def guess_provider(model: str) -> str:
    """The provider a bare model name most likely belongs to, for forms that ask only for a model."""
    lowered = model.lower()
    if lowered.startswith("claude"):
        return "anthropic"
    if lowered.startswith(("gemini", "gemma")):
        return "gemini"
    if ":" in lowered or lowered.startswith(("llama", "qwen", "mistral-nemo", "phi")):
        return "ollama"
    return "openai"


class NoTurn(ValueError):
    """A chat of system messages only, for a provider whose API refuses one: Anthropic's Messages API wants at
    least one message besides `system`, Gemini at least one entry in `contents`. OpenAI-style providers and
    Ollama answer a system message alone."""


def require_turn(provider: str, messages: list[dict]) -> None:
    """Refuse, before anything is sent, a chat that `build_request` would turn into an empty message list."""
    if formats.of_provider(provider).needs_turn and all(m.get("role") == "system" for m in messages):
        spec = REGISTRY.get(provider)
        raise NoTurn(
            f"{spec.label if spec else provider} refuses a request without a user message, and this one has "
            "only a system prompt: write a user message to send after it."
        )


def build_request(
    provider: str, model: str, messages: list[dict], params: dict[str, Any], stream: bool
) -> tuple[str, str, dict]:
    """(path, query, body) for a chat request in `provider`'s own format. `messages` are OpenAI-style
    {role, content}; a leading system message becomes Anthropic's `system` / Gemini's systemInstruction."""
    params = {k: v for k, v in params.items() if v is not None}
    return formats.of_provider(provider).chat_request(
        model, messages, params, stream, provider=provider, azure_api_version=settings.INGATE_AZURE_API_VERSION
    )


class _Events:
    """Splits a streamed body into events and yields their text, in the provider's format."""

    def __init__(self, fmt: WireFormat):
        self.fmt = fmt
        self.events = formats.Events()

    def feed(self, chunk: bytes) -> str:
        return "".join(self._text(payload) for payload in self.events.feed(chunk))

    def flush(self) -> str:
        return "".join(self._text(payload) for payload in self.events.flush())

    def _text(self, payload: bytes) -> str:
        if not payload.startswith(b"{"):
            return ""
        try:
            return self.fmt.text(orjson.loads(payload))
        except ValueError:
            return ""


async def call(
    principal: Principal,
    route: Route,
    path: str,
    body: bytes,
    *,
    query: str = "",
    headers: list[tuple[bytes, bytes]] = (),
    on_chunk: Callable[[bytes], Awaitable[None]] | None = None,
    prompt_version_id: int | None = None,
    abort: asyncio.Event | None = None,
) -> tuple[int, bytes, ProxyRecord]:
    """Run one request through the proxy's request path for `principal`: (status, response body, record).
    With `on_chunk`, body chunks are handed over as they arrive and the returned body is empty. Setting
    `abort` hangs up the way a client disconnecting does: the upstream call stops, the record says so."""
    from .relay import gateway

    app = gateway()
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": query.encode(),
        "headers": list(headers),
    }
    sent = False
    parked = abort or asyncio.Event()

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await parked.wait()  # the relay's disconnect watcher waits here until the exchange ends (or `abort`)
        return {"type": "http.disconnect"}

    status = 0
    chunks: list[bytes] = []

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message.get("body"):
            if on_chunk is not None and 200 <= status < 300:
                await on_chunk(message["body"])
            else:
                chunks.append(message["body"])

    incoming = Incoming.scan(scope["headers"])
    async with sessions():
        record = await app.handle(
            route,
            incoming,
            scope,
            receive,
            send,
            principal=principal,
            client=_CLIENT.get(),
            prompt_version_id=prompt_version_id,
        )
    return status, b"".join(chunks), record


_CLIENT: contextvars.ContextVar[UpstreamClient | None] = contextvars.ContextVar("ingate_upstream_client", default=None)


@contextlib.asynccontextmanager
async def sessions():
    """Reuse one upstream client for the internal calls made inside (an eval run's items) when they run on an
    event loop other than the server's; without it each such call opens and closes its own."""
    from .relay import gateway

    if _CLIENT.get() is not None or gateway().serves(asyncio.get_running_loop()):
        yield
        return
    client = gateway().new_client()
    token = _CLIENT.set(client)
    try:
        yield
    finally:
        _CLIENT.reset(token)
        await client.close()


async def chat(
    principal: Principal,
    provider: str,
    model: str,
    messages: list[dict],
    params: dict[str, Any] | None = None,
    *,
    stream: bool = False,
    on_text: Callable[[str], Awaitable[None]] | None = None,
    tags: dict[str, str] | None = None,
    user_id: str = "",
    session_id: str = "",
    client: str = "ingate-internal",
    prompt_version_id: int | None = None,
    abort: asyncio.Event | None = None,
) -> Answer:
    """Ask `model` at `provider` through the gateway for `principal`; the record carries `tags` as properties,
    `user_id`, `session_id` and `client` (as its user agent). With `on_text`, text deltas are handed over as
    they stream in."""
    from .relay import gateway

    path, query, payload = build_request(provider, model, messages, params or {}, stream)
    route = named_route(provider, path)
    headers = [(b"content-type", b"application/json"), (b"user-agent", f"{client}/1".encode())]
    if user_id:
        headers.append((b"x-ingate-user-id", user_id.encode()))
    if session_id:
        headers.append((b"x-ingate-session-id", session_id.encode()))
    for name, value in (tags or {}).items():
        headers.append((f"x-ingate-property-{name}".encode(), str(value).encode()))
    fmt = formats.of_provider(provider)
    events = _Events(fmt)
    pieces: list[str] = []

    async def relay_text(chunk: bytes) -> None:
        text = events.feed(chunk)
        if text:
            pieces.append(text)
            if on_text is not None:
                await on_text(text)

    started = time.perf_counter()
    status, raw, record = await call(
        principal,
        route,
        path,
        orjson.dumps(payload),
        query=query,
        headers=headers,
        on_chunk=relay_text if stream else None,
        prompt_version_id=prompt_version_id,
        abort=abort,
    )
    latency = (time.perf_counter() - started) * 1000
    error = ""
    if stream and 200 <= status < 300:
        if rest := events.flush():
            pieces.append(rest)
            if on_text is not None:
                await on_text(rest)
        text = "".join(pieces)
        if record.outcome != Outcome.OK:
            error = record.error or "The stream broke off."
    else:
        text = ""
        try:
            data = orjson.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if 200 <= status < 300:
            text = fmt.text(data)
        else:
            error = fmt.error_of(data)[1] or record.error or f"HTTP {status}"
    answer = Answer(
        status=status,
        text=text,
        error=error,
        request_id=record.request_id,
        latency_ms=round(latency, 1),
        ttfb_ms=record.ttfb_ms,
        model=record.response_model or record.model,
        raw=raw,
    )
    tokens = formats.tokens(record.provider, record.usage)
    if tokens is not None and record.org_id is not None:
        answer.input_tokens, answer.output_tokens = tokens.input, tokens.output
        app = gateway()
        price = getattr(app.sink, "price", None)  # the record sink prices, as it prices the records it writes
        if price is not None:
            answer.cost = await app.db.run(price, record)  # on the proxy's DB threads: overrides may be read
    return answer
