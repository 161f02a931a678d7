"""An in-process cache that loads misses once: what keeps database reads off the hot path, and what keeps
traffic flowing (on the last known entries) while the database is unreachable."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, TypeVar

from django.conf import settings

K = TypeVar("K")
V = TypeVar("V")

log = logging.getLogger(__name__)


class _Entry(Generic[V]):
    __slots__ = ("value", "expires", "loaded", "failing")

    def __init__(self, value: V | None, expires: float, loaded: float):
        self.value = value
        self.expires = expires
        self.loaded = loaded  # when the value was last read from its source: its age when served stale
        self.failing = False  # the last reload failed: the value is being served stale


class LoadingCache(Generic[K, V]):
    """Values live `ttl` seconds (`miss_ttl` when the loader found nothing, i.e. returned None).

    Concurrent misses for one key share a single load, run as its own task so that a caller going away
    cancels only its own wait. An invalidation while a load is running keeps that load's (possibly stale)
    result out of the cache.

    When a reload fails (the database is down or hung), the last known value is served for up to
    `max_stale` seconds after it was loaded (INGATE_KEY_CACHE_MAX_STALE), retried in the background at most
    every `retry` seconds; requests do not wait for those retries. An invalidated entry is gone, so it is never
    served stale: revocations still win. Misses (None) are not served stale: a key unknown a while ago may
    exist by now, and the caller's error should say the database is down rather than that the key is unknown.
    """

    _instances: ClassVar[weakref.WeakSet] = weakref.WeakSet()
    # When the last load of any cache failed, unless one succeeded since: the caches share one database, so
    # an outage seen by one need not be waited out again by the others. Set and cleared only by _fetch.
    _source_failed_at: ClassVar[float | None] = None

    def __init__(
        self,
        load: Callable[[K], Awaitable[V | None]],
        *,
        ttl: float,
        miss_ttl: float,
        max_entries: int = 100_000,
        max_stale: float | None = None,
    ):
        self._load = load
        self._ttl = ttl
        self._miss_ttl = miss_ttl
        # Past this many entries the cache starts over rather than grow without bound (e.g. under a flood
        # of made-up key prefixes, each of which is cached as a miss).
        self._max_entries = max_entries
        self._max_stale = settings.INGATE_KEY_CACHE_MAX_STALE if max_stale is None else max_stale
        # A failing source is asked again this often per entry, not on every request.
        self._retry = min(ttl, 5.0)
        self._entries: dict[K, _Entry[V]] = {}
        self._loading: dict[K, asyncio.Task] = {}
        self._generation = 0
        self._outage_logged = False
        LoadingCache._instances.add(self)

    async def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is not None:
            now = time.monotonic()
            if now < entry.expires:
                return entry.value
            failing = entry.failing or self._source_failed_recently(now)
            if failing and entry.value is not None and now - entry.loaded <= self._max_stale:
                # Still failing a moment ago (this entry, or a load of any cache: they share the database): answer
                # at once, and let one background reload find out whether the source is back (a hung database
                # would otherwise hold every request for the timeout, once per cache).
                self._load_task(key)
                return entry.value
        return await asyncio.shield(self._load_task(key))

    def _load_task(self, key: K) -> asyncio.Task:
        loop = asyncio.get_running_loop()
        task = self._loading.get(key)
        if task is None or task.get_loop() is not loop:
            # Ingate's own calls may run on another event loop in another thread (an eval run in the embedded
            # mode): a load in flight there cannot be awaited here, so this loop makes its own.
            fresh = loop.create_task(self._fetch(key))
            if self._loading.setdefault(key, fresh) is fresh:
                fresh.add_done_callback(lambda done: self._fetched(key, done))
            task = fresh
        return task

    async def _fetch(self, key: K) -> V | None:
        generation = self._generation
        try:
            value = await self._load(key)
        except Exception as exc:  # noqa: BLE001  (any failure of the source: serve what is known, or raise it)
            return self._stale_or_raise(key, exc)
        LoadingCache._source_failed_at = None
        if generation == self._generation:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            now = time.monotonic()
            self._entries[key] = _Entry(value, now + (self._miss_ttl if value is None else self._ttl), now)
        if self._outage_logged:
            # The source is back: what was served stale is reloaded on its next use (awaited, like any miss).
            self._outage_logged = False
            for entry in list(self._entries.values()):
                if entry.failing:
                    entry.failing, entry.expires = False, 0.0
            log.warning("The proxy's cache loads again: entries served stale are reloaded on their next use")
        return value

    def _stale_or_raise(self, key: K, exc: Exception) -> V:
        # Invalidation pops entries, so one still here was not invalidated while the load ran.
        entry = self._entries.get(key)
        now = time.monotonic()
        LoadingCache._source_failed_at = now
        if entry is None or entry.value is None or now - entry.loaded > self._max_stale:
            raise exc
        entry.failing = True
        entry.expires = now + self._retry
        if not self._outage_logged:
            self._outage_logged = True
            log.warning(
                "Could not reload a cached entry (%s); serving the last known entries, up to %gs old, "
                "until the database answers",
                exc,
                self._max_stale,
            )
        return entry.value

    def _source_failed_recently(self, now: float) -> bool:
        failed_at = LoadingCache._source_failed_at
        return failed_at is not None and now - failed_at < self._retry

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
            for name, entry in list(self._entries.items()):
                if entry.value is not None and where(entry.value):
                    self._entries.pop(name, None)
        else:
            self._entries.clear()

    def serving_stale(self) -> int:
        """How many entries are being served past a failed reload."""
        now = time.monotonic()
        return sum(
            1 for entry in list(self._entries.values()) if entry.failing and now - entry.loaded <= self._max_stale
        )

    @classmethod
    def serving_stale_total(cls) -> int:
        """Entries served stale across the process's caches (for /ingate/health)."""
        return sum(cache.serving_stale() for cache in list(cls._instances))
