"""The HTTP/1.1 server side of one connection (httptools parser on an asyncio protocol): keep-alive,
pipelining, chunked and gzip streams, delays, hangs, cuts, and disconnect reporting."""

from __future__ import annotations

import asyncio
import collections
import json
import zlib
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote

import httptools

from .errors import _error
from .options import _DEFAULT_OPTIONS, _SWITCHES, Options, _parse, last_user_text
from .records import Disconnect, RecordedRequest
from .replies import Reply, StreamReply, _Call, _new_id
from .routes import _RAW_BODY, _REQUEST_ID_HEADER, _route

if TYPE_CHECKING:
    from .server import FakeProvider


_status_lines: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _status_lines.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = {529: "Overloaded"}.get(status, "Unknown")
        line = _status_lines[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


def _model_of(request) -> str:
    """The model a request names (body or Gemini path), for per-model switches."""
    try:
        data = json.loads(request.body) if request.body else {}
    except ValueError:
        data = {}
    model = data.get("model") if isinstance(data, dict) else None
    if not model and "/models/" in request.path:
        model = request.path.split("/models/", 1)[1].split(":", 1)[0]
    return model if isinstance(model, str) else ""


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    return _status_line(status) + "".join(f"{k}: {v}\r\n" for k, v in headers).encode("latin-1") + b"\r\n"


def _replayed(body: bytes, content_type: str) -> Reply | StreamReply:
    if "event-stream" in content_type or "ndjson" in content_type:
        separator = b"\n\n" if "event-stream" in content_type else b"\n"
        events = [event + separator for event in body.strip().split(separator) if event.strip()]
        return StreamReply(content_type, [], events, [])
    return Reply(body, content_type)


class _Active:
    """The response a connection is working on, for disconnect reporting."""

    __slots__ = ("path", "stream", "chunks_sent", "finished")

    def __init__(self, path: str, stream: bool):
        self.path = path
        self.stream = stream
        self.chunks_sent = 0
        self.finished = False


class _ChunkedWriter:
    """Chunked transfer-encoding, gzip optional. Pieces are buffered until flush(), so an unpaced
    stream costs one send() while a paced one (chunk delay) still reaches the client piece by piece."""

    def __init__(self, transport: asyncio.Transport, head: bytes, gzip: bool):
        self.transport = transport
        self.buffer = [head]
        # A Z_SYNC_FLUSH per piece keeps a gzip stream decodable piece by piece too.
        self.compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip else None

    def add(self, piece: bytes):
        if self.compressor is not None:
            piece = self.compressor.compress(piece) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        if piece:  # an empty chunk would end the body
            self.buffer.append(b"%x\r\n%s\r\n" % (len(piece), piece))

    def flush(self):
        if self.buffer:
            self.transport.write(b"".join(self.buffer))
            self.buffer.clear()

    def finish(self):
        if self.compressor is not None:
            tail = self.compressor.flush()
            self.buffer.append(b"%x\r\n%s\r\n" % (len(tail), tail))
        self.buffer.append(b"0\r\n\r\n")
        self.flush()


class _Connection(asyncio.Protocol):
    def __init__(self, provider: FakeProvider):
        self.provider = provider
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.switches: dict[str, str] = {}
        self.body: list[bytes] = []
        # Pipelined requests wait here so responses leave in request order.
        self.pending: collections.deque = collections.deque()
        self.task: asyncio.Task | None = None
        self.active: _Active | None = None
        self.writable: asyncio.Event | None = None
        self.broken = False

    # asyncio callbacks

    def connection_made(self, transport):
        self.transport = transport
        self.provider._connections.add(self)

    def data_received(self, data: bytes):
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"bad request: {exc}")

    def connection_lost(self, exc):
        self.provider._connections.discard(self)
        active = self.active
        if active is not None and not active.finished:
            active.finished = True
            self.provider._record_disconnect(Disconnect(active.path, active.chunks_sent, active.stream))
        if self.task is not None:
            self.task.cancel()
        self.pending.clear()
        if self.writable is not None:
            self.writable.set()

    def pause_writing(self):
        self.writable = self.writable or asyncio.Event()
        self.writable.clear()

    def resume_writing(self):
        if self.writable is not None:
            self.writable.set()

    # httptools callbacks

    def on_message_begin(self):
        self.url = b""
        self.headers = {}
        self.switches = {}
        self.body = []

    def on_url(self, url: bytes):
        self.url += url

    def on_header(self, name: bytes, value: bytes):
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text
        if key.startswith("x-fake-"):
            self.switches[key] = self.headers[key]

    def on_headers_complete(self):
        if self.headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes):
        self.body.append(body)

    def on_message_complete(self):
        raw_path, _, query = self.url.decode("latin-1").partition("?")
        path = unquote(raw_path) if "%" in raw_path else raw_path
        method = self.parser.get_method().decode()
        request = RecordedRequest(method, path, query, self.headers, b"".join(self.body))
        if self.provider.record:
            self.provider._record_request(request)
        keep_alive = self.parser.should_keep_alive()
        if self.task is None and not self.pending:
            self._dispatch(request, self.switches, keep_alive)
        else:
            self.pending.append((request, self.switches, keep_alive))

    # responding

    def _dispatch(self, request: RecordedRequest, switches: dict[str, str], keep_alive: bool):
        provider = self.provider
        flavor, handler, params = _route(request.method, request.path, request.headers)
        try:
            opts = provider._options(switches, _model_of(request) if provider.per_model else "")
        except ValueError as exc:
            self._send(_error(flavor, 400, f"fake provider: {exc}"), flavor, _DEFAULT_OPTIONS, keep_alive)
            return
        result: Reply | StreamReply
        if provider.replays:
            result = _replayed(*provider.replays.popleft())
        elif opts.status:
            result = _error(flavor, opts.status, f"fake provider error {opts.status} (x-fake-status)")
            if opts.retry_after is not None:
                result.headers.append(("retry-after", opts.retry_after))
        elif handler is None:
            result = _error(flavor, 404, f"Invalid URL ({request.method} {request.path})")
        else:
            call = _Call(
                provider, request.method, request.path, request.query, request.headers, request.body, opts, params
            )
            try:
                if request.body and handler not in _RAW_BODY:
                    call.data, call._prompt = _parse(request.body)
                    if provider.answers is not None and "x-fake-text" not in switches:
                        self._scripted(call)
                result = handler(call)
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                result = _error(flavor, 400, f"fake provider could not handle the request: {exc!r}")
        if isinstance(result, Reply) and not opts.delay_ms and not opts.hang:
            self._send(result, flavor, opts, keep_alive)  # the benchmark's hot path: no task, no await
            return
        self.active = _Active(request.path, isinstance(result, StreamReply))
        self.task = asyncio.ensure_future(self._respond_later(result, flavor, opts, keep_alive))

    def _scripted(self, call: _Call) -> None:
        data = call.data if isinstance(call.data, dict) else {}
        model = data.get("model") or call.params.get("model") or ""
        text = self.provider.answers(model, last_user_text(data))
        if text is not None:
            opts = Options()
            for name in _SWITCHES:
                setattr(opts, name, getattr(call.opts, name))
            opts.text = text
            call.opts = opts

    async def _respond_later(self, result, flavor: str, opts: Options, keep_alive: bool):
        try:
            if opts.hang:
                await asyncio.get_running_loop().create_future()  # never resolves; only a disconnect ends it
            if opts.delay_ms:
                await asyncio.sleep(opts.delay_ms / 1000)
            if isinstance(result, StreamReply):
                await self._stream(result, flavor, opts, keep_alive)
            else:
                self.active.finished = True
                self._send(result, flavor, opts, keep_alive)
        except asyncio.CancelledError:
            return
        except Exception:  # a bug here must not leave the client waiting forever
            self.transport.close()
            raise
        finally:
            self.task = None
            self.active = None
        while self.pending and self.task is None and not self.transport.is_closing():
            request, switches, keep_alive = self.pending.popleft()
            if isinstance(request, str):
                self._fail(400, request)
            else:
                self._dispatch(request, switches, keep_alive)

    def _base_headers(self, flavor: str, result, opts: Options, keep_alive: bool) -> list[tuple[str, str]]:
        headers = [("content-type", result.content_type)]
        id_header = _REQUEST_ID_HEADER.get(flavor)
        if id_header:
            headers.append((id_header, _new_id("req_")))
        if opts.gzip:
            headers.append(("content-encoding", "gzip"))
        if not keep_alive:
            headers.append(("connection", "close"))
        headers.extend(result.headers)
        return headers

    def _send(self, reply: Reply, flavor: str, opts: Options, keep_alive: bool):
        body = reply.body
        if opts.gzip:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
            body = compressor.compress(body) + compressor.flush()
        headers = self._base_headers(flavor, reply, opts, keep_alive)
        headers.append(("content-length", str(len(body))))
        self.transport.write(_head(reply.status, headers) + body)
        if not keep_alive:
            self.transport.close()

    async def _stream(self, stream: StreamReply, flavor: str, opts: Options, keep_alive: bool):
        transport, active = self.transport, self.active
        headers = self._base_headers(flavor, stream, opts, keep_alive)
        headers += [("cache-control", "no-cache"), ("transfer-encoding", "chunked")]
        out = _ChunkedWriter(transport, _head(200, headers), opts.gzip)
        if opts.first_chunk_delay_ms:
            out.flush()  # the head alone
            await asyncio.sleep(opts.first_chunk_delay_ms / 1000)
            if transport.is_closing():
                return
        for piece in stream.head:
            out.add(piece)
        delay = opts.chunk_delay_ms / 1000
        chunks = stream.chunks if opts.cut_after is None else stream.chunks[: opts.cut_after]
        for index, piece in enumerate(chunks):
            if index and delay:
                out.flush()
                await asyncio.sleep(delay)
            if transport.is_closing():
                return
            out.add(piece)
            active.chunks_sent += 1
            if self.writable is not None and not self.writable.is_set():
                out.flush()
                await self.writable.wait()
        if opts.cut_after is not None and opts.clean_cut:
            # A provider (or a proxy in front of it) that ends the body cleanly mid-stream: no closing events.
            out.finish()
            active.finished = True
            if not keep_alive:
                transport.close()
            return
        if opts.cut_after is not None:
            # A provider that dies mid-stream: no remaining events, no terminating zero-length chunk.
            out.flush()
            active.finished = True
            transport.close()
            return
        if delay:
            out.flush()
            await asyncio.sleep(delay)
        for piece in stream.tail:
            out.add(piece)
        out.finish()
        active.finished = True
        if not keep_alive:
            transport.close()

    def _fail(self, status: int, message: str):
        self.broken = True
        if self.task is not None:
            self.pending.append((message, None, False))  # after the responses already owed, in order
        elif not self.transport.is_closing():
            self._send(_error("openai", status, message), "openai", _DEFAULT_OPTIONS, keep_alive=False)
