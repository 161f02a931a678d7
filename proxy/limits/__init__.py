"""Budgets and rate limits: counters reserved before a request goes upstream and settled after it, shared by every
gateway process through Redis (one script each way) or kept in process without it. `limiter_for` picks the
backend; proxy/limits/counters.py says what reserving and settling mean, redis_store.py how Redis keeps them."""

from __future__ import annotations

from .counters import (
    BUCKETS,
    CONCURRENCY,
    KINDS,
    LIMIT,
    REQUESTS,
    SPEND,
    TOKENS,
    UNAVAILABLE,
    Counter,
    Limiter,
    MemoryLimiter,
    Refusal,
    Reservation,
    Standing,
    Usage,
)
from .redis_store import RedisLimiter


def limiter_for(redis_url: str, **options) -> Limiter:
    """The shared limiter on `redis_url`, or an in-process one without it (options: RedisLimiter's timeout,
    retry_interval, connections)."""
    return RedisLimiter(redis_url, **options) if redis_url else MemoryLimiter()


__all__ = [
    "BUCKETS",
    "CONCURRENCY",
    "KINDS",
    "LIMIT",
    "REQUESTS",
    "SPEND",
    "TOKENS",
    "UNAVAILABLE",
    "Counter",
    "Limiter",
    "MemoryLimiter",
    "RedisLimiter",
    "Refusal",
    "Reservation",
    "Standing",
    "Usage",
    "limiter_for",
]
