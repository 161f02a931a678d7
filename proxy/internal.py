"""Calls Ingate makes to models itself (the prompt page's test form, the playground, eval runs, LLM judges),
sent through the proxy's own request path so they are relayed, recorded and costed like any client's.

They act for an org whose membership the caller has already checked: there is no gateway key, and nothing
reachable over HTTP can construct a `Principal`. The body is built here for each provider's wire format and
the answer's text is read back out of it, streamed or not."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from django.conf import settings

from .headers import Incoming
from .providers import REGISTRY, Route, named_route
from .records import ProxyRecord

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


def shape_of(provider: str) -> str:
    """The wire format a provider name speaks: openai (and every compatible one), anthropic, gemini, ollama."""
    spec = REGISTRY.get(provider)
    return spec.errors if spec is not None else "openai"


class NoTurn(ValueError):
    """A chat of system messages only, for a provider whose API refuses one: Anthropic's Messages API wants at
    least one message besides `system`, Gemini at least one entry in `contents`. OpenAI-style providers and
    Ollama answer a system message alone."""


def require_turn(provider: str, messages: list[dict]) -> None:
    """Refuse, before anything is sent, a chat that `build_request` would turn into an empty message list."""
    if shape_of(provider) in ("anthropic", "gemini") and all(m.get("role") == "system" for m in messages):
        spec = REGISTRY.get(provider)
        raise NoTurn(f"{spec.label if spec else provider} refuses a request without a user message, and this one has "
                     "only a system prompt: write a user message to send after it.")


def build_request(provider: str, model: str, messages: list[dict], params: dict[str, Any], stream: bool
                  ) -> tuple[str, str, dict]:
    """(path, query, body) for a chat request in `provider`'s own format. `messages` are OpenAI-style
    {role, content}; a leading system message becomes Anthropic's `system` / Gemini's systemInstruction."""
    params = {k: v for k, v in params.items() if v is not None}
    system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
    turns = [m for m in messages if m.get("role") != "system"]
    shape = shape_of(provider)
    if shape == "anthropic":
        body = {"model": model, "max_tokens": params.pop("max_tokens", 1024), "messages": turns, **params}
        if system:
            body["system"] = system
        if stream:
            body["stream"] = True
        return "/v1/messages", "", body
    if shape == "gemini":
        config = {}
        if "temperature" in params:
            config["temperature"] = params.pop("temperature")
        if "max_tokens" in params:
            config["maxOutputTokens"] = params.pop("max_tokens")
        body = {
            "contents": [
                {"role": "model" if m["role"] == "assistant" else "user", "parts": [{"text": m["content"]}]} for m in turns
            ],
            **params,
        }
        if config:
            body["generationConfig"] = config
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        verb = "streamGenerateContent" if stream else "generateContent"
        return f"/v1beta/models/{model}:{verb}", "alt=sse" if stream else "", body
    if shape == "ollama":
        options = {k: params.pop(k) for k in ("temperature", "top_p", "seed") if k in params}
        if "max_tokens" in params:
            options["num_predict"] = params.pop("max_tokens")
        body = {"model": model, "messages": messages, "stream": stream, **params}
        if options:
            body["options"] = options
        return "/api/chat", "", body
    body = {"model": model, "messages": messages, **params}
    if stream:
        body["stream"] = True
    if provider == "azure":
        return f"/openai/deployments/{model}/chat/completions", f"api-version={settings.INGATE_AZURE_API_VERSION}", body
    return "/v1/chat/completions", "", body


def text_of(shape: str, data: Any) -> str:
    """The answer text in a non-streamed response body, or in one streamed event's data."""
    if not isinstance(data, dict):
        return ""
    if shape == "anthropic":
        if data.get("type") == "content_block_delta":
            return (data.get("delta") or {}).get("text") or ""
        return "".join(block.get("text", "") for block in data.get("content") or [] if isinstance(block, dict))
    if shape == "gemini":
        out = []
        for candidate in data.get("candidates") or []:
            for part in ((candidate or {}).get("content") or {}).get("parts") or []:
                if isinstance(part, dict) and not part.get("thought"):
                    out.append(part.get("text") or "")
        return "".join(out)
    if shape == "ollama":
        return ((data.get("message") or {}).get("content")) or ""
    out = []
    for choice in data.get("choices") or []:
        if isinstance(choice, dict):
            part = choice.get("delta") if "delta" in choice else choice.get("message")
            out.append(((part or {}).get("content")) or "")
    return "".join(out)


def error_of(data: Any) -> str:
    """A provider error body's message, in any of the four shapes."""
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if isinstance(err, str):
            return err
    return ""


