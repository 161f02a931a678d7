"""Budgets and rate limits as counters that reserve before a request goes upstream and settle after it: what a
counter is, what reserving answers, the `Limiter` contract, and the in-process backend (`MemoryLimiter`).

Every counter of a request is reserved at once, all or nothing: a spend counter holds the request's worst-case
cost, a token counter its worst-case tokens, a request counter counts it, a concurrency counter holds a slot.
Settling replaces the holds by what the request used (and frees the slot). A hold that is never settled (a
killed gateway) expires after its `ttl`, so nothing stays taken by mistake.

Rate windows are sliding: a window of W seconds is cut into `BUCKETS` buckets and a request is admitted only if
everything in the buckets overlapping the last W seconds, plus what it asks, fits. The bucket partly outside the
window counts whole, so no window of W seconds ever holds more than the limit; a steady flow gets at least
W / (W + W/BUCKETS) of it (98% with 60 buckets).

Overshoot: a request whose actual use exceeds what it reserved is charged its actual use at settle. A counter
can therefore end above its limit by at most the sum, over the requests in flight at once, of (actual - reserved);
with a true worst case reserved (max_tokens priced at the output rate) that is zero. Once above, the counter
refuses until it is back under (a window rolls on; a budget's period ends).

Streams: providers send usage at a stream's end (OpenAI's include_usage chunk, Anthropic's message_delta), so
`settle` carries a stream's tokens and cost; while it runs, its worst case stays held. There is no mid-stream
call: it would cost a round trip per update for numbers that arrive at the end anyway.

Choose `ttl` longer than a request can run (the upstream timeout plus a margin): a hold that expires while its
stream still runs frees its slot early. A `reserve` cancelled after the store took it (a client gone at that very
moment) leaves its holds to expire.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

SPEND, REQUESTS, TOKENS, CONCURRENCY = "spend", "requests", "tokens", "concurrency"
KINDS = (SPEND, REQUESTS, TOKENS, CONCURRENCY)
WINDOWED = (REQUESTS, TOKENS)
HELD = (SPEND, CONCURRENCY)

# Why a request was refused: a counter would go over its limit, or a fail-closed counter cannot be checked.
LIMIT, UNAVAILABLE = "limit", "unavailable"

BUCKETS = 60
# A budget's counter is kept this long after its period ends (late settles, a clock a little off).
PERIOD_MARGIN = 2 * 86400.0
# Windows, slots and reservation indexes are kept this long past the last time they can matter.
SLACK = 60.0
# What a refusal caused by requests in flight suggests waiting: they usually end (and settle) within seconds,
# long before their holds would expire.
HOLD_RETRY = 1.0


@dataclass(frozen=True, slots=True)
class Counter:
    """One budget or rate limit as it applies to a request. `key` is unique per org, scope and period (the caller
    builds it, e.g. "o12:budget:key:34:month:2026-12"); `limit` is USD for spend, a count otherwise; `window`
    is the rate window in seconds (requests, tokens); `expires_at` (epoch seconds) is a budget period's end, after
    which its counter is forgotten (None: a budget without period). `fail_open` says what happens when the
    counter cannot be checked (shared store unreachable): None takes the default, closed for budgets and open
    for rate limits. `label` names it in refusals ("monthly budget of key 'ci' ($50)")."""

    key: str
    kind: str
    limit: float
    window: float = 60.0
    expires_at: float | None = None
    fail_open: bool | None = None
    label: str = ""

    def __post_init__(self):
        if not self.key:
            raise ValueError("a counter needs a key")
        if self.kind not in KINDS:
            raise ValueError(f"counter kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not (self.limit >= 0 and math.isfinite(self.limit)):
            raise ValueError(f"counter {self.key}: the limit must be a finite number >= 0, not {self.limit!r}")
        if self.kind in WINDOWED and not self.window >= 1:
            raise ValueError(f"counter {self.key}: a rate window must be at least 1 second, not {self.window!r}")
        if self.fail_open is None:
            object.__setattr__(self, "fail_open", self.kind != SPEND)
        if not self.label:
            object.__setattr__(self, "label", self.key)

    def describe(self, amount: float) -> str:
        """`amount` in this counter's unit, for messages."""
        if self.kind == SPEND:
            return f"${amount:,.2f}" if amount == 0 or abs(amount) >= 0.01 else f"${amount:.6f}"
        noun = {REQUESTS: "request", TOKENS: "token", CONCURRENCY: "request"}[self.kind]
        count = int(round(amount))
        return f"{count:,} {noun}{'' if count == 1 else 's'}"


class Standing(NamedTuple):
    """Where a counter stands after a granted reservation (for X-Ingate-Budget-Remaining and x-ratelimit-*):
    what is left, and in how many seconds it is whole again (a window's end, a period's end; None: only when
    requests in flight finish, or never for a budget without period)."""

    limit: float
    remaining: float
    reset: float | None


