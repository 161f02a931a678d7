"""The building blocks of routing: target health (circuit breakers, shared through Redis when configured) and
the retry policy (when to move on, how long to wait, which target next)."""

from .health import CLOSED, HALF_OPEN, OPEN, Failure, Health, RedisHealth, TargetHealth, TargetKey, health_for
from .retry import (
    DEFAULT_RETRY_STATUSES,
    ERROR_KINDS,
    STRATEGIES,
    Attempt,
    Exhausted,
    Plan,
    Target,
    counts_against_health,
    fits,
    header_delay,
    retry_delay,
    should_move_on,
)

__all__ = [
    "CLOSED",
    "DEFAULT_RETRY_STATUSES",
    "ERROR_KINDS",
    "HALF_OPEN",
    "OPEN",
    "STRATEGIES",
    "Attempt",
    "Exhausted",
    "Failure",
    "Health",
    "Plan",
    "RedisHealth",
    "Target",
    "TargetHealth",
    "TargetKey",
    "counts_against_health",
    "fits",
    "header_delay",
    "retry_delay",
    "health_for",
    "should_move_on",
]
