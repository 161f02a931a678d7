"""Telling every gateway process that a key or an org's credentials changed.

The process that made the change drops its cache entries at once; with Redis configured, a pub/sub message
does the same in every other process within milliseconds. Without Redis, other processes rely on the
cache TTL (INGATE_KEY_CACHE_TTL). A listener that lost Redis reconnects within a second of its return and drops
every cached entry, since it may have missed some messages."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Callable

from django.conf import settings

log = logging.getLogger(__name__)

CHANNEL = "ingate:proxy:invalidate"
# kinds: "key" (value: key prefix), "org" (value: org id; keys and credentials), "credentials" (value: org id),
# "routes" (value: org id; its routes or their targets changed),
# "limits" (value: org id; its budgets, rate limits or time zone changed),
# "cache" (value: org id; its response cache settings changed),
# "storage" (value: org id; its bucket settings changed: the record writer's, not a stage's),
# "guardrails" (value: org id; its guardrail policies changed),
# "all" (value empty: after a reconnect, when messages may have been missed)
KEY = "key"
ORG = "org"
CREDENTIALS = "credentials"
PROMPTS = "prompts"
ROUTES = "routes"
LIMITS = "limits"
CACHE = "cache"
STORAGE = "storage"
GUARDRAILS = "guardrails"
# What is cached with an org's credentials (proxy/credentials.py OrgConfig): any of these drops that org's entry.
ORG_CONFIG = frozenset({CREDENTIALS, ORG, ROUTES, LIMITS, CACHE, GUARDRAILS})
# Every kind a publisher sends; a listener drops everything it caches on a kind it does not know ("all").
KINDS = frozenset({KEY, PROMPTS, STORAGE, *ORG_CONFIG})
Listener = Callable[[str, str], None]

_listeners: list[weakref.WeakMethod] = []


def add_listener(method: Listener) -> None:
    """Register a bound method; it goes away with its object (tests build many gateways)."""
    _listeners.append(weakref.WeakMethod(method))


def _notify_local(kind: str, value: str) -> None:
    for ref in list(_listeners):
        method = ref()
        if method is None:
            _listeners.remove(ref)
        else:
            method(kind, value)


def channel(redis_url: str, base: str = CHANNEL) -> str:
    """The pub/sub channel `base` of the instance on `redis_url`. Redis pub/sub ignores the database number, so two
    instances sharing a Redis server on databases of their own would otherwise hear each other's invalidations
    (harmless for safety, but every message costs the other instance its cache loads)."""
    from redis.connection import parse_url

    return f"{base}:{parse_url(redis_url).get('db', 0)}"


@functools.cache
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def publish(kind: str, value: str = "") -> None:
    """Call after the change is committed (transaction.on_commit). Never raises: the TTL is the fallback."""
    _notify_local(kind, value)
    if not settings.REDIS_URL:
        return
    try:
        _redis().publish(channel(settings.REDIS_URL), f"{kind}:{value}")
    except Exception as exc:  # noqa: BLE001  (a Redis outage must not fail an admin's revoke)
        log.warning("Could not broadcast a proxy cache invalidation (%s:%s): %s", kind, value, exc)


async def listen(
    redis_url: str,
    on_message: Listener,
    *,
    first_retry: float = 0.1,
    max_retry: float = 1.0,
    ping_every: float = 5.0,
    base: str = CHANNEL,
) -> None:
    """Apply other processes' invalidations until cancelled (or, with `base`, the messages of another channel of
    the same shape, e.g. routing health's).

    Reconnects within `max_retry` seconds of Redis coming back (a revoke must not wait out a long backoff), and
    then drops every cached entry: invalidations sent while it was away are lost. A Redis that holds the
    connection open but stops answering is noticed by a ping after `ping_every` seconds of silence."""
    import redis.asyncio as aioredis

    delay = first_retry
    lost = False
    while True:
        client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2)
        try:
            async with client.pubsub() as pubsub:
                await asyncio.wait_for(_subscribed(pubsub, channel(redis_url, base)), 2.0)
                on_message("all", "")  # anything may have changed while we were not listening
                if lost:
                    log.warning("Proxy cache invalidation listener is back on Redis; cached entries dropped")
                delay, lost = first_retry, False
                heard, pinged = time.monotonic(), None
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    now = time.monotonic()
                    if message is not None:
                        heard, pinged = now, None
                        if message.get("type") == "message":
                            kind, _, value = message["data"].decode().partition(":")
                            on_message(kind, value)
                    elif pinged is not None and now - pinged > 2.0:
                        raise ConnectionError("Redis did not answer a ping")
                    elif pinged is None and now - heard > ping_every:
                        await asyncio.wait_for(pubsub.ping(), 2.0)
                        pinged = now
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (keep listening whatever Redis does)
            if not lost:
                log.warning(
                    "Proxy cache invalidation listener lost Redis (%s); retrying every %gs at most", exc, max_retry
                )
            lost = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_retry)
        finally:
            await client.aclose()


async def _subscribed(pubsub, name: str) -> None:
    """Subscribe and wait for Redis to confirm: only from then on is no message missed."""
    await pubsub.subscribe(name)
    while True:
        message = await pubsub.get_message(timeout=1.0)
        if message is not None and message.get("type") == "subscribe":
            return