class Usage(NamedTuple):
    """A counter as pages show it: settled use (spend this period, or requests/tokens in the current window) and
    what requests in flight hold on top of it (their worst case, or their slots)."""

    used: float
    reserved: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not admitted: `counter` would go over its limit (`reason` LIMIT; `used` is what was
    already spent or held, `requested` what this request asked) or cannot be checked and fails closed (`reason`
    UNAVAILABLE). `retry_after` is how many seconds until it frees up, None when waiting cannot help (the
    request alone is larger than the limit, a budget without period is spent, the store is down)."""

    counter: Counter
    reason: str
    used: float = 0.0
    requested: float = 0.0
    retry_after: float | None = None

    @property
    def limit(self) -> float:
        return self.counter.limit

    @property
    def message(self) -> str:
        c = self.counter
        if self.reason == UNAVAILABLE:
            return (
                f"{c.label}: limits cannot be checked: Redis is unreachable, and this limit refuses requests "
                "until it is back."
            )
        if c.kind == SPEND:
            text = (
                f"{c.label} is used up: {c.describe(self.used)} of {c.describe(c.limit)} spent or reserved by "
                f"requests in flight, and this request may cost up to {c.describe(self.requested)}."
            )
        elif c.kind == CONCURRENCY:
            text = f"Concurrency limit reached: {c.label} allows {c.describe(c.limit)} at once."
        else:
            text = (
                f"Rate limit reached: {c.label} allows {c.describe(c.limit)} per {c.window:g}s; "
                f"{c.describe(self.used)} in the current window"
                + (f", and this request may use up to {c.describe(self.requested)}." if c.kind == TOKENS else ".")
            )
        if self.retry_after is not None:
            return f"{text} Retry after {math.ceil(self.retry_after)}s."
        if self.requested > c.limit:
            return f"{text} This request alone is larger than the limit."
        return text


@dataclass(slots=True, eq=False)
class Reservation:
    """What `reserve` answers. Granted when `refusal` is None: `standing` maps each checked counter's key to what
    is left; `unchecked` lists fail-open counters skipped because their store was unreachable. Hand it to
    `settle` when the request is over, whatever happened (a refused one settles to nothing)."""

    request_id: str
    counters: tuple[Counter, ...]
    cost: float
    tokens: int
    refusal: Refusal | None = None
    standing: dict[str, Standing] = field(default_factory=dict)
    unchecked: tuple[Counter, ...] = ()
    settled: bool = False

    @property
    def granted(self) -> bool:
        return self.refusal is None

    def claim_settle(self) -> bool:
        """True the first time a granted reservation is settled; settling again (or a refused one) does nothing."""
        if self.settled or self.refusal is not None:
            return False
        self.settled = True
        return True


def checked_counters(counters: Iterable[Counter], cost: float = 0.0, tokens: int = 0, ttl: float = 1.0):
    """The counters as a tuple, after refusing what only a caller's bug produces."""
    if not (math.isfinite(cost) and cost >= 0 and tokens >= 0):
        raise ValueError(f"cost and tokens must be finite and >= 0, not {cost!r} and {tokens!r}")
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"a reservation's ttl must be > 0 seconds, not {ttl!r}")
    counters = tuple(counters)
    if len({c.key for c in counters}) != len(counters):
        raise ValueError("a request's counters must have distinct keys: " + ", ".join(c.key for c in counters))
    return counters


def amount_for(counter: Counter, cost: float, tokens: int) -> float:
    """What a request takes from `counter`, given its cost and tokens (reserved or actual)."""
    if counter.kind == SPEND:
        return max(float(cost), 0.0)
    if counter.kind == TOKENS:
        return float(max(int(tokens), 0))
    return 1.0


def fits(in_use: float, amount: float, limit: float) -> bool:
    """Room for `amount` on top of `in_use`? A counter at its limit refuses even a request that asks nothing
    (an unpriced request on a spent budget)."""
    eps = 1e-9 * max(1.0, limit)
    return in_use + amount <= limit + eps and in_use < limit - eps


class Limiter:
    """The contract both backends keep. `reserve` is the only call a request awaits on its way in (one round trip
    to the shared store at most); `settle` returns at once and reports in the background (one more); `flush`
    waits for those reports (tests, shutdown)."""

    async def reserve(
        self, request_id: str, counters: Iterable[Counter], *, cost: float, tokens: int, ttl: float
    ) -> Reservation:
        raise NotImplementedError

    def settle(self, reservation: Reservation, *, cost: float, tokens: int) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        return None

    def snapshot(self, counters: Iterable[Counter]) -> dict[str, Usage]:
        raise NotImplementedError

    def load(self, totals: dict[str, tuple[Counter, float]] | Iterable[tuple[Counter, float]]) -> None:
        raise NotImplementedError

    def status(self) -> dict:
        raise NotImplementedError

    async def stop(self) -> None:
        await self.flush()