class _Events:
    """Splits a streamed body into events (SSE `data:` lines, or Ollama's JSON lines) and yields their text."""

    def __init__(self, shape: str):
        self.shape = shape
        self.buffer = b""

    def feed(self, chunk: bytes) -> str:
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return "".join(self._line(line) for line in lines)

    def flush(self) -> str:
        line, self.buffer = self.buffer, b""
        return self._line(line)

    def _line(self, line: bytes) -> str:
        line = line.strip()
        if line.startswith(b"data:"):
            line = line[5:].strip()
        elif self.shape != "ollama" or not line.startswith(b"{"):
            return ""
        if not line or line == b"[DONE]":
            return ""
        try:
            return text_of(self.shape, orjson.loads(line))
        except ValueError:
            return ""


async def call(principal: Principal, route: Route, path: str, body: bytes, *, query: str = "",
               headers: list[tuple[bytes, bytes]] = (),
               on_chunk: Callable[[bytes], Awaitable[None]] | None = None, prompt_version_id: int | None = None,
               abort: asyncio.Event | None = None) -> tuple[int, bytes, ProxyRecord]:
    """Run one request through the proxy's request path for `principal`: (status, response body, record).
    With `on_chunk`, body chunks are handed over as they arrive and the returned body is empty. Setting
    `abort` hangs up the way a client disconnecting does: the upstream call stops, the record says so."""
    from .relay import gateway

    app = gateway()
    scope = {
        "type": "http", "method": "POST", "path": path,
        "query_string": query.encode(), "headers": list(headers),
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
            route, incoming, scope, receive, send, principal=principal, session=_SESSION.get(),
            prompt_version_id=prompt_version_id,
        )
    return status, b"".join(chunks), record


_SESSION: contextvars.ContextVar[aiohttp.ClientSession | None] = contextvars.ContextVar("ingate_session", default=None)


@contextlib.asynccontextmanager
async def sessions():
    """Reuse one upstream client for the internal calls made inside (an eval run's items) when they run on an
    event loop other than the server's; without it each such call opens and closes its own."""
    from .relay import gateway

    if _SESSION.get() is not None or gateway().serves(asyncio.get_running_loop()):
        yield
        return
    session = gateway().new_session()
    token = _SESSION.set(session)
    try:
        yield
    finally:
        _SESSION.reset(token)
        await session.close()


async def chat(principal: Principal, provider: str, model: str, messages: list[dict], params: dict[str, Any] | None = None,
               *, stream: bool = False, on_text: Callable[[str], Awaitable[None]] | None = None,
               tags: dict[str, str] | None = None, user_id: str = "", session_id: str = "",
               client: str = "ingate-internal", prompt_version_id: int | None = None,
               abort: asyncio.Event | None = None) -> Answer:
    """Ask `model` at `provider` through the gateway for `principal`; the record carries `tags` as properties,
    `user_id`, `session_id` and `client` (as its user agent). With `on_text`, text deltas are handed over as
    they stream in."""
    from observability.rows import record_cost
    from observability.usage import normalize

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
    shape = shape_of(provider)
    events = _Events(shape)
    pieces: list[str] = []

    async def relay_text(chunk: bytes) -> None:
        text = events.feed(chunk)
        if text:
            pieces.append(text)
            if on_text is not None:
                await on_text(text)

    started = time.perf_counter()
    status, raw, record = await call(
        principal, route, path, orjson.dumps(payload), query=query, headers=headers, on_chunk=relay_text if stream else None,
        prompt_version_id=prompt_version_id, abort=abort,
    )
    latency = (time.perf_counter() - started) * 1000
    error = ""
    if stream and 200 <= status < 300:
        if rest := events.flush():
            pieces.append(rest)
            if on_text is not None:
                await on_text(rest)
        text = "".join(pieces)
        if record.outcome != "ok":
            error = record.error or "The stream broke off."
    else:
        text = ""
        try:
            data = orjson.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if 200 <= status < 300:
            text = text_of(shape, data)
        else:
            error = error_of(data) or record.error or f"HTTP {status}"
    answer = Answer(
        status=status, text=text, error=error, request_id=record.request_id, latency_ms=round(latency, 1),
        ttfb_ms=record.ttfb_ms, model=record.response_model or record.model, raw=raw,
    )
    tokens = normalize(record.provider, record.usage)
    if tokens is not None and record.org_id is not None:
        answer.input_tokens, answer.output_tokens = tokens.input, tokens.output
        overrides, _ = await gateway().db.run(_policies().of, record.org_id)  # the proxy's DB threads
        cost = record_cost(record, tokens, overrides)
        answer.cost = float(cost.total) if cost is not None else None
    return answer


@functools.cache
def _policies():
    """Each org's price overrides, cached as the record writer caches them, so answers cost what records do."""
    from observability.rows import OrgPolicies

    return OrgPolicies()
