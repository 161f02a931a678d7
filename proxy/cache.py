"""An in-process cache that loads misses once: what keeps database reads off the hot path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LoadingCache(Generic[K, V]):
    """Values live `ttl` seconds (`miss_ttl` when the loader found nothing, i.e. returned None).

    Concurrent misses for one key share a single load, run as its own task so that a caller going away
    cancels only its own wait. An invalidation while a load is running keeps that load's (possibly stale)
    result out of the cache.
    """

    def __init__(
        self,
        load: Callable[[K], Awaitable[V | None]],
        *,
        ttl: float,
        miss_ttl: float,
        max_entries: int = 100_000,
    ):
        self._load = load
        self._ttl = ttl
        self._miss_ttl = miss_ttl
        # Past this many entries the cache starts over rather than grow without bound (e.g. under a flood
        # of made-up key prefixes, each of which is cached as a miss).
        self._max_entries = max_entries
        self._entries: dict[K, tuple[V | None, float]] = {}
        self._loading: dict[K, asyncio.Task] = {}
        self._generation = 0

    async def get(self, key: K) -> V | None:
        hit = self._entries.get(key)
        if hit is not None:
            value, expires = hit
            if time.monotonic() < expires:
                return value
        loop = asyncio.get_running_loop()
        task = self._loading.get(key)
        if task is None or task.get_loop() is not loop:
            # Ingate's own calls may run on another event loop in another thread (an eval run in the embedded
            # mode): a load in flight there cannot be awaited here, so this loop makes its own.
            fresh = loop.create_task(self._fetch(key))
            if self._loading.setdefault(key, fresh) is fresh:
                fresh.add_done_callback(lambda done: self._fetched(key, done))
            task = fresh
        return await asyncio.shield(task)

    async def _fetch(self, key: K) -> V | None:
        generation = self._generation
        value = await self._load(key)
        if generation == self._generation:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (value, time.monotonic() + (self._miss_ttl if value is None else self._ttl))
        return value

    def _fetched(self, key: K, task: asyncio.Task) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: the waiters, if any are left, got it

    def invalidate(self, key: K | None = None, *, where: Callable[[V], bool] | None = None) -> None:
        """Forget one key, the entries whose value matches `where`, or (no argument) everything."""
        self._generation += 1
        if key is not None:
            self._entries.pop(key, None)
        elif where is not None:
            for name, (value, _) in list(self._entries.items()):
                if value is not None and where(value):
                    self._entries.pop(name, None)
        else:
            self._entries.clear()
