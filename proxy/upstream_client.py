"""The gateway's upstream HTTP/1.1 client: pooled keep-alive connections, responses parsed by httptools
(llhttp, as uvicorn parses requests), body bytes handed over as they arrive, untouched (no decompression).

Why not aiohttp, which this replaced: its client path was the largest single cost of a relayed request
(bench/RESULTS.md, performance issue: 17% of the gateway's CPU, ~4x this client's). The relay needs little of
it: one request at a time per connection, no cookies, no redirects, no proxies, no decompression.

What keeps one tenant's answer out of another's request: a connection goes back to the pool only after its
response was read to the end of its framing (Content-Length or the last chunk), when the server allows keep-alive
and nothing else arrived; every other ending (an error, a timeout, a cancelled caller, a HEAD answer, a body
read until close) closes it. Bytes arriving on an idle connection close it too.

Timeouts: `connect` bounds opening a connection (DNS, TCP, TLS); `read` bounds each wait for the next bytes
(the answer's head included), as aiohttp's `sock_read` did."""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
from urllib.parse import quote, urlsplit

import httptools

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
# Requests with these methods carry a Content-Length even when empty (servers may refuse one without: 411).
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_IDLE_SECONDS = 15.0  # under the idle timeouts of the load balancers in front of providers (aiohttp's default)
_MAX_IDLE_PER_ORIGIN = 256
_HIGH_WATER = 1 << 20  # pause reading the upstream while this much body waits for a slow client
_NOT_SAFE_IN_TARGET = re.compile(rb"[^\x21-\x7e]")
_SAFE_IN_TARGET = "/?&=%:@;+,!$'()*~[]"


class UpstreamError(Exception):
    """The upstream could not be reached or broke off its answer."""


class ConnectError(UpstreamError):
    """No connection could be opened (name resolution, refused, TLS handshake)."""


class Disconnected(UpstreamError):
    """The connection ended before the answer did, or the answer was not valid HTTP/1.1."""


class UpstreamTimeout(UpstreamError, TimeoutError):
    """No connection within the connect timeout, or no bytes within the read timeout."""


class Origin:
    """Where requests go: scheme, host and port, the Host header and the TLS context."""

    __slots__ = ("key", "host", "port", "ssl", "host_header", "label")

    def __init__(self, scheme: str, host: str, port: int | None, ssl_context: ssl.SSLContext | None):
        tls = scheme == "https"
        default = 443 if tls else 80
        self.host = host
        self.port = port or default
        self.ssl = ssl_context if tls else None
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if self.port == default else f"{shown}:{self.port}"
        self.key = (scheme, host, self.port)
        self.label = f"{scheme}://{self.host_header}"


