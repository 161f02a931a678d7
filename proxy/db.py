"""The proxy's only way to the database: a few threads, used on cache misses (never per request in steady
state) and for fire-and-forget writes such as a key's last-used stamp. A request waits for them a bounded
time (INGATE_PROXY_DB_TIMEOUT): a down or hung database is a fast 503, not a request held for the outage."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections

from .codes import ErrorCode
from .errors import ProxyError

T = TypeVar("T")
_STOP = object()


class DatabaseUnavailable(ProxyError):
    """The database refused, broke off or did not answer in time: 503 in the provider's shape (SDKs retry it)."""

    def __init__(self, why: str):
        super().__init__(
            503,
            ErrorCode.DATABASE_UNAVAILABLE,
            f"Ingate could not reach its database to check this request ({why}). Try again shortly.",
        )


class DatabaseThreads:
    """A fixed pool, so a burst of unknown keys cannot open more connections than `workers`; each thread
    closes its connections when the pool shuts down (a test database cannot be dropped while they are open)."""

    def __init__(self, workers: int = 4):
        self._workers = workers
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _ensure_threads(self) -> None:
        if self._threads:
            return
        with self._lock:
            if not self._threads:
                for n in range(self._workers):
                    thread = threading.Thread(target=self._work, name=f"ingate-proxy-db-{n}", daemon=True)
                    thread.start()
                    self._threads.append(thread)

    def _work(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    return
                future, fn, args, kwargs = job
                if not future.set_running_or_notify_cancel():
                    continue
                # Threads outlive requests: apply CONN_MAX_AGE and health checks as Django does around one.
                close_old_connections()
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # noqa: BLE001  (handed to whoever awaits the future)
                    future.set_exception(exc)
                finally:
                    close_old_connections()
        finally:
            connections.close_all()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future:
        self._ensure_threads()
        future: Future = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` on a database thread; DatabaseUnavailable when the database fails or takes
        longer than INGATE_PROXY_DB_TIMEOUT. A thread stuck on a hung connection stays stuck (nothing can
        interrupt it), but the request is answered, and a job still queued behind it is dropped."""
        timeout = settings.INGATE_PROXY_DB_TIMEOUT
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.submit(fn, *args, **kwargs)), timeout or None)
        except TimeoutError:
            raise DatabaseUnavailable(f"no answer within {timeout:g}s") from None
        except (OperationalError, InterfaceError) as exc:
            # The driver's text names hosts and ports: the client gets the kind of failure, not the address.
            raise DatabaseUnavailable(f"{type(exc).__name__}") from None

    def shutdown(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(_STOP)
        for thread in threads:
            thread.join(timeout=5)