# --- in process ----------------------------------------------------------------------------------------------


class _Held:
    """A spend or concurrency counter: settled `used`, and holds by request id with their expiry."""

    __slots__ = ("used", "held", "holds", "expiries", "ends")

    def __init__(self, ends: float | None):
        self.used = 0.0
        self.held = 0.0
        self.holds: dict[str, tuple[float, float]] = {}  # request id -> (amount, expires at)
        self.expiries: list[tuple[float, str]] = []  # heap; stale entries are skipped
        self.ends = ends

    def sweep(self, now: float) -> None:
        while self.expiries and self.expiries[0][0] <= now:
            expires, rid = heapq.heappop(self.expiries)
            hold = self.holds.get(rid)
            if hold is not None and hold[1] == expires:
                self.release(rid)

    def release(self, rid: str) -> float | None:
        hold = self.holds.pop(rid, None)
        if hold is None:
            return None
        self.held = self.held - hold[0] if self.holds else 0.0  # no float drift once nothing is held
        return hold[0]

    def hold(self, rid: str, amount: float, expires: float) -> None:
        self.holds[rid] = (amount, expires)
        self.held += amount
        heapq.heappush(self.expiries, (expires, rid))

    def earliest(self, now: float) -> float:
        if not self.holds:
            return HOLD_RETRY
        return min(max(min(expires for _, expires in self.holds.values()) - now, 0.0), HOLD_RETRY)

    def idle(self, now: float) -> bool:
        return not self.holds and (self.ends is not None and now > self.ends + PERIOD_MARGIN or self.used == 0)


class _Window:
    """A requests or tokens counter: buckets of width window/BUCKETS, their running sum, and token holds (request
    id -> amount and bucket) so settling can replace a worst case by the actual count."""

    __slots__ = ("width", "lo", "buckets", "sum", "held", "holds")

    def __init__(self, window: float):
        self.width = window / BUCKETS
        self.lo: int | None = None
        self.buckets: dict[int, float] = {}
        self.sum = 0.0
        self.held = 0.0
        self.holds: dict[str, tuple[float, int]] = {}  # insertion order is bucket order

    def roll(self, now: float) -> int:
        current = math.floor(now / self.width)
        keep = current - BUCKETS  # the oldest bucket still (partly) inside the window
        if self.lo is None or self.lo < keep:
            for k in [k for k in self.buckets if k < keep]:
                self.sum -= self.buckets.pop(k)
            while self.holds:
                rid = next(iter(self.holds))
                amount, bucket = self.holds[rid]
                if bucket >= keep:
                    break
                del self.holds[rid]
                self.held -= amount
            if not self.buckets:
                self.sum = 0.0
            if not self.holds:
                self.held = 0.0
            self.lo = keep
        return current

    def add(self, bucket: int, amount: float) -> None:
        self.buckets[bucket] = self.buckets.get(bucket, 0.0) + amount
        self.sum += amount

    def release(self, rid: str) -> None:
        hold = self.holds.pop(rid, None)
        if hold is not None:  # a hold is dropped with its bucket, so its bucket is still here
            amount, bucket = hold
            self.buckets[bucket] -= amount
            self.sum -= amount
            self.held = self.held - amount if self.holds else 0.0

    def retry_after(self, now: float, amount: float, limit: float) -> float:
        freed = 0.0
        for k in sorted(self.buckets):
            freed += self.buckets[k]
            if fits(self.sum - freed, amount, limit):
                return max((k + BUCKETS + 1) * self.width - now, 0.0)
        return self.width

    def reset(self, now: float, current: int) -> float:
        return max((current + BUCKETS + 1) * self.width - now, 0.0)

    def idle(self, now: float) -> bool:
        self.roll(now)
        return not self.buckets and not self.holds