class Response:
    """One answer: status and headers once its head arrived, then the body as it arrives."""

    __slots__ = (
        "status",
        "raw_headers",
        "content_length",
        "content_type",
        "content_encoding",
        "_chunked",
        "_conn",
        "_chunks",
        "_pending",
        "_waiter",
        "_done",
        "_error",
        "_released",
    )

    def __init__(self, conn: Connection):
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []  # names lowercased, in the order received
        self.content_length: int | None = None
        self.content_type = ""
        self.content_encoding = ""
        self._chunked = False
        self._conn = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._pending = 0
        self._waiter: asyncio.Future | None = None
        self._done = False  # the body ended, by its framing or (unframed) by the connection's close
        self._error: BaseException | None = None
        self._released = False

    # --- fed by the connection ---------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._pending += len(data)
        if self._pending > _HIGH_WATER:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if not self._done:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- read by the relay --------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """The whole body arrived."""
        return self._done and not self._chunks

    async def chunk(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some), b"" at the end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._waiter = self._conn.loop.create_future()
            await self._waiter
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join([chunks.popleft() for _ in range(len(chunks))])
        self._pending = 0
        self._conn.resume()
        return data

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        data = await self.chunk()
        if not data:
            raise StopAsyncIteration
        return data

    def push_back(self, data: bytes) -> None:
        """Put bytes taken with `chunk` back in front (the routing stage looks at a stream's first bytes)."""
        if data:
            self._chunks.appendleft(data)

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while data := await self.chunk():
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with this answer: its connection goes back to the pool if the answer was read to its end and the
        connection may carry another; otherwise it is closed."""
        if not self._released:
            self._released = True
            self._conn.finished(self, reuse=self.finished and self._error is None)

    def close(self) -> None:
        """Done with this answer before its end (an error, a client gone): close the connection, which also tells
        the upstream to stop generating."""
        if not self._released:
            self._released = True
            self._conn.finished(self, reuse=False)


class Connection(asyncio.Protocol):
    """One keep-alive connection to an origin, carrying one request at a time."""

    def __init__(self, client: UpstreamClient, origin: Origin):
        self.client = client
        self.origin = origin
        self.loop = client.loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.closed = False
        self.used = False  # carried a request before (a pooled connection the server may have just closed)
        self.idle_since = 0.0
        self._head: asyncio.Future | None = None
        self._head_only = False
        self._keep_alive = False
        self._informational = False
        self._paused = False
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # nothing was asked: a server talking out of turn is not trusted again
            self.transport.close()
            return
        self._last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._broken(Disconnected(f"the upstream's answer is not valid HTTP/1.1 ({exc})"))
        except httptools.HttpParserUpgrade:
            self._broken(Disconnected("the upstream switched protocols"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._stop_timer()
        self.client._forget(self)
        response = self.response
        if response is None:
            return
        if self._head is not None:
            why = f": {exc}" if exc else ""
            self._fail_head(Disconnected(f"the connection closed before an answer{why}"))
        elif not response._done:
            if response.content_length is None and not response._chunked and exc is None:
                response._finish()  # a body delimited by the close (no Content-Length, not chunked) ended cleanly
            else:
                response._fail(Disconnected("the connection closed mid-answer"))

    def pause_writing(self) -> None:  # request bodies are written whole; the transport buffers them
        pass

    def resume_writing(self) -> None:
        pass

    # --- httptools callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.response._done:  # a second answer to one request: never read into this (or the next) one
            raise Disconnected("the upstream sent more than one answer")
        self._informational = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._informational:
            return
        name = name.lower()
        response = self.response
        response.raw_headers.append((name, value))
        if name == b"content-length":
            response.content_length = int(value) if value.isdigit() else None
        elif name == b"content-type":
            response.content_type = value.decode("latin-1")
        elif name == b"content-encoding":
            response.content_encoding = value.decode("latin-1")
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            response._chunked = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the answer follows
            self._informational = True
            self.response.raw_headers.clear()
            return
        self.response.status = status
        self._keep_alive = self.parser.should_keep_alive()
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_result(None)
        if self._head_only:  # no body follows a HEAD answer; the parser cannot know that: not reused
            self._keep_alive = False
            self.response._finish()

    def on_body(self, body: bytes) -> None:
        if not self._head_only:
            self.response._feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._stop_timer()
        self.response._finish()

    # --- used by the client and the response ------------------------------------------------------

    def send(self, method: bytes, request: bytes, read_timeout: float) -> asyncio.Future:
        self.used = True
        self.response = Response(self)
        self._head_only = method == b"HEAD"
        self._head = self.loop.create_future()
        self._last_read = self.loop.time()
        self._read_timeout = read_timeout
        self._timer = self.loop.call_at(self._last_read + read_timeout, self._check_timeout)
        self.transport.write(request)
        return self._head

    def _check_timeout(self) -> None:
        self._timer = None
        if self.response is None or self.response._done or self._paused:
            return
        due = self._last_read + self._read_timeout
        if self.loop.time() >= due:
            self._broken(UpstreamTimeout(f"did not answer within {self._read_timeout:g}s"))
        else:
            self._timer = self.loop.call_at(due, self._check_timeout)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail_head(self, error: BaseException) -> None:
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(error)

    def _broken(self, error: BaseException) -> None:
        self._stop_timer()
        if self._head is not None:
            self._fail_head(error)
        elif self.response is not None:
            self.response._fail(error)
        self.close()

    def pause(self) -> None:
        if not self._paused and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and not self.closed:
            self._paused = False
            self._last_read = self.loop.time()
            self.transport.resume_reading()
            if self._timer is None and self.response is not None and not self.response._done:
                self._timer = self.loop.call_at(self._last_read + self._read_timeout, self._check_timeout)

    def finished(self, response: Response, reuse: bool) -> None:
        if response is not self.response:
            return
        self._stop_timer()
        self.response = None
        if reuse and self._keep_alive and not self.closed:
            self.idle_since = self.loop.time()
            self.client._park(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.client._forget(self)
            if self.transport is not None:
                self.transport.close()


class UpstreamClient:
    """Pooled connections per origin, bound to the event loop it was made in."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, ssl_context: ssl.SSLContext | None = None):
        self.loop = asyncio.get_running_loop()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.ssl = ssl_context or ssl.create_default_context()
        self._idle: dict[tuple, list[Connection]] = {}
        self._origins: dict[str, tuple[Origin, int]] = {}
        self._all: set[Connection] = set()
        self.closed = False

    # --- the pool -----------------------------------------------------------------------------------

    def _park(self, conn: Connection) -> None:
        idle = self._idle.setdefault(conn.origin.key, [])
        if len(idle) >= _MAX_IDLE_PER_ORIGIN or self.closed:
            conn.close()
            return
        idle.append(conn)  # LIFO: the warmest connection is taken first

    def _forget(self, conn: Connection) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.origin.key)
        if idle and conn in idle:
            idle.remove(conn)

    def _take(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin.key)
        if not idle:
            return None
        stale = self.loop.time() - _IDLE_SECONDS
        while idle and idle[0].idle_since < stale:  # oldest first: those past the idle limit
            idle.pop(0).close()
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin) -> Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self, origin),
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(f"did not accept a connection within {self.connect_timeout:g}s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from None
        self._all.add(conn)
        return conn

    # --- requests -----------------------------------------------------------------------------------

    def origin(self, url: str) -> tuple[Origin, str]:
        """(origin, request target) of an absolute http(s) URL whose path and query are already encoded."""
        start = url.find("://")
        cut = url.find("/", start + 3)
        if cut < 0:
            cut = url.find("?", start + 3)
        base, target = (url, "/") if cut < 0 else (url[:cut], url[cut:])
        if target[0] == "?":
            target = "/" + target
        known = self._origins.get(base)
        if known is None:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConnectError(f"not an http(s) address: {base!r}")
            try:
                port = parts.port
            except ValueError:
                raise ConnectError(f"not a valid port in {base!r}") from None
            known = (Origin(parts.scheme, parts.hostname, port, self.ssl), 0)
            if len(self._origins) < 10_000:
                self._origins[base] = known
        return known[0], target

    async def request(
        self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes | None = None
    ) -> Response:
        """Send one request and wait for the head of its answer; read the body from the Response, then release
        or close it."""
        origin, target = self.origin(url)
        verb = method.encode("ascii")
        request = _serialise(verb, target, origin.host_header, headers, body)
        retry = verb in IDEMPOTENT
        while True:
            conn = self._take(origin) or await self._connect(origin)
            reused = conn.used
            head = conn.send(verb, request, self.read_timeout)
            try:
                await head
            except Disconnected:
                # A pooled connection the server closed as we sent: once more on a new one, where that is safe.
                if retry and reused:
                    retry = False
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            return conn.response

    async def close(self) -> None:
        self.closed = True
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        await asyncio.sleep(0)


def _serialise(method: bytes, target: str, host: str, headers: list[tuple[bytes, bytes]], body: bytes | None) -> bytes:
    """The request's bytes. Raises ValueError for a header that would break the framing (a line break in it)."""
    raw_target = target.encode()
    if _NOT_SAFE_IN_TARGET.search(raw_target):  # a space or control character would split the request line
        raw_target = quote(raw_target, safe=_SAFE_IN_TARGET).encode()
    lines = [b"Host: " + host.encode("latin-1")]
    lines += map(b": ".join, headers)
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    elif method in _BODY_METHODS:
        lines.append(b"Content-Length: 0")
    text = b"\r\n".join(lines)
    breaks = len(lines) - 1
    if text.count(b"\n") != breaks or text.count(b"\r") != breaks:
        raise ValueError("a header name or value holds a line break")
    head = b"%s %s HTTP/1.1\r\n%s\r\n\r\n" % (method, raw_target, text)
    return head + body if body else head
