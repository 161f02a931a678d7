"""Target health for routing: a circuit breaker per target (org, provider, model, credential), answered from
process memory on the request path, and shared by every gateway process through Redis when it is configured.

After `threshold` failures within `window` seconds a target is open: routing skips it for `cooldown` seconds,
then exactly one request (the probe) may try it. A good probe closes the circuit, a bad one opens it for another
cool-down. Reads (`is_open`, `probe_due`) never do I/O. With Redis, `record_failure` and a closing
`record_success` update local state at once and report in a background task (one round trip, one script);
a success while the circuit is closed costs nothing. Opens and closes reach the other processes by pub/sub;
claiming the probe is the only call a request awaits (once per cool-down, in the process that wants it).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from .. import invalidation

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

CHANNEL = "ingate:proxy:health"
PREFIX = "ingate:health:"
# How long Redis remembers that a circuit was opened once its cool-down is over and no probe has closed it yet
# (the routes page shows it half-open meanwhile). A probe that succeeds deletes it at once.
HALF_OPEN_MEMORY = 3600.0
# Background reports waiting for Redis beyond this are dropped (and said so): a Redis that stalls must not
# pile up tasks on the event loop. Local state is already up to date.
MAX_PENDING_REPORTS = 256


class TargetKey(NamedTuple):
    """Who a circuit belongs to. The org is part of it: no counter is ever shared between orgs."""

    org_id: str
    provider: str
    model: str
    credential: str

    def label(self) -> str:
        return f"{self.provider}/{self.model} ({self.credential})"


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong last on a target: an error kind (connect, timeout, first_byte_timeout, cut) or `status`
    with the upstream's HTTP status."""

    kind: str
    status: int | None = None

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else self.kind.replace("_", " ")


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """One target as the routes page shows it."""

    key: TargetKey
    state: str  # CLOSED, OPEN or HALF_OPEN
    failures: int  # within the current window
    ewma_ttfb_ms: float | None  # this process's moving average of the time to first byte
    opened_until: float | None  # wall-clock time (epoch seconds) the cool-down ends, while open
    last_failure: Failure | None


@dataclass(slots=True)
class _State:
    failures: collections.deque = field(default_factory=collections.deque)  # monotonic times, within the window
    opened_until: float = 0.0  # monotonic; 0 while closed. Past it: half-open
    probe_until: float = 0.0  # monotonic: a probe is in flight (here or in another process) until then
    ewma: float | None = None
    last: Failure | None = None


