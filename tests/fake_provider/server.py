"""FakeProvider, the public API: serves from a background thread (or the running loop), holds the
switch defaults and the records tests read."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from typing import Any

from .connection import _Connection
from .options import _DEFAULT_OPTIONS, Options, _header_text, _switch_name
from .records import Disconnect, RecordedRequest

try:
    import uvloop
except ImportError:  # uvloop is an optimisation only; plain asyncio works.
    uvloop = None


class FakeProvider:
    """A fake LLM provider on a real socket. `start()` serves from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, record: bool = True):
        self.host = host
        self.port = port
        self.record = record  # off for the benchmark: recording every request would grow without bound
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.disconnects: list[Disconnect] = []
        self._defaults: dict[str, Any] = {}
        # answers(model, last user text) -> the answer text, or None for the usual one: lets a test script
        # models that answer differently (an eval's "good" and "bad" model). x-fake-text still wins.
        self.answers: Callable[[str, str], str | None] | None = None
        # Switches per requested model, between the defaults and the headers: `fake.per_model["down"] =
        # {"status": 503}` makes one model fail while the others answer (routing tests).
        self.per_model: dict[str, dict[str, Any]] = {}
        # Recorded provider responses to send verbatim, one per request, in order (see replay()).
        self.replays: collections.deque[tuple[bytes, str]] = collections.deque()
        self._batches: dict[str, int] = {}
        self._connections: set[_Connection] = set()
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # switches

    @property
    def defaults(self) -> dict[str, Any]:
        """Switches applied to every request unless its headers override them, e.g.
        `fake.defaults["status"] = 429` or `fake.defaults["x-fake-chunks"] = 16`."""
        return self._defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]):
        self._defaults.clear()
        self._defaults.update(value)

    def _options(self, switches: dict[str, str], model: str = "") -> Options:
        """Options from the defaults, then the model's switches, overlaid with a request's x-fake-* headers."""
        by_model = self.per_model.get(model) if model else None
        if not switches and not self._defaults and not by_model:
            return _DEFAULT_OPTIONS
        defaults = self._defaults.copy()  # a snapshot: tests change defaults from another thread
        defaults.update(by_model or {})
        merged = {_switch_name(k): v for k, v in defaults.items()}
        merged.update((_switch_name(k), v) for k, v in switches.items())
        if "x-fake-text" in switches:
            merged["text"] = _header_text(switches["x-fake-text"])
        return Options(merged)

    # records

    def _record_request(self, request: RecordedRequest):
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def _record_disconnect(self, event: Disconnect):
        with self._cond:
            self.disconnects.append(event)
            self._cond.notify_all()

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= count, timeout)

    def wait_for_disconnects(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Disconnects are noticed asynchronously; wait for them instead of sleeping."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.disconnects) >= count, timeout)

    def replay(self, body: bytes | str, content_type: str = "application/json") -> None:
        """Answer the next request (whatever its route) with `body` exactly as given: a response captured from
        the real provider. An SSE or NDJSON body is sent event by event, as a stream."""
        self.replays.append((body.encode() if isinstance(body, str) else body, content_type))

    def reset(self):
        with self._cond:
            self.requests.clear()
            self.disconnects.clear()
            self._defaults.clear()
            self.answers = None
            self.per_model.clear()
            self.replays.clear()

    # serving

    async def open(self) -> asyncio.AbstractServer:
        """Bind and start accepting on the running loop; sets `.port` and `.url`."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: _Connection(self), self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"
        return self._server

    def start(self) -> FakeProvider:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run():
            loop = uvloop.new_event_loop() if uvloop else asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:  # noqa: BLE001  (handed to the starting thread, which raises it)
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(self._server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-provider", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self):
        if self._thread is None:
            return
        loop = self._loop

        def shutdown():
            self._server.close()
            for connection in list(self._connections):
                connection.transport.abort()
            loop.call_soon(loop.stop)

        loop.call_soon_threadsafe(shutdown)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
