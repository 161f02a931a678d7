"""When routing moves on from a target, how long it waits before trying again, and in which order it tries a
route's targets within an attempt budget and a deadline. Pure: no I/O, no sleeping; health is read from
process memory (`Health.is_open`, `probe_due`).

The routing stage's attempt loop, in short:

    plan = Plan(org_id, targets, health=health, strategy=..., retries=..., max_attempts=..., deadline=...)
    while True:
        attempt = plan.next()                      # raises Exhausted: answer with its error (or a 503)
        if attempt.probe and not await health.claim_probe(attempt.key):
            plan.release(attempt)                  # another request probes it; not an attempt
            continue
        await asyncio.sleep(attempt.delay)         # 0 unless this target is being retried
        ... send, bounded by attempt.timeout ...
        if no failure, or not should_move_on(status, error_kind, route.retry_on), or bytes reached the client:
            health.record_success(attempt.key, ttfb_ms) (when it answered) and relay
        else:
            if counts_against_health(status, error_kind): health.record_failure(attempt.key, kind, status=status)
            plan.failed(attempt, status=status, error_kind=error_kind, headers=headers, error=what_to_answer)
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import NoReturn

from .health import Failure, Health, TargetKey

DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
# connect: no connection; timeout: no answer in time; first_byte_timeout: a stream sent nothing within the
# route's limit; cut: the upstream dropped the connection before its answer was complete.
ERROR_KINDS = frozenset({"connect", "timeout", "first_byte_timeout", "cut"})
STRATEGIES = ("fallback", "loadbalance", "lowest-latency")

# Exhausted.reason
CIRCUIT_OPEN = "circuit_open"  # nothing left to try but targets whose circuit is open
NO_ATTEMPTS_LEFT = "attempts"  # the route's attempt budget is spent
DEADLINE = "deadline"  # the route's deadline passed, or no target could be retried before it
TARGETS_EXHAUSTED = "exhausted"  # every target used its retries


def should_move_on(status: int | None, error_kind: str | None, retry_on: frozenset[int] = frozenset()) -> bool:
    """Whether this failure sends the request to another try (this target again, or the next). Always on an
    error kind and on 429/500/502/503/504/529; on `retry_on`, a route's opt-in statuses (a 400 for context
    length, a 401 of one pooled key). Only the caller knows whether bytes already reached the client: once they
    have, nothing moves on."""
    if error_kind is not None:
        if error_kind not in ERROR_KINDS:
            raise ValueError(f"Unknown error kind {error_kind!r}: expected one of {sorted(ERROR_KINDS)}.")
        return True
    if status is None or status < 400:
        return False
    return status in DEFAULT_RETRY_STATUSES or status in retry_on


def counts_against_health(status: int | None, error_kind: str | None) -> bool:
    """Whether a failure says the target is unwell (and counts towards opening its circuit). A route's opt-in
    statuses (a too-long prompt) say something about the request instead."""
    return error_kind is not None or status in DEFAULT_RETRY_STATUSES


def header_delay(headers: list[tuple[bytes, bytes]] | None, *, now: float | None = None) -> float | None:
    """The wait the upstream asked for, in seconds: `retry-after-ms`, then Azure's `x-ms-retry-after-ms`, then
    `retry-after` (seconds, or an HTTP-date). None when it asked for nothing usable."""
    if not headers:
        return None
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        name = name.lower()
        if name in (b"retry-after-ms", b"x-ms-retry-after-ms", b"retry-after"):
            found.setdefault(name, value)
    for name in (b"retry-after-ms", b"x-ms-retry-after-ms"):
        if name in found:
            delay = _number(found[name])
            if delay is not None:
                return delay / 1000
    if b"retry-after" in found:
        value = found[b"retry-after"]
        delay = _number(value)
        if delay is not None:
            return delay
        try:
            when = email.utils.parsedate_to_datetime(value.decode("latin-1").strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is always GMT
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return None


def _number(value: bytes) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def retry_delay(
    attempt: int,
    headers: list[tuple[bytes, bytes]] | None,
    *,
    base: float,
    cap: float,
    rng: random.Random | None = None,
    now: float | None = None,
) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry) of one target: the upstream's
    `retry-after`-style header when it sent one, else exponential backoff with full jitter (uniform between 0 and
    base·2^(attempt-1)); capped at `cap` either way. `now` is the wall clock, for an HTTP-date."""
    asked = header_delay(headers, now=now)
    if asked is not None:
        return min(asked, cap)
    ceiling = min(cap, base * 2 ** min(max(attempt, 1) - 1, 60))
    return (rng or random).uniform(0.0, ceiling)


