"""Where the response cache keeps answers: Redis when configured, else a least-recently-used map in the process
bounded by total bytes (INGATE_CACHE_MEMORY_BYTES, default 64 MiB). Both backends have the same interface.

Keys: `ingate:cache:o<org id>:<namespace digest>:<entry digest>` (`redis_key`), so every org's entries, and every
namespace's within it, are one prefix: a purge scans that prefix and never reaches another org. Values: a two-byte
header, then the answer zlib-compressed at level 1 (or as is, when under COMPRESS_FROM bytes or when that does not
shrink it: a small answer saves a few hundred bytes and would cost each hit an inflate of ~5-7 µs). The caller puts answers
only, never the request's headers: an entry holds no gateway key or provider credential, and one that contains a
gateway key (a model echoing it) is refused.

Memory: with Redis, the instance's own `maxmemory` with an `allkeys-lru` (or `volatile-lru`: every entry has a TTL)
policy evicts; nothing is set on the server from here. Each process refuses entries over the size limit. Without
Redis, each process holds its own entries; another process's are purged when they expire.

A Redis that fails never fails a request: a failed get is a miss, a failed put is dropped, one warning per outage,
and for a second after a failure no request waits on Redis.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import threading
import time
import weakref
import zlib
from collections import OrderedDict
from typing import Protocol

from django.conf import settings

from tenancy.keys import KEY_MARKER

from ..resp import Resp

log = logging.getLogger(__name__)

PREFIX = "ingate:cache:"
MAX_ENTRY_BYTES = 16 * 1024 * 1024  # whatever an org sets, nothing larger is kept
DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024
# What the in-process map spends on an entry beyond its key's and value's bytes (the dict slot, the key and bytes
# objects' headers, the (expiry, value) tuple and its float), measured on CPython 3.12; the byte cap counts it.
ENTRY_OVERHEAD = 300
# Seconds during which no request waits on a Redis that just failed.
RETRY_AFTER = 1.0
# Answers smaller than this are kept uncompressed (see the module docstring).
COMPRESS_FROM = 1024

_VERSION = 1
_RAW, _ZLIB = b"r", b"z"
_HEADER = bytes([_VERSION])
_HEX = re.compile(r"[0-9a-f]+")
_MARKER = KEY_MARKER.encode()


class CacheUnavailable(Exception):
    """The cache's Redis did not answer a purge (the request path never sees this: there a failure is a miss)."""


@functools.lru_cache(maxsize=4096)  # a hit names its namespace on every request: hash each one once
def namespace_digest(namespace: str) -> str:
    """The key segment of a namespace ("" for none): 16 hex digits, so any text makes a key that globs safely."""
    return hashlib.sha256((namespace or "").encode()).hexdigest()[:16]


def org_prefix(org_id: int) -> str:
    if isinstance(org_id, bool) or not isinstance(org_id, int):
        raise TypeError("a response cache key needs the org id: entries are never shared between orgs")
    return f"{PREFIX}o{org_id}:"


def redis_key(org_id: int, namespace: str, digest: str) -> str:
    """The store key of an entry: `digest` is `cache_key(...)` (hex), `namespace` the request's ("" for none)."""
    if not _HEX.fullmatch(digest or ""):
        raise ValueError("an entry digest is the hex cache key")
    return f"{org_prefix(org_id)}{namespace_digest(namespace)}:{digest}"


def _pattern(org_id: int, namespace: str | None, key: str | None) -> str:
    if key is not None and not _HEX.fullmatch(key):
        raise ValueError("a cache key is hex digits")
    return f"{org_prefix(org_id)}{'*' if namespace is None else namespace_digest(namespace)}:{key or '*'}"


def encode(value: bytes) -> bytes:
    """The stored form of an answer: header, then zlib level 1 from COMPRESS_FROM bytes unless that does not shrink
    it."""
    if len(value) < COMPRESS_FROM:
        return _HEADER + _RAW + value
    packed = zlib.compress(value, 1)
    if len(packed) < len(value):
        return _HEADER + _ZLIB + packed
    return _HEADER + _RAW + value


def decode(blob: bytes) -> bytes | None:
    """The answer back; None for what this version did not write (a miss, never a wrong answer)."""
    if len(blob) < 2 or blob[0] != _VERSION:
        return None
    codec, body = blob[1:2], blob[2:]
    if codec == _RAW:
        return body
    if codec == _ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error:
            return None
    return None


