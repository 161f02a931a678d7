"""The proxy: an ASGI application in front of Django that relays provider requests.

Per request: detect the provider from the path, then pass one `Exchange` through the configured stages
(proxy/stages.py: the gateway key, the upstream and its credential, a registry prompt, usage options), forward
the body as received on one pooled upstream client (proxy/upstream_client.py), and relay status, headers and body chunks back as they
arrive, usage read on the side; whatever happened, hand the record to the sink. Everything else goes to Django."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
import sys
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from . import formats, invalidation, paths, stages
from .auth import KeyCache
from .codes import ErrorCode
from .credentials import CredentialCache, environment_upstreams
from .db import DatabaseThreads
from .errors import ProxyError, error_headers
from .exchange import ClientGone, Exchange
from .headers import Incoming, split_query
from .limits import limiter_for
from .providers import Route, detect
from .records import Outcome, ProxyRecord
from .response_cache.store import store_for
from .routing.attempts import Buffered, routing_attempts
from .routing.health import health_for
from .routing.stage import Leg
from .upstream_client import Response, UpstreamClient, UpstreamError, UpstreamTimeout
from .usage import UsageTap

log = logging.getLogger(__name__)

# Response headers that describe the upstream connection, not the message.
_RESPONSE_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"proxy-authenticate", b"trailer", b"upgrade"}
)


# Errors the gateway answers for the upstream, by code; everything else it refused itself.
_OUTCOMES = {
    ErrorCode.UPSTREAM_UNREACHABLE: Outcome.UPSTREAM_UNREACHABLE,
    ErrorCode.UPSTREAM_TIMEOUT: Outcome.UPSTREAM_TIMEOUT,
    ErrorCode.BUDGET_EXCEEDED: Outcome.LIMITED,
    ErrorCode.RATE_LIMITED: Outcome.LIMITED,
    ErrorCode.BUDGET_UNPRICED_MODEL: Outcome.LIMITED,
    ErrorCode.LIMITS_UNAVAILABLE: Outcome.LIMITED,
    ErrorCode.GUARDRAIL_BLOCKED: Outcome.BLOCKED,
}


def new_request_id() -> str:
    """A UUIDv7 (time-ordered, so record ids index well) as text. Ids need to be unique, not secret:
    `random` avoids a getrandom() system call per request."""
    ms = time.time_ns() // 1_000_000
    rand = random.getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"  # the canonical text directly: str(uuid.UUID(int=…)) costs a few µs more per request
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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


class ProxyApp:
    """Mount as the outermost ASGI app: `ProxyApp(fallback=django_and_channels)`."""

    current: ProxyApp | None = None  # the one this process serves with, for Ingate's own calls (see gateway())

    def __init__(self, fallback=None):
        ProxyApp.current = self
        self.fallback = fallback
        self.db = DatabaseThreads()
        self._client: UpstreamClient | None = None
        self._listener: asyncio.Task | None = None
        self._configure()
        invalidation.add_listener(self._on_invalidate)
        setting_changed.connect(self._on_setting_changed, weak=True)

    def _configure(self) -> None:
        self.config = ProxyConfig.from_settings()
        self.limiter = limiter_for(self.config.redis_url)
        self.cache_store = store_for(self.config.redis_url, memory_bytes=settings.INGATE_CACHE_MEMORY_BYTES)
        self.health = health_for(
            self.config.redis_url,
            threshold=settings.INGATE_ROUTE_HEALTH_THRESHOLD,
            window=settings.INGATE_ROUTE_HEALTH_WINDOW,
            cooldown=settings.INGATE_ROUTE_HEALTH_COOLDOWN,
        )
        if self._client is not None:
            self._client.connect_timeout = self.config.connect_timeout
            self._client.read_timeout = self.config.read_timeout
        self.keys = KeyCache(
            self.db,
            ttl=settings.INGATE_KEY_CACHE_TTL,
            miss_ttl=settings.INGATE_KEY_CACHE_MISS_TTL,
            touch_interval=settings.INGATE_KEY_LAST_USED_INTERVAL,
        )
        environment = environment_upstreams(settings.INGATE_PROVIDER_ENV, settings.INGATE_AZURE_API_VERSION)
        self.key_cache_ttl = settings.INGATE_KEY_CACHE_TTL
        previous = getattr(self, "sink", None)
        self.sink = import_string(settings.INGATE_RECORD_SINK)()
        if previous is not None and hasattr(previous, "close"):
            previous.close()
        # Circuit transitions go to the sink as side notes (webhooks), never to the database from the loop.
        self.health.announce = getattr(self.sink, "note", None)
        self.credentials = CredentialCache(
            self.db,
            environment,
            ttl=settings.INGATE_KEY_CACHE_TTL,
            body_capture=getattr(self.sink, "body_capture_bytes", lambda org_id: 0),
        )
        self.stages = stages.build(self)
        # Only the stages that have a response side are asked when an answer starts (or a request ends).
        self._responders = [stage for stage in self.stages if type(stage).response is not stages.Stage.response]
        self._finishers = [stage for stage in self.stages if type(stage).done is not stages.Stage.done]

    def _on_setting_changed(self, setting: str, **kwargs) -> None:
        # Tests change settings between requests; a running gateway never does.
        if setting.startswith("INGATE_") or setting in ("SECRET_KEY", "SECRET_KEY_FALLBACKS", "REDIS_URL"):
            self._configure()

    def _on_invalidate(self, kind: str, value: str) -> None:
        for stage in self.stages:
            stage.invalidate(kind, value)

    # --- lifecycle: one upstream client per process, created in the serving loop --------------------

    def _start(self) -> None:
        # Everything loaded by now (Django, apps, modules) lives as long as the process: keep it out of the
        # cyclic collector's full passes, which otherwise stall requests for tens of ms (p99 72 -> 16 ms).
        gc.freeze()
        # Background threads (the record writer, database lookups) hold the GIL for up to the switch interval
        # before the event loop gets it back; 5 ms by default, which shows up in the proxy's p99.
        sys.setswitchinterval(0.0005)
        self._client = self.new_client()
        self.health.start()
        if hasattr(self.sink, "start"):  # its periodic work (embedded: retention, alerts, webhooks) needs no traffic
            self.sink.start()
        if self.config.redis_url and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                invalidation.listen(self.config.redis_url, self._on_invalidate)
            )

    def new_client(self) -> UpstreamClient:
        """An upstream client bound to the running event loop. It relays compressed bytes untouched (usage.py
        decompresses on the side), keeps no cookies, follows no redirects and ignores proxy variables."""
        return UpstreamClient(connect_timeout=self.config.connect_timeout, read_timeout=self.config.read_timeout)

    def serves(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether this app's own upstream client belongs to `loop` (the server's)."""
        return self._client is not None and not self._client.closed and self._client.loop is loop

    async def _stop(self) -> None:
        await self.health.stop()
        await self.limiter.stop()
        if hasattr(self.cache_store, "aclose"):
            await self.cache_store.aclose()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._client is not None:
            await self._client.close()
            self._client = None

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

    async def handle(
        self,
        route: Route,
        incoming: Incoming,
        scope,
        receive,
        send,
        *,
        principal=None,
        client: UpstreamClient | None = None,
        prompt_version_id: int | None = None,
    ) -> ProxyRecord:
        """Relay one provider request; returns its record. The keywords are for Ingate's own calls
        (proxy/internal.py): an org already checked instead of a gateway key, an upstream client for an event
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
        query, query_key = split_query(scope["query_string"])
        ex = Exchange(
            route,
            incoming,
            scope,
            receive,
            send,
            record,
            started,
            formats.of_provider(route.provider, route.endpoint),
            query,
            query_key,
            max_body=self.config.max_request_bytes,
            principal=principal,
            client=client,
        )
        watcher = None
        try:
            # Before anything else: a path that could step outside the upstream's base never gets a credential.
            paths.vet(scope.get("raw_path"), route)
            if client is None and self._client is None:
                self._start()  # servers without lifespan (daphne)
            for stage in self.stages:
                await stage.request(ex)
                if ex.answer is not None:  # a stage answered itself (a cache hit): nothing goes upstream
                    await self._send_answer(ex)
                    return record
            body = await ex.body()
            watcher = asyncio.get_running_loop().create_task(self._watch_disconnect(ex))
            await self._relay(ex, body)
        except ProxyError as exc:
            record.status, record.error_type, record.error = exc.status, exc.code, exc.message
            record.outcome = _OUTCOMES.get(exc.code, Outcome.GATEWAY_ERROR)
            await self._send_error(ex, exc)
        except ClientGone:
            record.outcome = Outcome.CLIENT_DISCONNECT
        except asyncio.CancelledError:
            if not ex.client_gone:
                raise  # the server is shutting down
            asyncio.current_task().uncancel()
            record.outcome = Outcome.CLIENT_DISCONNECT
        except Exception as exc:  # an answer in the provider's shape beats a bare 500
            log.exception("Proxy failed on %s %s", scope["method"], scope["path"])
            error = ProxyError(
                503, ErrorCode.GATEWAY_UNAVAILABLE, f"Ingate could not handle this request: {type(exc).__name__}."
            )
            record.outcome, record.error = Outcome.GATEWAY_ERROR, error.message
            if not ex.responded:
                record.status = 503
                await self._send_error(ex, error)
        finally:
            if watcher is not None:
                watcher.cancel()
            record.total_ms = (time.perf_counter() - started) * 1000
            for stage in self._finishers:
                try:
                    stage.done(ex)
                except Exception:  # a stage's bookkeeping never costs the record
                    log.exception("Stage %s failed at the end of request %s", type(stage).__name__, record.request_id)
            self.sink.submit(record)
        return record

    @staticmethod
    def _attribution(incoming: Incoming) -> dict[str, str]:
        found = {
            name.decode(): value.decode("latin-1") for name, value in incoming.ingate.items() if name != b"x-ingate-key"
        }
        found.update(incoming.attribution)  # gathered in the same pass over the headers as everything else
        return found

    @staticmethod
    async def _watch_disconnect(ex: Exchange) -> None:
        # After the body, the only message left is the disconnect (sent early if the client goes away).
        message = await ex.receive()
        if message["type"] == "http.disconnect" and ex.task is not None:
            ex.client_gone = True
            ex.task.cancel()
            ex.task = None

    async def _relay(self, ex: Exchange, body: bytes) -> None:
        """Forward the request with the upstream's credential and relay the answer as it arrives; a routed request
        goes through its route's attempts first (proxy/routing)."""
        record, org = ex.record, ex.org
        record.request_headers = self._attribution(ex.incoming)
        keep = org.body_capture
        if keep:
            record.request_body = body[:keep]
            record.bodies_truncated = len(body) > keep
        if ex.routed is not None:
            response, leg = await self._route(ex)
            await self._answer(ex, response, leg.fmt, leg.upstream.name, leg.url, leg)
            return
        upstream = ex.upstream
        headers = ex.incoming.upstream_headers(
            upstream.auth_headers,
            ex.own_key,
            identity=ex.hide_usage or (ex.guard is not None and ex.guard.reads_answer),
        )
        url = upstream.url(ex.route.path, ex.query)
        sent_at = time.perf_counter()
        record.overhead_ms = (sent_at - ex.started) * 1000
        response = await self._open(ex, upstream.name, url, headers, body)
        record.upstream_ms = (time.perf_counter() - sent_at) * 1000
        await self._answer(ex, response, ex.fmt, upstream.name, url, None)

    async def _open(self, ex: Exchange, name: str, url: str, headers, body: bytes) -> Response:
        """Send the request upstream and wait for the head of its answer; ProxyError when none comes."""
        try:
            return await (ex.client or self._client).request(ex.scope["method"], url, headers, body or None)
        except UpstreamTimeout as exc:
            raise ProxyError(504, ErrorCode.UPSTREAM_TIMEOUT, f"The upstream {name} ({_origin(url)}) {exc}.") from None
        except (UpstreamError, ValueError) as exc:
            raise ProxyError(
                502,
                ErrorCode.UPSTREAM_UNREACHABLE,
                f"Ingate could not reach the upstream {name} ({_origin(url)}): {exc}.",
            ) from None

    async def _route(self, ex: Exchange) -> tuple[Response | Buffered, Leg]:
        """A routed request's attempts, until one answers in a way the route does not move on from (or none is
        left: then the last answer, or the last error, is the client's). Nothing reaches the client before."""
        return await routing_attempts(self, ex)

    async def _answer(self, ex: Exchange, response, fmt, name: str, url: str, leg: Leg | None) -> None:
        """Relay an upstream's answer: status, headers and body as they arrive (through the editors), usage read
        on the side in the upstream's format `fmt`; a routed answer goes back in the client's format."""
        record = ex.record
        keep = ex.org.body_capture
        record.status = response.status
        if response.status >= 400:
            record.outcome = Outcome.UPSTREAM_ERROR
        finished = False
        try:
            encoding = response.content_encoding
            tap = UsageTap(fmt, response.content_type, encoding, keep)
            ex.streamed = tap.streamed
            record.stream = record.stream or tap.streamed
            out = [
                (b"x-ingate-request-id", record.request_id.encode()),
                (b"x-ingate-overhead-ms", f"{record.overhead_ms:.2f}".encode()),
            ]
            length_known = response.content_length is not None and not tap.streamed
            translated = leg is not None and leg.translator is not None
            for header, value in response.raw_headers:  # names lowercased by the client
                if header in _RESPONSE_HOP_BY_HOP or (header == b"content-length" and (translated or not length_known)):
                    continue
                out.append((header, value))
            editors = []
            if leg is not None:
                out.extend(ex.routed.headers(leg))
                translate = leg.editor(response.status, tap.streamed)
                if translate is not None and not length_known:
                    editors.append(translate)
            editors += [e for e in (stage.response(ex, response.status, out) for stage in self._responders) if e]
            if length_known:
                data = raw = await self._read_all(response, name, url)
                if translated:
                    data = leg.translator.response(raw, response.status)
                    out.append((b"content-length", str(len(data)).encode()))
                for editor in editors:  # observers of a whole answer (the cache), or its guardrails (may rewrite it)
                    data = editor.feed(data) + editor.flush()
                if ex.refusal is not None:  # a guardrail withheld the answer: the client gets the refusal instead
                    tap.feed(raw)
                    tap.finish()
                    record.usage, record.response_model = tap.usage, tap.model
                    raise ex.refusal
                ex.responded = True
                await ex.send({"type": "http.response.start", "status": response.status, "headers": out})
                record.ttfb_ms = (time.perf_counter() - ex.started) * 1000
                await ex.send({"type": "http.response.body", "body": data})
                record.response_bytes = len(data)
                tap.feed(raw)
                if response.status >= 400:
                    record.error_type, record.error = fmt.read_error(raw, encoding)
            else:
                ex.responded = True
                await ex.send({"type": "http.response.start", "status": response.status, "headers": out})
                if not await self._stream(ex, response, tap, name, editors):
                    return  # the upstream broke off: leave the client's connection cut too, as a direct call would
                await ex.send({"type": "http.response.body", "body": b""})
            finished = True
            tap.finish()
            if response.status < 400 and record.outcome == Outcome.OK:
                # A clean end without the format's end marker is a stream broken off all the same.
                outcome, why = tap.unfinished()
                if outcome:
                    record.outcome, record.error = (
                        outcome,
                        why if outcome == Outcome.UPSTREAM_ERROR else f"The upstream {name} {why}.",
                    )
            record.usage = tap.usage
            record.response_model = tap.model
            if keep:
                record.response_body = bytes(tap.kept)
                record.bodies_truncated = record.bodies_truncated or tap.truncated
        finally:
            # A fully read response returns its connection to the pool; anything else closes it, which is
            # also what tells the upstream to stop generating when the client went away.
            if finished and ex.refusal is None:
                response.release()
            else:
                response.close()

    async def _read_all(self, response, name: str, url) -> bytes:
        try:
            return await response.read()
        except UpstreamTimeout:
            raise ProxyError(
                504, ErrorCode.UPSTREAM_TIMEOUT, f"The upstream {name} ({_origin(url)}) stopped answering mid-response."
            ) from None
        except UpstreamError as exc:
            raise ProxyError(
                502,
                ErrorCode.UPSTREAM_UNREACHABLE,
                f"The upstream {name} ({_origin(url)}) broke off its answer: {exc}.",
            ) from None

    async def _stream(self, ex: Exchange, response, tap: UsageTap, name: str, editors: list) -> bool:
        """Relay chunks as they arrive, through the stages' editors. False when the upstream broke off (timeout
        or cut connection)."""
        record, send = ex.record, ex.send
        try:
            async for chunk in response:
                out = chunk
                for editor in editors:
                    out = editor.feed(out)
                    if not out:
                        break
                if out:
                    if record.ttfb_ms is None:
                        record.ttfb_ms = (time.perf_counter() - ex.started) * 1000
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                    record.response_bytes += len(out)
                tap.feed(chunk)  # after the chunk went on: reading usage never delays the client
                if ex.refusal is not None:
                    break  # a guardrail ended the stream: stop the upstream generating (its connection is closed)
            rest = b""
            for editor in editors:
                rest = editor.feed(rest) + editor.flush() if rest else editor.flush()
            if rest:
                await send({"type": "http.response.body", "body": rest, "more_body": True})
        except UpstreamError as exc:
            record.outcome = Outcome.UPSTREAM_TIMEOUT if isinstance(exc, TimeoutError) else Outcome.UPSTREAM_CUT
            record.error = f"The upstream {name} broke off the stream: {type(exc).__name__} {exc}".strip()
            log.warning("%s (request %s)", record.error, record.request_id)
            tap.finish()
            record.usage = tap.usage
            record.response_body = bytes(tap.kept)  # what arrived before the break, when bodies are kept
            return False
        return True

    async def _send_answer(self, ex: Exchange) -> None:
        """Send the answer a stage made (a cache hit), through the response side of the other stages."""
        status, headers, body = ex.answer
        record = ex.record
        out = [
            (b"x-ingate-request-id", record.request_id.encode()),
            (b"x-ingate-overhead-ms", f"{(time.perf_counter() - ex.started) * 1000:.2f}".encode()),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ]
        for stage in self._responders:
            editor = stage.response(ex, status, out)  # the cache's capture, guardrails restoring or checking
            if editor is not None:
                body = editor.feed(body) + editor.flush()
        if ex.refusal is not None:
            raise ex.refusal
        record.status, record.response_bytes = status, len(body)
        ex.responded = True
        await ex.send({"type": "http.response.start", "status": status, "headers": out})
        record.ttfb_ms = (time.perf_counter() - ex.started) * 1000
        await ex.send({"type": "http.response.body", "body": body})

    async def _send_error(self, ex: Exchange, error: ProxyError) -> None:
        body = ex.fmt.error_body(error.status, error.code, error.message)
        headers = error_headers(error.status)
        headers.extend(error.headers)
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"x-ingate-request-id", ex.record.request_id.encode()))
        headers.append((b"x-ingate-overhead-ms", f"{(time.perf_counter() - ex.started) * 1000:.2f}".encode()))
        if error.retry_after:
            headers.append((b"retry-after", str(max(1, math.ceil(error.retry_after))).encode()))
        if ex.routed is not None:
            ex.routed.note_skipped()
            ex.record.attempts = ex.routed.attempts
            headers.append((b"x-ingate-route", ex.routed.name.encode("latin-1", "replace")))
            headers.append((b"x-ingate-attempts", str(ex.routed.tried).encode()))
        await ex.send({"type": "http.response.start", "status": error.status, "headers": headers})
        await ex.send({"type": "http.response.body", "body": body})


def _origin(url: str) -> str:
    """scheme://host[:port] of an upstream URL, for messages (never the path: it may hold a deployment name)."""
    cut = url.find("/", url.find("://") + 3)
    return url if cut < 0 else url[:cut]


def gateway() -> ProxyApp:
    """The process's proxy: the server's where there is one, else (Celery workers, management commands) one
    made on first use, sharing its caches and record sink across the process's calls."""
    if ProxyApp.current is None:
        ProxyApp()
    return ProxyApp.current