class MemoryLimiter(Limiter):
    """The in-process backend: the same semantics as `RedisLimiter`, counted in this process only (run one gateway
    process without Redis, as the embedded mode does). A lock guards each call (never held across an await), so
    threads reading `snapshot` and Ingate's own calls on other event loops are safe.

    Spend survives a restart through `load`: at start (or on a counter's first use) the caller reads the spend
    the database recorded for each budget's period on its own threads and hands it here."""

    # Idle counters (a period over, a window empty, no slot held) are dropped at most this often.
    SWEEP_EVERY = 60.0

    def __init__(self, *, clock=time.time):
        self.clock = clock
        self._cells: dict[str, _Held | _Window] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def _cell(self, counter: Counter) -> _Held | _Window:
        cell = self._cells.get(counter.key)
        if counter.kind in WINDOWED:
            if not isinstance(cell, _Window) or cell.width != counter.window / BUCKETS:  # new, or window edited
                cell = self._cells[counter.key] = _Window(counter.window)
        elif not isinstance(cell, _Held):
            cell = self._cells[counter.key] = _Held(counter.expires_at)
        return cell

    async def reserve(
        self, request_id: str, counters: Iterable[Counter], *, cost: float, tokens: int, ttl: float
    ) -> Reservation:
        counters = checked_counters(counters, cost, tokens, ttl)
        reservation = Reservation(request_id, counters, cost, tokens)
        now = self.clock()
        with self._lock:
            if now - self._swept > self.SWEEP_EVERY:
                self._sweep(now)
            staged = []
            for counter in counters:
                cell = self._cell(counter)
                amount = amount_for(counter, cost, tokens)
                if isinstance(cell, _Window):
                    current = cell.roll(now)
                    cell.release(request_id)  # a request id reserved again never counts twice
                    in_use = cell.sum
                else:
                    cell.sweep(now)
                    cell.release(request_id)
                    in_use = cell.used + cell.held
                if not fits(in_use, amount, counter.limit):
                    reservation.refusal = Refusal(
                        counter, LIMIT, in_use, amount, self._retry_after(counter, cell, now, amount)
                    )
                    return reservation
                staged.append((counter, cell, amount, current if isinstance(cell, _Window) else 0, in_use))
            for counter, cell, amount, current, in_use in staged:
                left = max(counter.limit - in_use - amount, 0.0)
                if isinstance(cell, _Window):
                    cell.add(current, amount)
                    if counter.kind == TOKENS:
                        cell.holds[request_id] = (amount, current)
                        cell.held += amount
                    reservation.standing[counter.key] = Standing(counter.limit, left, cell.reset(now, current))
                else:
                    cell.hold(request_id, amount, now + ttl)
                    reset = None
                    if counter.kind == SPEND and counter.expires_at is not None:
                        reset = max(counter.expires_at - now, 0.0)
                    reservation.standing[counter.key] = Standing(counter.limit, left, reset)
        return reservation

    @staticmethod
    def _retry_after(counter: Counter, cell, now: float, amount: float) -> float | None:
        if amount > counter.limit:
            return None
        if isinstance(cell, _Window):
            return cell.retry_after(now, amount, counter.limit)
        if counter.kind == SPEND and not fits(cell.used, amount, counter.limit):
            # Spent even without the holds: only the period's end frees it.
            return None if counter.expires_at is None else max(counter.expires_at - now, 0.0)
        return cell.earliest(now)

    def settle(self, reservation: Reservation, *, cost: float, tokens: int) -> None:
        checked_counters((), cost, tokens)
        if not reservation.claim_settle():
            return
        now = self.clock()
        rid = reservation.request_id
        with self._lock:
            for counter in reservation.counters:
                if counter.kind == REQUESTS:
                    continue
                cell = self._cell(counter)
                if isinstance(cell, _Window):
                    current = cell.roll(now)
                    cell.release(rid)
                    cell.add(current, amount_for(counter, cost, tokens))
                else:
                    cell.release(rid)
                    if counter.kind == SPEND:
                        cell.used += amount_for(counter, cost, tokens)

    def snapshot(self, counters: Iterable[Counter]) -> dict[str, Usage]:
        now = self.clock()
        result = {}
        with self._lock:
            for counter in counters:
                cell = self._cells.get(counter.key)
                if cell is None:
                    result[counter.key] = Usage(0.0, 0.0)
                elif isinstance(cell, _Window):
                    cell.roll(now)
                    result[counter.key] = Usage(cell.sum - cell.held, cell.held)
                else:
                    cell.sweep(now)
                    result[counter.key] = Usage(cell.used, cell.held)
        return result

    def load(self, totals) -> None:
        """Seed spend counters with what the database recorded: `totals` maps a key to (counter, spend), or is an
        iterable of (counter, spend). Each takes the larger of the two, so a total read before this process's
        latest settles reached the database never lowers a count, and a restart starts from the database."""
        items = totals.values() if isinstance(totals, dict) else totals
        with self._lock:
            for counter, spent in items:
                if counter.kind != SPEND:
                    raise ValueError(f"only spend counters are loaded, not {counter.kind} ({counter.key})")
                cell = self._cell(counter)
                cell.used = max(cell.used, float(spent))

    def status(self) -> dict:
        return {"backend": "memory", "redis": None, "since": None}

    def _sweep(self, now: float) -> None:
        self._swept = now
        for key in [key for key, cell in self._cells.items() if cell.idle(now)]:
            del self._cells[key]