def fits(delay: float, remaining: float) -> bool:
    """Whether waiting `delay` seconds still leaves time to try before the deadline; when it does not, give up on
    this target (move on) instead of sleeping into the deadline."""
    return delay < remaining


@dataclass(frozen=True, slots=True)
class Target:
    """One place a route can send a request. `credential` names the key (a stored credential's id, or "env"),
    never the secret. `weight` matters to loadbalance only (0: only when nothing else is left)."""

    provider: str
    model: str
    credential: str
    weight: float = 1.0

    def key(self, org_id) -> TargetKey:
        return TargetKey(str(org_id), self.provider, self.model, str(self.credential))


@dataclass(frozen=True, slots=True)
class Attempt:
    target: Target
    key: TargetKey
    index: int  # the target's position in the route
    number: int  # 1 for the plan's first attempt (X-Ingate-Attempts)
    retry: int  # 0 for a target's first try, 1 for its first retry, …
    delay: float  # seconds to wait before sending
    timeout: float  # seconds left until the route's deadline (math.inf without one), delay included
    probe: bool  # the target's circuit is half-open: claim the probe first (Health.claim_probe)


class Exhausted(Exception):
    """No attempt is left. `error` is what the caller passed with the last `Plan.failed` (answer with it);
    without one (the plan failed fast), `failure` is the last failure health knows of and `retry_after` when a
    target may be tried again: answer 503 with them."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        attempts: int,
        error=None,
        failure: Failure | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.reason, self.message, self.attempts = reason, message, attempts
        self.error, self.failure, self.retry_after = error, failure, retry_after


class Plan:
    """The attempts of one request over a route's targets. Targets are tried in the strategy's order, each up to
    1 + `retries` times (waiting `retry_delay` between its tries), never more than `max_attempts` in all nor past
    `deadline` seconds from now. A target whose circuit is open is skipped, unless its probe is due; when every
    one is open the plan fails fast. A 429 from one key moves the other keys of the same provider and model to
    the front."""

    def __init__(
        self,
        org_id,
        targets: list[Target] | tuple[Target, ...],
        *,
        health: Health,
        strategy: str = "fallback",
        retries: int = 0,
        max_attempts: int | None = None,
        deadline: float | None = None,
        base: float = 0.5,
        cap: float = 8.0,
        explore: float = 0.05,
        rng: random.Random | None = None,
        clock=time.monotonic,
    ):
        if not targets:
            raise ValueError("A route needs at least one target.")
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown routing strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}.")
        if retries < 0 or (max_attempts is not None and max_attempts < 1):
            raise ValueError("retries must be >= 0 and max_attempts >= 1.")
        if any(target.weight < 0 for target in targets):
            raise ValueError("Target weights must be >= 0.")
        self.targets = tuple(targets)
        self.keys = tuple(target.key(org_id) for target in self.targets)
        self.health, self.retries, self.base, self.cap = health, retries, base, cap
        self.max_attempts = max_attempts if max_attempts is not None else len(self.targets) * (1 + retries)
        self.clock = clock
        self.rng = rng if rng is not None else random  # the module: no per-request seeding
        self.deadline_at = math.inf if deadline is None else clock() + deadline
        self.attempts = 0
        self._tries = [0] * len(self.targets)
        self._not_before = [0.0] * len(self.targets)
        self._pending = self._order(strategy, explore)
        self._gave_up_for_deadline = False
        self._error = None
        self._failure: Failure | None = None
        self.skipped: dict[int, None] = {}  # targets passed over while their circuit was open, in order

    def _order(self, strategy: str, explore: float) -> list[int]:
        indices = list(range(len(self.targets)))
        if strategy == "loadbalance":
            # Weighted sampling without replacement (Efraimidis–Spirakis): the first target left once the open
            # ones are skipped is a weighted draw among the healthy ones.
            def draw(i: int) -> float:
                weight = self.targets[i].weight
                return self.rng.random() ** (1 / weight) if weight > 0 else -1.0

            return sorted(indices, key=draw, reverse=True)
        if strategy == "lowest-latency":
            if self.rng.random() < explore:
                self.rng.shuffle(indices)
                return indices
            # Targets not measured yet first (in route order), so each gets measured.
            ttfbs = [self.health.ttfb(key) for key in self.keys]
            return sorted(indices, key=lambda i: (ttfbs[i] is not None, ttfbs[i] or 0.0))
        return indices

    def next(self) -> Attempt:
        """The next attempt, or Exhausted."""
        if not self._pending:
            raise self._exhausted(*self._nothing_left())
        if self.attempts >= self.max_attempts:
            raise self._exhausted(NO_ATTEMPTS_LEFT, f"the route's {self.max_attempts} attempts were all used")
        now = self.clock()
        remaining = self.deadline_at - now
        if remaining <= 0:
            raise self._exhausted(DEADLINE, "the route's deadline passed")
        skipped_open: list[int] = []
        for i in list(self._pending):
            key = self.keys[i]
            probe = False
            if self.health.is_open(key):
                if not self.health.probe_due(key):
                    skipped_open.append(i)
                    self.skipped[i] = None
                    continue
                probe = True
            delay = max(0.0, self._not_before[i] - now)
            if not fits(delay, remaining):
                self._pending.remove(i)
                self._gave_up_for_deadline = True
                continue
            self.attempts += 1
            return Attempt(self.targets[i], key, i, self.attempts, self._tries[i], delay, remaining, probe)
        if skipped_open:
            self._fail_fast(skipped_open)
        raise self._exhausted(*self._nothing_left())

    def _nothing_left(self) -> tuple[str, str]:
        if self._gave_up_for_deadline:
            return DEADLINE, "no target can be retried before the route's deadline"
        return TARGETS_EXHAUSTED, "every target of the route failed"

    def _fail_fast(self, skipped: list[int]) -> NoReturn:
        retry_after = min(self.health.retry_in(self.keys[i]) for i in skipped)
        failure = self._failure
        for i in skipped:
            failure = failure or self.health.last_failure(self.keys[i])
        names = ", ".join(self.keys[i].label() for i in skipped)
        cause = f" (last error: {failure.describe()})" if failure is not None else ""
        raise self._exhausted(
            CIRCUIT_OPEN,
            f"{names} failed repeatedly and {'is' if len(skipped) == 1 else 'are'} paused{cause}; "
            f"retry in {math.ceil(retry_after)}s",
            failure=failure,
            retry_after=retry_after,
        )

    def _exhausted(self, reason: str, message: str, **extra) -> Exhausted:
        extra.setdefault("failure", self._failure)
        return Exhausted(reason, message, attempts=self.attempts, error=self._error, **extra)

    def release(self, attempt: Attempt) -> None:
        """The attempt was not sent (its probe went to another request): it does not count."""
        self.attempts -= 1

    def failed(
        self,
        attempt: Attempt,
        *,
        status: int | None = None,
        error_kind: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        error=None,
    ) -> None:
        """The attempt failed in a way `should_move_on` accepts. `error` is whatever the caller will answer with
        if nothing better comes (Exhausted.error)."""
        i = attempt.index
        self._error = error if error is not None else self._error
        self._failure = Failure(error_kind or "status", status)
        self._tries[i] += 1
        if self._tries[i] > self.retries:
            if i in self._pending:
                self._pending.remove(i)
        else:
            self._not_before[i] = self.clock() + retry_delay(
                self._tries[i], headers, base=self.base, cap=self.cap, rng=self.rng
            )
        if status == 429:
            # A rate-limited key: the provider's other keys for this model go next, before this key's retry and
            # before other providers.
            target = self.targets[i]
            siblings = [
                j
                for j in self._pending
                if j != i
                and self.targets[j].provider == target.provider
                and self.targets[j].model == target.model
                and self.targets[j].credential != target.credential
            ]
            if siblings:
                rest = [j for j in self._pending if j not in siblings]
                self._pending = siblings + rest
