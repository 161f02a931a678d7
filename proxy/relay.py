"""The proxy: an ASGI application in front of Django that relays provider requests.

Per request: detect the provider from the path, check the gateway key (cached), pick the upstream and its
credential (cached), forward the body as received on one shared aiohttp client, and relay status, headers
and body chunks back as they arrive. Everything else goes to Django."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import sys
import time
import uuid
from dataclasses import dataclass

import aiohttp
import orjson
from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string
from yarl import URL

from . import invalidation, paths, prompts
from .auth import KeyCache
from .credentials import CredentialCache, environment_upstreams, missing_credential
from .db import DatabaseThreads
from .errors import ProxyError, error_body, error_headers
from .headers import Incoming, split_query
from .prompts import PromptCache
from .providers import REGISTRY, Route, detect
from .records import ProxyRecord
from .usage import HiddenUsage, UsageTap, provider_error

log = logging.getLogger(__name__)

# Response headers that describe the upstream connection, not the message.
_RESPONSE_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"proxy-authenticate", b"trailer", b"upgrade"}
)


# Errors the gateway answers for the upstream, by code; everything else it refused itself.
_OUTCOMES = {"upstream_unreachable": "upstream_unreachable", "upstream_timeout": "upstream_timeout"}


def new_request_id() -> str:
    """A UUIDv7 (time-ordered, so record ids index well) as text. Ids need to be unique, not secret:
    `random` avoids a getrandom() system call per request."""
    ms = time.time_ns() // 1_000_000
    rand = random.getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    connect_timeout: float
    read_timeout: float
    max_request_bytes: int
    redis_url: str

    @classmethod
    def from_settings(cls) -> ProxyConfig:
        return cls(
            connect_timeout=settings.INGATE_UPSTREAM_CONNECT_TIMEOUT,
            read_timeout=settings.INGATE_UPSTREAM_READ_TIMEOUT,
            max_request_bytes=settings.INGATE_MAX_REQUEST_BYTES,
            redis_url=settings.REDIS_URL,
        )


class ClientGone(Exception):
    """The client disconnected before the gateway finished reading its request."""


class _Exchange:
    """Per-request state shared with the disconnect watcher."""

    __slots__ = ("client_gone", "task", "responded")

    def __init__(self, task: asyncio.Task | None):
        self.client_gone = False
        self.task = task
        self.responded = False  # response headers went out: errors can no longer change the status


class ProxyApp:
    """Mount as the outermost ASGI app: `ProxyApp(fallback=django_and_channels)`."""

    current: ProxyApp | None = None  # the one this process serves with, for Ingate's own calls (see gateway())

    def __init__(self, fallback=None):
        ProxyApp.current = self
        self.fallback = fallback
        self.db = DatabaseThreads()
        self._session: aiohttp.ClientSession | None = None
        self._listener: asyncio.Task | None = None
        self._configure()
        invalidation.add_listener(self._on_invalidate)
        setting_changed.connect(self._on_setting_changed, weak=True)

    def _configure(self) -> None:
        self.config = ProxyConfig.from_settings()
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.config.connect_timeout, sock_read=self.config.read_timeout
        )
        self.keys = KeyCache(
            self.db,
            ttl=settings.INGATE_KEY_CACHE_TTL,
            miss_ttl=settings.INGATE_KEY_CACHE_MISS_TTL,
            touch_interval=settings.INGATE_KEY_LAST_USED_INTERVAL,
        )
        environment = environment_upstreams(settings.INGATE_PROVIDER_ENV, settings.INGATE_AZURE_API_VERSION)
        self.credentials = CredentialCache(self.db, environment, ttl=settings.INGATE_KEY_CACHE_TTL)
        self.prompts = PromptCache(self.db, ttl=settings.INGATE_KEY_CACHE_TTL)
        previous = getattr(self, "sink", None)
        self.sink = import_string(settings.INGATE_RECORD_SINK)()
        if previous is not None and hasattr(previous, "close"):
            previous.close()

    def _on_setting_changed(self, setting: str, **kwargs) -> None:
        # Tests change settings between requests; a running gateway never does.
        if setting.startswith("INGATE_") or setting in ("SECRET_KEY", "SECRET_KEY_FALLBACKS", "REDIS_URL"):
            self._configure()

    def _on_invalidate(self, kind: str, value: str) -> None:
        if kind == "key":
            self.keys.invalidate(prefix=value)
        elif kind == "credentials":
            self.credentials.invalidate(int(value))
        elif kind == "prompts":
            self.prompts.invalidate()
        elif kind == "org":
            self.keys.invalidate(org_id=int(value))
            self.credentials.invalidate(int(value))
        else:
            self.keys.invalidate()
            self.credentials.invalidate()
            self.prompts.invalidate()

    # --- lifecycle: one upstream client per process, created in the serving loop --------------------

    def _start(self) -> None:
        # Everything loaded by now (Django, apps, modules) lives as long as the process: keep it out of the
        # cyclic collector's full passes, which otherwise stall requests for tens of ms (p99 72 -> 16 ms).
        gc.freeze()
        # Background threads (the record writer, database lookups) hold the GIL for up to the switch interval
        # before the event loop gets it back; 5 ms by default, which shows up in the proxy's p99.
        sys.setswitchinterval(0.0005)
        # Idle upstream connections close after aiohttp's default 15 s, under the idle timeout of the load
        # balancers in front of providers, so a pooled connection is rarely found closed when reused.
        self._session = self.new_session()
        if self.config.redis_url and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                invalidation.listen(self.config.redis_url, self._on_invalidate)
            )

    @staticmethod
    def new_session() -> aiohttp.ClientSession:
        """An upstream client bound to the running event loop."""
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            auto_decompress=False,  # relay compressed bytes untouched; usage.py decompresses on the side
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry one tenant's cookies into another's request
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            trust_env=False,
        )

    def serves(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether this app's own upstream client belongs to `loop` (the server's)."""
        return self._session is not None and not self._session.closed and self._session._loop is loop

    async def _stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                if hasattr(self.sink, "close"):  # flush the records still in memory
                    await asyncio.get_running_loop().run_in_executor(None, self.sink.close)
                self.db.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- ASGI ------------------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            incoming = Incoming.scan(scope["headers"])
            route = detect(scope["path"], incoming.provider_header(), incoming.anthropic_version)
            if route is not None:
                await self.handle(route, incoming, scope, receive, send)  # ASGI apps return None
                return
            if scope["method"] == "HEAD" and scope["path"] == "/":
                # Claude Code warms its connection up with HEAD /: answer at once, no auth, no log line.
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
        elif scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if self.fallback is None:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.fallback(scope, receive, send)

    async def handle(self, route: Route, incoming: Incoming, scope, receive, send, *, principal=None,
                     session: aiohttp.ClientSession | None = None, prompt_version_id: int | None = None) -> ProxyRecord:
        """Relay one provider request; returns its record. The keywords are for Ingate's own calls
        (proxy/internal.py): an org already checked instead of a gateway key, a client session for an event
        loop other than the server's, and the prompt version the caller rendered itself."""
        started = time.perf_counter()
        record = ProxyRecord(
            request_id=new_request_id(),
            provider=route.provider,
            endpoint=route.endpoint,
            method=scope["method"],
            path=scope["path"],
            model=route.model,
            started_at=time.time(),
            prompt_version_id=prompt_version_id,
        )
        spec = REGISTRY.get(route.provider)
        shape = spec.errors if spec is not None else "openai"
        exchange = _Exchange(asyncio.current_task())
        watcher = None
        try:
            # Before anything else: a path that could step outside the upstream's base never gets a credential.
            paths.vet(scope.get("raw_path"), route)
            if session is None and self._session is None:
                self._start()  # servers without lifespan (daphne)
            query, query_key = split_query(scope["query_string"])
            if principal is None:
                plaintext, own_key = incoming.gateway_key(query_key)
                if plaintext is None:
                    raise ProxyError(
                        401,
                        "missing_gateway_key",
                        "No Ingate gateway key: send it as your API key (Authorization: Bearer, x-api-key, api-key "
                        "or x-goog-api-key) or in the X-Ingate-Key header.",
                    )
                key = await self.keys.resolve(plaintext)
            else:
                key, own_key = principal, False
            record.org_id, record.app_id, record.team_id, record.key_id = key.org_id, key.app_id, key.team_id, key.id
            org = await self.credentials.org(key.org_id)
            upstream = self.credentials.upstream(org, key.org_slug, route)
            shape = upstream.spec.errors
            record.passthrough = own_key
            if not upstream.base_url or not (own_key or upstream.has_credential):
                raise missing_credential(upstream, key.org_slug)

            body = await self._read_body(receive, incoming.content_length)
            record.request_bytes = len(body)
            parsed = None
            prompt_ref = incoming.ingate.get(b"x-ingate-prompt")
            if prompt_ref:
                body, parsed = await self._with_prompt(prompt_ref, body, incoming, key.org_id, upstream.spec.errors, record)
            body, hide_usage = self._inspect_body(
                body, incoming, route, record, upstream.spec.stream_usage_option, parsed
            )
            watcher = asyncio.get_running_loop().create_task(self._watch_disconnect(receive, exchange))

            headers = incoming.upstream_headers(upstream.auth_headers, own_key, identity=hide_usage)
            url = URL(upstream.url(route.path, query), encoded=True)
            record.request_headers = self._attribution(incoming)
            if org.body_capture:
                record.request_body = body[: org.body_capture]
                record.bodies_truncated = len(body) > org.body_capture
            await self._relay(
                session or self._session, url, headers, body, scope, send, record, exchange, started, upstream.name,
                hide_usage, org.body_capture,
            )
        except ProxyError as exc:
            record.status, record.error_type, record.error = exc.status, exc.code, exc.message
            record.outcome = _OUTCOMES.get(exc.code, "gateway_error")
            await self._send_error(send, shape, exc, record, started)
        except ClientGone:
            record.outcome = "client_disconnect"
        except asyncio.CancelledError:
            if not exchange.client_gone:
                raise  # the server is shutting down
            asyncio.current_task().uncancel()
            record.outcome = "client_disconnect"
        except Exception as exc:  # noqa: BLE001  (an answer in the provider's shape beats a bare 500)
            log.exception("Proxy failed on %s %s", scope["method"], scope["path"])
            error = ProxyError(503, "gateway_unavailable", f"Ingate could not handle this request: {type(exc).__name__}.")
            record.outcome, record.error = "gateway_error", error.message
            if not exchange.responded:
                record.status = 503
                await self._send_error(send, shape, error, record, started)
        finally:
            if watcher is not None:
                watcher.cancel()
            record.total_ms = (time.perf_counter() - started) * 1000
            self.sink.submit(record)
        return record

    async def _read_body(self, receive, declared: int | None) -> bytes:
        limit = self.config.max_request_bytes
        if declared is not None and declared > limit:
            raise _too_large(limit)
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _with_prompt(self, ref: bytes, body: bytes, incoming: Incoming, org_id: int, shape: str,
                           record: ProxyRecord) -> tuple[bytes, dict]:
        """The body with the registry's prompt version rendered in (see proxy/prompts.py), and as parsed."""
        version = await self.prompts.version(org_id, ref.decode("latin-1"))
        try:
            parsed = orjson.loads(body) if body else {}
        except ValueError as exc:
            raise ProxyError(400, "invalid_json", f"The request body is not valid JSON: {exc}.") from None
        if not isinstance(parsed, dict):
            raise ProxyError(400, "invalid_json", "The request body must be a JSON object to use a prompt.")
        record.prompt_version_id = version.id
        merged = prompts.apply(version, parsed, incoming.ingate.get(b"x-ingate-prompt-variables"), shape)
        if "json" not in incoming.content_type:
            incoming.content_type = "application/json"
            incoming.forward.append(("content-type", "application/json"))
        return orjson.dumps(merged), merged

    @staticmethod
    def _inspect_body(
        body: bytes, incoming: Incoming, route: Route, record: ProxyRecord, can_ask_usage: bool,
        parsed: dict | None = None,
    ) -> tuple[bytes, bool]:
        """Read the model and stream flag for the record. The body goes on byte for byte, with one exception:
        an OpenAI-style chat stream without `stream_options.include_usage` gets it added (usage is otherwise
        never reported), and True comes back so the relay hides the extra chunk from the client."""
        if route.endpoint.endswith("streamGenerateContent"):
            record.stream = True
        if parsed is None:  # not already read for a prompt
            if not body or ("json" not in incoming.content_type and not (not incoming.content_type and body[:1] == b"{")):
                return body, False
            try:
                parsed = orjson.loads(body)  # ~4x faster than json on the 100+ KB bodies coding agents send
            except ValueError as exc:
                raise ProxyError(400, "invalid_json", f"The request body is not valid JSON: {exc}.") from None
        if not isinstance(parsed, dict):
            return body, False
        model = parsed.get("model")
        if isinstance(model, str) and model:
            record.model = model
        stream = parsed.get("stream")
        if route.provider == "ollama" and route.endpoint in ("chat", "generate"):
            stream = stream is not False  # Ollama streams unless told not to
        record.stream = record.stream or stream is True
        record.body = parsed
        if not (can_ask_usage and stream is True and route.endpoint == "chat.completions"):
            return body, False
        options = parsed.get("stream_options")
        if options is None:
            # Prepending a key leaves every message byte where it was.
            return b'{"stream_options":{"include_usage":true},' + body.lstrip()[1:], True
        if isinstance(options, dict) and not options.get("include_usage"):
            return orjson.dumps({**parsed, "stream_options": {**options, "include_usage": True}}), True
        return body, False

    @staticmethod
    def _attribution(incoming: Incoming) -> dict[str, str]:
        found = {name.decode(): value.decode("latin-1") for name, value in incoming.ingate.items() if name != b"x-ingate-key"}
        found.update(incoming.attribution)  # gathered in the same pass over the headers as everything else
        return found

    @staticmethod
    async def _watch_disconnect(receive, exchange: _Exchange) -> None:
        # After the body, the only message left is the disconnect (sent early if the client goes away).
        message = await receive()
        if message["type"] == "http.disconnect" and exchange.task is not None:
            exchange.client_gone = True
            exchange.task.cancel()
            exchange.task = None

    async def _relay(
        self, client: aiohttp.ClientSession, url, headers, body, scope, send, record: ProxyRecord, exchange: _Exchange,
        started: float, name: str, hide_usage: bool, keep: int,
    ):
        sent_at = time.perf_counter()
        record.overhead_ms = (sent_at - started) * 1000
        try:
            response = await client.request(
                scope["method"],
                url,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=self.timeout,
            )
        except TimeoutError:
            raise ProxyError(504, "upstream_timeout", f"The upstream {name} ({url.origin()}) did not answer within {self.config.read_timeout:g}s.") from None
        except aiohttp.ClientError as exc:
            raise ProxyError(502, "upstream_unreachable", f"Ingate could not reach the upstream {name} ({url.origin()}): {exc}.") from None
        record.upstream_ms = (time.perf_counter() - sent_at) * 1000
        record.status = response.status
        if response.status >= 400:
            record.outcome = "upstream_error"
        finished = False
        try:
            tap = UsageTap(response.headers.get("content-type", ""), response.headers.get("content-encoding", ""), keep)
            record.stream = record.stream or tap.streamed
            out = [
                (b"x-ingate-request-id", record.request_id.encode()),
                (b"x-ingate-overhead-ms", f"{record.overhead_ms:.2f}".encode()),
            ]
            length_known = response.content_length is not None and not tap.streamed
            for header, value in response.raw_headers:
                lowered = header.lower()
                if lowered in _RESPONSE_HOP_BY_HOP or (lowered == b"content-length" and not length_known):
                    continue
                out.append((lowered, value))
            if length_known:
                data = await self._read_all(response, name, url)
                exchange.responded = True
                await send({"type": "http.response.start", "status": response.status, "headers": out})
                record.ttfb_ms = (time.perf_counter() - started) * 1000
                await send({"type": "http.response.body", "body": data})
                record.response_bytes = len(data)
                tap.feed(data)
                if response.status >= 400:
                    record.error_type, record.error = provider_error(data, response.headers.get("content-encoding", ""))
            else:
                exchange.responded = True
                await send({"type": "http.response.start", "status": response.status, "headers": out})
                edit = HiddenUsage() if hide_usage and tap.streamed else None
                if not await self._stream(response, send, tap, record, started, name, edit):
                    return  # the upstream broke off: leave the client's connection cut too, as a direct call would
                await send({"type": "http.response.body", "body": b""})
            finished = True
            tap.finish()
            if response.status < 400 and record.outcome == "ok":
                # A clean end without the format's end marker is a stream broken off all the same.
                outcome, why = tap.unfinished()
                if outcome:
                    record.outcome, record.error = outcome, why if outcome == "upstream_error" else f"The upstream {name} {why}."
            record.usage = tap.usage
            record.response_model = tap.model
            if keep:
                record.response_body = bytes(tap.kept)
                record.bodies_truncated = record.bodies_truncated or tap.truncated
        finally:
            # A fully read response returns its connection to the pool; anything else closes it, which is
            # also what tells the upstream to stop generating when the client went away.
            if finished:
                response.release()
            else:
                response.close()

    async def _read_all(self, response, name: str, url) -> bytes:
        try:
            return await response.read()
        except TimeoutError:
            raise ProxyError(504, "upstream_timeout", f"The upstream {name} ({url.origin()}) stopped answering mid-response.") from None
        except aiohttp.ClientError as exc:
            raise ProxyError(502, "upstream_unreachable", f"The upstream {name} ({url.origin()}) broke off its answer: {exc}.") from None

    async def _stream(
        self, response, send, tap: UsageTap, record: ProxyRecord, started: float, name: str, edit: HiddenUsage | None
    ) -> bool:
        """Relay chunks as they arrive. False when the upstream broke off (timeout or cut connection)."""
        try:
            async for chunk in response.content.iter_any():
                tap.feed(chunk)
                if edit is not None:
                    chunk = edit.feed(chunk)
                    if not chunk:
                        continue
                if record.ttfb_ms is None:
                    record.ttfb_ms = (time.perf_counter() - started) * 1000
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                record.response_bytes += len(chunk)
            if edit is not None and (rest := edit.flush()):
                await send({"type": "http.response.body", "body": rest, "more_body": True})
        except (TimeoutError, aiohttp.ClientError) as exc:
            record.outcome = "upstream_timeout" if isinstance(exc, TimeoutError) else "upstream_cut"
            record.error = f"The upstream {name} broke off the stream: {type(exc).__name__} {exc}".strip()
            log.warning("%s (request %s)", record.error, record.request_id)
            tap.finish()
            record.usage = tap.usage
            record.response_body = bytes(tap.kept)  # what arrived before the break, when bodies are kept
            return False
        return True

    async def _send_error(self, send, shape: str, error: ProxyError, record: ProxyRecord, started: float) -> None:
        body = error_body(shape, error.status, error.code, error.message)
        headers = error_headers(shape, error.status)
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"x-ingate-request-id", record.request_id.encode()))
        headers.append((b"x-ingate-overhead-ms", f"{(time.perf_counter() - started) * 1000:.2f}".encode()))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def gateway() -> ProxyApp:
    """The process's proxy: the server's where there is one, else (Celery workers, management commands) one
    made on first use, sharing its caches and record sink across the process's calls."""
    if ProxyApp.current is None:
        ProxyApp()
    return ProxyApp.current


def _too_large(limit: int) -> ProxyError:
    return ProxyError(413, "request_too_large", f"The request body is larger than this gateway accepts ({limit} bytes; INGATE_MAX_REQUEST_BYTES).")