def _refused(value: bytes, max_bytes: int | None) -> str:
    """Why an answer is not kept ("" when it may be)."""
    limit = MAX_ENTRY_BYTES if max_bytes is None else min(max_bytes, MAX_ENTRY_BYTES)
    if len(value) > limit:
        return f"{len(value)} bytes, over the limit of {limit}"
    if _MARKER in value:
        return "it contains a gateway key"
    return ""


class Store:
    """The interface of both backends. `get` and `put` run on the event loop and never raise; `purge` is
    synchronous (call it off the event loop) and returns how many entries it dropped."""

    async def get(self, entry_key: str) -> bytes | None:
        raise NotImplementedError

    async def put(self, entry_key: str, value: bytes, ttl: float, *, max_bytes: int | None = None) -> bool:
        """Keep `value` for `ttl` seconds under `entry_key` (`redis_key`); False when refused (over `max_bytes`,
        the org's limit, or MAX_ENTRY_BYTES) or not stored (Redis failed)."""
        raise NotImplementedError

    def purge(self, org_id: int, namespace: str | None = None, key: str | None = None) -> int:
        raise NotImplementedError


class MemoryStore(Store):
    """Entries of this process, least recently used evicted first once their bytes (ENTRY_OVERHEAD included)
    pass `memory_bytes`; an expired entry is a miss and goes at once."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        if memory_bytes < 1:
            raise ValueError("the in-process response cache needs a positive byte limit")
        self.memory_bytes = memory_bytes
        self.size = 0  # accounted bytes held
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()  # purge runs on another thread

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _cost(entry_key: str, blob: bytes) -> int:
        return len(entry_key) + len(blob) + ENTRY_OVERHEAD

    def _drop(self, entry_key: str) -> None:
        _, blob = self._entries.pop(entry_key)
        self.size -= self._cost(entry_key, blob)

    async def get(self, entry_key: str) -> bytes | None:
        with self._lock:
            found = self._entries.get(entry_key)
            if found is None:
                return None
            expires, blob = found
            if expires <= time.monotonic():
                self._drop(entry_key)
                return None
            self._entries.move_to_end(entry_key)
        return decode(blob)

    async def put(self, entry_key: str, value: bytes, ttl: float, *, max_bytes: int | None = None) -> bool:
        why = _refused(value, max_bytes)
        if why or ttl <= 0:
            log.debug("Response cache entry not kept: %s", why or "no time to live")
            return False
        blob = encode(value)
        cost = self._cost(entry_key, blob)
        if cost > self.memory_bytes:
            return False
        with self._lock:
            if entry_key in self._entries:
                self._drop(entry_key)
            self._entries[entry_key] = (time.monotonic() + ttl, blob)
            self.size += cost
            while self.size > self.memory_bytes:
                self._drop(next(iter(self._entries)))
        return True

    def purge(self, org_id: int, namespace: str | None = None, key: str | None = None) -> int:
        prefix = org_prefix(org_id)
        if namespace is not None:
            prefix += namespace_digest(namespace) + ":"
        suffix = f":{key}" if key is not None else ""
        if key is not None and not _HEX.fullmatch(key):
            raise ValueError("a cache key is hex digits")
        with self._lock:
            doomed = [k for k in self._entries if k.startswith(prefix) and k.endswith(suffix)]
            for entry_key in doomed:
                self._drop(entry_key)
        return len(doomed)


class RedisCommands(Protocol):
    """All the store asks of Redis on the request path: one GET per lookup, one SET with an expiry per answer
    kept. One client per event loop, made by `connect`; purges use a separate synchronous client."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ex: float | None = None) -> None: ...

    async def close(self) -> None: ...


def connect(redis_url: str, timeout: float) -> RedisCommands:
    """The request path's Redis client for the running event loop: the proxy's own RESP client (proxy/resp.py;
    most of a hit's Redis cost under redis-py's asyncio client was its per-command machinery, not the round
    trip). A timeout, a refused or dropped connection raises, which the store turns into a miss."""
    return Resp(redis_url, timeout=timeout)