class Health:
    """The in-process circuit breakers (no Redis: each process judges on its own traffic). `RedisHealth` shares
    them across processes with the same interface."""

    def __init__(
        self,
        *,
        threshold: int = 5,
        window: float = 30.0,
        cooldown: float = 30.0,
        probe_timeout: float = 30.0,
        ewma_alpha: float = 0.2,
        clock=time.monotonic,
        wall=time.time,
    ):
        if threshold < 1 or window <= 0 or cooldown <= 0 or probe_timeout <= 0 or not 0 < ewma_alpha <= 1:
            raise ValueError(
                "Health needs threshold >= 1, a positive window, cooldown and probe_timeout, and 0 < ewma_alpha <= 1."
            )
        self.threshold, self.window, self.cooldown = threshold, window, cooldown
        self.probe_timeout, self.ewma_alpha = probe_timeout, ewma_alpha
        self.clock, self.wall = clock, wall
        self._states: dict[TargetKey, _State] = {}
        # Told of each transition a circuit makes (a dict of plain data), once across processes: the proxy sets
        # it to its record sink's `note`, which must not block (webhooks turn the notes into events off the loop).
        self.announce: Callable[[dict], None] | None = None
        # The server's loop and an eval run's loop (another thread) may both report on one target.
        self._lock = threading.Lock()

    # --- reads: process memory only, for the request path ------------------------------------------

    def is_open(self, key: TargetKey) -> bool:
        """Whether routing should not send to `key` as an ordinary request (open, or half-open)."""
        state = self._states.get(key)
        return state is not None and state.opened_until != 0.0

    def probe_due(self, key: TargetKey) -> bool:
        """Whether the cool-down is over and no probe is in flight that this process knows of: the next request
        may try it, after `claim_probe`."""
        state = self._states.get(key)
        if state is None or not state.opened_until:
            return False
        now = self.clock()
        return now >= state.opened_until and now >= state.probe_until

    def retry_in(self, key: TargetKey) -> float:
        """Seconds until `key` may be tried again: 0 when closed or due for its probe."""
        state = self._states.get(key)
        if state is None or not state.opened_until:
            return 0.0
        return max(0.0, state.opened_until - self.clock(), state.probe_until - self.clock())

    def ttfb(self, key: TargetKey) -> float | None:
        """This process's moving average of the time to first byte (ms), None before the first success."""
        state = self._states.get(key)
        return None if state is None else state.ewma

    def last_failure(self, key: TargetKey) -> Failure | None:
        state = self._states.get(key)
        return None if state is None else state.last

    def state(self, key: TargetKey) -> str:
        state = self._states.get(key)
        if state is None or not state.opened_until:
            return CLOSED
        return OPEN if self.clock() < state.opened_until else HALF_OPEN

    # --- the probe -----------------------------------------------------------------------------------

    async def claim_probe(self, key: TargetKey) -> bool:
        """Ask to send the probe to a target whose cool-down is over. True: send it (this request is the probe,
        or the circuit turned out closed meanwhile); False: another request has it, try another target."""
        now = self.clock()
        with self._lock:
            state = self._states.get(key)
            if state is None or not state.opened_until:
                return True
            if now < state.opened_until or now < state.probe_until:
                return False
            state.probe_until = now + self.probe_timeout
        return await self._claim_shared(key)

    async def _claim_shared(self, key: TargetKey) -> bool:
        return True

    # --- outcomes ------------------------------------------------------------------------------------

    def record_success(self, key: TargetKey, ttfb_ms: float | None = None) -> None:
        """An answer started (a status routing does not move on from). Closes a half-open circuit."""
        now = self.clock()
        with self._lock:
            state = self._states.get(key)
            if state is None:
                if ttfb_ms is None:
                    return
                state = self._states[key] = _State()
            if ttfb_ms is not None:
                state.ewma = ttfb_ms if state.ewma is None else state.ewma + self.ewma_alpha * (ttfb_ms - state.ewma)
            # While fully open, a success is a request sent before the circuit opened: it proves little.
            closing = bool(state.opened_until) and now >= state.opened_until
            if closing:
                state.opened_until = state.probe_until = 0.0
                state.failures.clear()
        if closing:
            log.info("Routing target %s recovered: circuit closed", key.label())
            self._report_close(key)

    def record_failure(self, key: TargetKey, kind: str, *, status: int | None = None) -> None:
        """A failure that says something about the target (see retry.counts_against_health): counts towards
        opening the circuit, and re-opens a half-open one."""
        now = self.clock()
        opened = fresh = False
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = _State()
            state.last = Failure(kind, status)
            if state.opened_until:
                if now < state.opened_until:
                    return  # sent before the circuit opened; it is open already
                self._open(state, now)
                opened = True
            else:
                failures = state.failures
                failures.append(now)
                while failures and failures[0] <= now - self.window:
                    failures.popleft()
                if len(failures) >= self.threshold:
                    self._open(state, now)
                    opened = fresh = True  # closed until now: the target went down (a failed probe is not news)
        if opened:
            log.warning(
                "Routing target %s is failing (%s): circuit open for %gs",
                key.label(),
                state.last.describe(),
                self.cooldown,
            )
        self._report_failure(key, state.last, opened, fresh)

    def _open(self, state: _State, now: float, cooldown: float | None = None) -> None:
        state.opened_until = now + (self.cooldown if cooldown is None else cooldown)
        state.probe_until = 0.0
        state.failures.clear()

    def _report_failure(self, key: TargetKey, failure: Failure, opened: bool, fresh: bool = False) -> None:
        if fresh:
            self._announce("target_down", key, failure)

    def _report_close(self, key: TargetKey) -> None:
        self._announce("target_up", key, None)

    def _announce(self, kind: str, key: TargetKey, failure: Failure | None) -> None:
        if self.announce is None:
            return
        note = {
            "kind": kind,
            "org_id": key.org_id,
            "provider": key.provider,
            "model": key.model,
            "credential": key.credential,
            "failure": failure.describe() if failure is not None else "",
            "cooldown": self.cooldown if kind == "target_down" else None,
        }
        try:
            self.announce(note)
        except Exception:  # a sink's trouble must not reach the request
            log.exception("Could not hand over a circuit transition of %s", key.label())

    # --- the routes page -----------------------------------------------------------------------------

    def snapshot(self, org_id) -> list[TargetHealth]:
        """Every target of `org_id` this process has heard of (a target never heard of is closed)."""
        org_id = str(org_id)
        return [self._local_health(key) for key in list(self._states) if key.org_id == org_id]

    def _local_health(self, key: TargetKey) -> TargetHealth:
        state = self._states.get(key) or _State()
        now = self.clock()
        failures = sum(1 for at in list(state.failures) if at > now - self.window)
        current = CLOSED if not state.opened_until else OPEN if now < state.opened_until else HALF_OPEN
        until = self.wall() + (state.opened_until - now) if current == OPEN else None
        return TargetHealth(key, current, failures, state.ewma, until, state.last)

    # --- lifecycle (nothing to do without Redis) -----------------------------------------------------

    def start(self) -> None:
        """Call in the serving event loop once it runs (ProxyApp._start)."""

    async def stop(self) -> None:
        """Call before the serving loop ends."""

    async def flush(self) -> None:
        """Wait for the background reports of the running loop (tests; shutdown)."""

    def invalidate(self, kind: str, value: str) -> None:
        """A message from another process (RedisHealth)."""


