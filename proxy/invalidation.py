"""Telling every gateway process that a key or an org's credentials changed.

The process that made the change drops its cache entries at once; with Redis configured, a pub/sub message
does the same in every other process within milliseconds. Without Redis, other processes rely on the
cache TTL (INGATE_KEY_CACHE_TTL)."""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Callable

from django.conf import settings

log = logging.getLogger(__name__)

CHANNEL = "ingate:proxy:invalidate"
# kinds: "key" (value: key prefix), "org" (value: org id; keys and credentials), "credentials" (value: org id),
# "all" (value empty: after a reconnect, when messages may have been missed)
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
        _redis().publish(CHANNEL, f"{kind}:{value}")
    except Exception as exc:  # noqa: BLE001  (a Redis outage must not fail an admin's revoke)
        log.warning("Could not broadcast a proxy cache invalidation (%s:%s): %s", kind, value, exc)


async def listen(redis_url: str, on_message: Listener) -> None:
    """Apply other processes' invalidations until cancelled, reconnecting with backoff."""
    import redis.asyncio as aioredis

    delay = 0.5
    while True:
        client = aioredis.Redis.from_url(redis_url)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                on_message("all", "")  # anything may have changed while we were not listening
                delay = 0.5
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    kind, _, value = message["data"].decode().partition(":")
                    on_message(kind, value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (keep listening whatever Redis does)
            log.warning("Proxy cache invalidation listener lost Redis (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        finally:
            await client.aclose()