class RedisStore(Store):
    """Entries in Redis: one GET per lookup, one SET … PX per answer kept; purges SCAN the org's prefix."""

    def __init__(self, redis_url: str, *, timeout: float = 0.5) -> None:
        self.redis_url = redis_url
        self.timeout = timeout
        self._client: RedisCommands | None = None
        self._client_loop = None
        self._sync = None
        self._down = False
        self._retry_at = 0.0

    def _async_client(self) -> RedisCommands:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = connect(self.redis_url, self.timeout)
            self._client_loop = loop
        return self._client

    def _sync_client(self):
        if self._sync is None:
            import redis

            self._sync = redis.Redis.from_url(self.redis_url, socket_timeout=10, socket_connect_timeout=2)
        return self._sync

    def _skipping(self) -> bool:
        return self._down and time.monotonic() < self._retry_at

    def _failed(self, exc: Exception, doing: str) -> None:
        if not self._down:
            log.warning(
                "Response cache: Redis failed on %s (%s); serving without the cache until it is back", doing, exc
            )
        self._down = True
        self._retry_at = time.monotonic() + RETRY_AFTER

    def _answered(self) -> None:
        if self._down:
            log.warning("Response cache: Redis is back")
            self._down = False

    async def get(self, entry_key: str) -> bytes | None:
        if self._skipping():
            return None
        try:
            blob = await self._async_client().get(entry_key)
        except Exception as exc:  # noqa: BLE001  (a cache outage is a miss, never a failed request)
            self._failed(exc, "a lookup")
            return None
        self._answered()
        return None if blob is None else decode(blob)

    async def put(self, entry_key: str, value: bytes, ttl: float, *, max_bytes: int | None = None) -> bool:
        why = _refused(value, max_bytes)
        milliseconds = int(ttl * 1000)
        if why or milliseconds < 1:
            log.debug("Response cache entry not kept: %s", why or "no time to live")
            return False
        if self._skipping():
            return False
        try:
            await self._async_client().set(entry_key, encode(value), ex=milliseconds / 1000)
        except Exception as exc:  # noqa: BLE001  (an answer not kept costs a later miss, nothing more)
            self._failed(exc, "storing an answer")
            return False
        self._answered()
        return True

    def purge(self, org_id: int, namespace: str | None = None, key: str | None = None) -> int:
        """Raises CacheUnavailable when Redis does not answer (an admin asked: they must know it did not happen)."""
        pattern = _pattern(org_id, namespace, key)
        client = self._sync_client()
        try:
            if namespace is not None and key is not None:
                return int(client.delete(pattern))
            dropped = 0
            batch: list[bytes] = []
            for found in client.scan_iter(match=pattern, count=1000):
                batch.append(found)
                if len(batch) >= 500:
                    dropped += int(client.unlink(*batch))
                    batch = []
            if batch:
                dropped += int(client.unlink(*batch))
            return dropped
        except Exception as exc:
            raise CacheUnavailable(f"The response cache's Redis did not answer the purge: {exc}") from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None


# The stores this process made (weakly: a gateway's goes with it), for `purge`.
_stores: weakref.WeakSet[Store] = weakref.WeakSet()
_admin_stores: dict[str, RedisStore] = {}
_admin_lock = threading.Lock()


def store_for(redis_url: str, *, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> Store:
    """The store a gateway uses: Redis at `redis_url`, or in the process when it is empty."""
    store = RedisStore(redis_url) if redis_url else MemoryStore(memory_bytes)
    _stores.add(store)
    return store


def purge(org_id: int, namespace: str | None = None, key: str | None = None) -> int:
    """Drop an org's entries (one namespace's with `namespace`, one entry with `key`: its hex cache key) from every
    store of this process and from the configured Redis (REDIS_URL); how many were dropped. Synchronous: call it
    off the event loop. Raises CacheUnavailable when Redis does not answer, ValueError for a key that is not hex."""
    dropped = 0
    done: set[str] = set()
    for store in list(_stores):
        if isinstance(store, RedisStore):
            if store.redis_url in done:
                continue
            done.add(store.redis_url)
        dropped += store.purge(org_id, namespace=namespace, key=key)
    if settings.REDIS_URL and settings.REDIS_URL not in done:
        with _admin_lock:
            store = _admin_stores.setdefault(settings.REDIS_URL, RedisStore(settings.REDIS_URL))
        dropped += store.purge(org_id, namespace=namespace, key=key)
    return dropped