# --- Redis ---------------------------------------------------------------------------------------------

# KEYS: fails (sorted set of failure times), open (value: end of the cool-down, Redis time in ms), probe, org
# index. ARGV: member, window_ms, threshold, cooldown_ms, memory_ms, force_open, channel, open message, key.
# Redis's own clock (TIME) times everything, so gateways whose clocks disagree still agree on a window.
_FAIL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(redis.call('GET', KEYS[2]) or '0')
if ends > now then return {'open', ends - now} end
if ends == 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('SADD', KEYS[4], ARGV[9])
  redis.call('PEXPIRE', KEYS[4], 86400000)
  local count = redis.call('ZCARD', KEYS[1])
  if count < tonumber(ARGV[3]) and ARGV[6] == '0' then return {'count', count} end
end
local cooldown = tonumber(ARGV[4])
redis.call('SET', KEYS[2], now + cooldown, 'PX', cooldown + tonumber(ARGV[5]))
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('PUBLISH', ARGV[7], ARGV[8])
if ends == 0 then return {'opened', cooldown} end
return {'reopened', cooldown}
"""

# KEYS: open, fails, probe. ARGV: channel, closed message.
_CLOSE = """
local ends = redis.call('GET', KEYS[1])
if not ends then return {'closed', 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ends) > now then return {'open', tonumber(ends) - now} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {'closed', 1}
"""

# KEYS: open, probe. ARGV: probe_ms.
_CLAIM = """
local ends = tonumber(redis.call('GET', KEYS[1]) or '0')
if ends == 0 then return {'closed', 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ends > now then return {'open', ends - now} end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return {'ok', 0} end
return {'taken', redis.call('PTTL', KEYS[2])}
"""


def _ident(key: TargetKey) -> str:
    return json.dumps(list(key), separators=(",", ":"))


def _redis_keys(key: TargetKey) -> tuple[str, str, str, str]:
    ident = _ident(key)
    return f"{PREFIX}{ident}:fails", f"{PREFIX}{ident}:open", f"{PREFIX}{ident}:probe", f"{PREFIX}org:{key.org_id}"


class _Client:
    """A Redis client and its scripts, bound to one event loop (redis.asyncio connections are)."""

    def __init__(self, url: str):
        import redis.asyncio as aioredis

        self.redis = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.fail = self.redis.register_script(_FAIL)
        self.close = self.redis.register_script(_CLOSE)
        self.claim = self.redis.register_script(_CLAIM)


class RedisHealth(Health):
    """Circuit breakers shared by every gateway process on `redis_url`. Local state answers the request path and
    is updated at once; Redis counts failures across processes, opens the circuit for all of them (pub/sub,
    through `invalidation.listen` on a channel of its own) and hands the probe to exactly one request.

    If Redis is unreachable each process goes on judging on its own traffic, as `Health` does."""

    def __init__(self, redis_url: str, **tunables):
        super().__init__(**tunables)
        self.redis_url = redis_url
        self.channel = invalidation.channel(redis_url, CHANNEL)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Client] = weakref.WeakKeyDictionary()
        self._pending: set[asyncio.Task] = set()
        self._listener: asyncio.Task | None = None
        self._members = itertools.count()
        self._member_prefix = f"{os.getpid()}-{id(self):x}-"
        self._failing_since: float | None = None  # Redis unreachable since (monotonic), for one warning per outage

    def _client(self) -> _Client:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = _Client(self.redis_url)
        return client

    # --- reporting, off the request's critical path ---------------------------------------------------

    def _spawn(self, coro) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop (a sync caller): local state is all we can update
            coro.close()
            return
        if len(self._pending) >= MAX_PENDING_REPORTS:
            coro.close()
            self._redis_failed(RuntimeError(f"{MAX_PENDING_REPORTS} health reports already waiting for Redis"))
            return
        task = loop.create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _report_failure(self, key: TargetKey, failure: Failure, opened: bool, fresh: bool = False) -> None:
        self._spawn(self._send_failure(key, failure, opened, fresh))

    def _report_close(self, key: TargetKey) -> None:
        self._spawn(self._send_close(key))

    async def _send_failure(self, key: TargetKey, failure: Failure, opened: bool, fresh: bool = False) -> None:
        fails, open_, probe, index = _redis_keys(key)
        message = "open:" + json.dumps(
            {"k": list(key), "ms": round(self.cooldown * 1000), "f": [failure.kind, failure.status]},
            separators=(",", ":"),
        )
        try:
            verdict, ms = await self._client().fail(
                keys=[fails, open_, probe, index],
                args=[
                    f"{self._member_prefix}{next(self._members)}",
                    round(self.window * 1000),
                    self.threshold,
                    round(self.cooldown * 1000),
                    round(HALF_OPEN_MEMORY * 1000),
                    "1" if opened else "0",
                    self.channel,
                    message,
                    _ident(key),
                ],
            )
        except Exception as exc:  # noqa: BLE001  (Redis down: local state already judged this failure)
            self._redis_failed(exc)
            if fresh:  # each process judges alone now, and says so alone
                self._announce("target_down", key, failure)
            return
        self._redis_ok()
        if verdict == b"opened":  # this report opened the circuit for every process: announced here alone
            self._announce("target_down", key, failure)
        if verdict in (b"open", b"opened", b"reopened"):
            self._learn_open(key, ms / 1000, failure)

    async def _send_close(self, key: TargetKey) -> None:
        fails, open_, probe, _ = _redis_keys(key)
        message = "closed:" + json.dumps({"k": list(key)}, separators=(",", ":"))
        try:
            verdict, ms = await self._client().close(keys=[open_, fails, probe], args=[self.channel, message])
        except Exception as exc:  # noqa: BLE001
            self._redis_failed(exc)
            self._announce("target_up", key, None)
            return
        self._redis_ok()
        if verdict == b"closed" and ms == 1:  # this process's probe closed it for everyone
            self._announce("target_up", key, None)
        if verdict == b"open":  # another process's probe failed meanwhile: it stays open for everyone
            self._learn_open(key, ms / 1000, None)

    async def _claim_shared(self, key: TargetKey) -> bool:
        _, open_, probe, _ = _redis_keys(key)
        try:
            verdict, ms = await self._client().claim(keys=[open_, probe], args=[round(self.probe_timeout * 1000)])
        except Exception as exc:  # noqa: BLE001  (without Redis, this process decides alone)
            self._redis_failed(exc)
            return True
        self._redis_ok()
        if verdict == b"ok":
            return True
        now = self.clock()
        with self._lock:
            state = self._states.setdefault(key, _State())
            if verdict == b"closed":  # closed by another process; the message is on its way
                state.opened_until = state.probe_until = 0.0
                return True
            if verdict == b"open":
                self._open(state, now, ms / 1000)
            else:  # taken: another process sends the probe; wait for its verdict (or its lease to end)
                state.probe_until = now + max(ms, 0) / 1000
        return False

    def _learn_open(self, key: TargetKey, seconds: float, failure: Failure | None) -> None:
        now = self.clock()
        with self._lock:
            state = self._states.setdefault(key, _State())
            self._open(state, now, seconds)
            if failure is not None:
                state.last = failure

    def _redis_failed(self, exc: Exception) -> None:
        if self._failing_since is None:
            self._failing_since = self.clock()
            log.warning("Routing health cannot reach Redis (%s); each process judges targets on its own", exc)

    def _redis_ok(self) -> None:
        if self._failing_since is not None:
            self._failing_since = None
            log.warning("Routing health reaches Redis again; circuits are shared across processes")

    # --- other processes' news ------------------------------------------------------------------------

    def invalidate(self, kind: str, value: str) -> None:
        """Apply an `open:` or `closed:` message (anything else, such as the listener's "all", is ignored: a
        missed open is learned from the next failure's report, a missed close from the next probe claim)."""
        if kind not in ("open", "closed"):
            return
        try:
            data = json.loads(value)
            key = TargetKey(*(str(part) for part in data["k"]))
            if kind == "open":
                failure = Failure(data["f"][0], data["f"][1]) if data.get("f") else None
                self._learn_open(key, data["ms"] / 1000, failure)
                return
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("Ignoring a malformed routing health message %r: %s", f"{kind}:{value}"[:200], exc)
            return
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                state.opened_until = state.probe_until = 0.0
                state.failures.clear()

    def start(self) -> None:
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                invalidation.listen(self.redis_url, self.invalidate, base=CHANNEL)
            )

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self.flush()
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.redis.aclose()

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        mine = [task for task in self._pending if task.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)

    # --- the routes page -----------------------------------------------------------------------------

    def snapshot(self, org_id) -> list[TargetHealth]:
        """Every target of `org_id` that failed lately in any process, as Redis has it (one pipelined round
        trip, synchronous: for the routes page, never the event loop). The moving average of the time to first
        byte is this process's own."""
        import redis

        org_id = str(org_id)
        client = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            idents = {member.decode() for member in client.smembers(f"{PREFIX}org:{org_id}")}
            keys = [key for key in list(self._states) if key.org_id == org_id]
            keys += [key for key in (TargetKey(*json.loads(ident)) for ident in idents) if key not in keys]
            pipe = client.pipeline(transaction=False)
            pipe.time()
            for key in keys:
                fails, open_, probe, _ = _redis_keys(key)
                pipe.zrange(fails, 0, -1, withscores=True)
                pipe.get(open_)
            replies = pipe.execute()
        except Exception as exc:  # noqa: BLE001  (the page shows what this process knows)
            log.warning("Routing health snapshot could not read Redis (%s); showing this process's view", exc)
            return super().snapshot(org_id)
        finally:
            client.close()
        seconds, micros = replies[0]
        now_ms = seconds * 1000 + micros // 1000
        result = []
        for index, key in enumerate(keys):
            failures, ends = replies[1 + 2 * index], replies[2 + 2 * index]
            local = self._local_health(key)
            recent = sum(1 for _, at in failures if at > now_ms - self.window * 1000)
            if ends is None:
                state, until = CLOSED, None
            elif int(ends) > now_ms:
                state, until = OPEN, self.wall() + (int(ends) - now_ms) / 1000
            else:
                state, until = HALF_OPEN, None
            result.append(TargetHealth(key, state, recent, local.ewma_ttfb_ms, until, local.last_failure))
        return result


def health_for(redis_url: str, **tunables) -> Health:
    """Shared circuit breakers with Redis, in-process ones without (tunables: threshold, window, cooldown,
    probe_timeout, ewma_alpha)."""
    return RedisHealth(redis_url, **tunables) if redis_url else Health(**tunables)
