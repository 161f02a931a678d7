"""The shared backend for budgets and rate limits: every counter lives in Redis, so all gateway processes count
together. A request's counters are reserved by one Lua script (one EVALSHA: one round trip, all or nothing, on
Redis's clock) and settled by another, sent from a background task so no answer waits for it. The request path
speaks to Redis through proxy/resp.py (pipelined, cheap per command); pages and seeding, on threads, use redis-py.

Per counter key K there are two Redis keys: the hash `ingate:limits:K` (settled `used`, held total `held`, the
holds `r:<request id>`; for windows `lo`, `sum` and buckets `b:<n>`) and the sorted set `ingate:limits:K:exp`
(request ids by hold expiry, or by bucket for token holds), which each script sweeps first so expired holds never
count. Everything carries a TTL: a budget its period's end plus PERIOD_MARGIN (a budget without period keeps its
spend), windows and slots a little longer than they can matter. Scripts touch several keys, so the counters of a
request must live on one Redis (no Cluster).

Redis unreachable: each counter's `fail_open` decides (an open one is skipped, a closed one refuses with
reason UNAVAILABLE). The outage is logged once (and its end), `status()` reports it for /ingate/health, and
Redis is tried again at most every `retry_interval` seconds meanwhile, so requests do not each wait on it. Settles
that fail during an outage are lost from Redis (the request records still hold the spend; `load` reconciles).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterable

from ..resp import Resp, Script
from .counters import (
    BUCKETS,
    CONCURRENCY,
    HOLD_RETRY,
    LIMIT,
    PERIOD_MARGIN,
    REQUESTS,
    SLACK,
    SPEND,
    UNAVAILABLE,
    Counter,
    Limiter,
    Refusal,
    Reservation,
    Standing,
    Usage,
    amount_for,
    checked_counters,
)

log = logging.getLogger(__name__)

PREFIX = "ingate:limits:"
_CODE = {SPEND: "s", REQUESTS: "r", "tokens": "t", CONCURRENCY: "c"}
# Settles waiting for Redis beyond this are dropped (and said so): a Redis that stalls must not pile up tasks.
MAX_PENDING_SETTLES = 10_000

# Shared by every script. ARGV: request id, ttl ms, then the constants, then five per counter (kind, limit,
# amount, window ms, period end ms or 0). KEYS: two per counter (hash, expiry index).
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid, ttl = ARGV[1], tonumber(ARGV[2])
local B, MARGIN, SLACK, HOLD_RETRY = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local n = #KEYS / 2

local function num(v) return tonumber(v) or 0 end
local function fmt(k) return string.format('%d', k) end

local function counter(i)
  local a = 6 + (i - 1) * 5
  return {h = KEYS[2 * i - 1], z = KEYS[2 * i], kind = ARGV[a + 1], limit = tonumber(ARGV[a + 2]),
          amount_s = ARGV[a + 3], amount = tonumber(ARGV[a + 3]), window = tonumber(ARGV[a + 4]),
          ends = tonumber(ARGV[a + 5])}
end

local function fits(in_use, amount, limit)
  local eps = 1e-9 * math.max(1, limit)
  return in_use + amount <= limit + eps and in_use < limit - eps
end

local function keep_ttl(key, ms)
  local left = redis.call('PTTL', key)
  if left >= -1 and left < ms then redis.call('PEXPIRE', key, math.ceil(ms)) end
end

-- spend and concurrency: holds by request id, amount in the hash, expiry in the sorted set
local function release_hold(c, r)
  local a = redis.call('HGET', c.h, 'r:' .. r)
  if not a then return end
  redis.call('HDEL', c.h, 'r:' .. r)
  redis.call('ZREM', c.z, r)
  if redis.call('ZCARD', c.z) == 0 then
    redis.call('HSET', c.h, 'held', 0)  -- nothing held: no float drift survives
  else
    redis.call('HINCRBYFLOAT', c.h, 'held', -tonumber(a))
  end
end

local function sweep(c)
  local gone = redis.call('ZRANGEBYSCORE', c.z, '-inf', now)
  for _, r in ipairs(gone) do release_hold(c, r) end
  local v = redis.call('HMGET', c.h, 'used', 'held')
  c.used, c.held = num(v[1]), math.max(num(v[2]), 0)
  c.in_use = c.used + c.held
end

-- requests and tokens: buckets of width window/B; those older than the window are dropped with their holds
local function roll(c)
  c.w = c.window / B
  c.cur = math.floor(now / c.w)
  local keep = c.cur - B
  local v = redis.call('HMGET', c.h, 'lo', 'sum', 'held')
  local lo = tonumber(v[1])
  c.sum, c.held = num(v[2]), num(v[3])
  if lo == nil then
    c.lo, c.fresh = keep, true
    return
  end
  c.lo = lo
  if lo >= keep then return end
  for k = lo, math.min(keep - 1, lo + B) do
    local b = redis.call('HGET', c.h, 'b:' .. fmt(k))
    if b then
      c.sum = c.sum - tonumber(b)
      redis.call('HDEL', c.h, 'b:' .. fmt(k))
    end
  end
  local gone = redis.call('ZRANGEBYSCORE', c.z, '-inf', keep - 1)
  for _, r in ipairs(gone) do
    local rec = redis.call('HGET', c.h, 'r:' .. r)
    if rec then
      c.held = c.held - tonumber(string.match(rec, '^[^|]+'))
      redis.call('HDEL', c.h, 'r:' .. r)
    end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', c.z, '-inf', keep - 1) end
  if redis.call('ZCARD', c.z) == 0 then c.held = 0 end
  if c.sum < 0 then c.sum = 0 end
  c.lo = keep
  redis.call('HSET', c.h, 'lo', fmt(keep), 'sum', c.sum, 'held', c.held)
end

local function add(c, amount)
  if c.fresh then
    redis.call('HSET', c.h, 'lo', fmt(c.lo))
    c.fresh = false
  end
  if amount == 0 then return end
  redis.call('HINCRBY', c.h, 'b:' .. fmt(c.cur), amount)
  redis.call('HINCRBY', c.h, 'sum', amount)
  c.sum = c.sum + amount
end

local function release_tokens(c, r)
  local rec = redis.call('HGET', c.h, 'r:' .. r)
  if not rec then return end
  local amount, k = string.match(rec, '^([^|]+)|(.+)$')
  amount = tonumber(amount)
  redis.call('HDEL', c.h, 'r:' .. r)
  redis.call('ZREM', c.z, r)
  redis.call('HINCRBY', c.h, 'b:' .. k, -amount)
  redis.call('HINCRBY', c.h, 'sum', -amount)
  redis.call('HINCRBY', c.h, 'held', -amount)
  c.sum, c.held = c.sum - amount, c.held - amount
end
"""

_RESERVE = (
    _COMMON
    + """
local function retry_ms(c)
  if c.amount > c.limit then return -1 end
  if c.kind == 's' or c.kind == 'c' then
    if c.kind == 's' and not fits(c.used, c.amount, c.limit) then
      if c.ends > 0 then return math.max(c.ends - now, 0) end
      return -1
    end
    local first = redis.call('ZRANGE', c.z, 0, 0, 'WITHSCORES')
    if #first == 0 then return HOLD_RETRY end
    return math.min(math.max(tonumber(first[2]) - now, 0), HOLD_RETRY)
  end
  local freed = 0
  for k = c.lo, c.cur do
    local b = redis.call('HGET', c.h, 'b:' .. fmt(k))
    if b then
      freed = freed + tonumber(b)
      if fits(c.sum - freed, c.amount, c.limit) then return math.max((k + B + 1) * c.w - now, 0) end
    end
  end
  return c.w
end

local cs = {}
for i = 1, n do
  local c = counter(i)
  if c.kind == 's' or c.kind == 'c' then
    release_hold(c, rid)  -- a request id reserved again never counts twice
    sweep(c)
  else
    roll(c)
    if c.kind == 't' then release_tokens(c, rid) end
    c.in_use = c.sum
  end
  if not fits(c.in_use, c.amount, c.limit) then
    return {0, i, tostring(c.in_use), math.ceil(retry_ms(c))}
  end
  cs[i] = c
end

local out = {1}
for i = 1, n do
  local c = cs[i]
  local reset = -1
  if c.kind == 's' or c.kind == 'c' then
    redis.call('HSET', c.h, 'r:' .. rid, c.amount_s)
    redis.call('HINCRBYFLOAT', c.h, 'held', c.amount_s)
    redis.call('ZADD', c.z, now + ttl, rid)
    keep_ttl(c.z, ttl + SLACK)
    if c.kind == 'c' then
      keep_ttl(c.h, ttl + SLACK)
    elseif c.ends > 0 then
      redis.call('PEXPIREAT', c.h, math.max(c.ends + MARGIN, now + ttl + SLACK))
      reset = math.max(c.ends - now, 0)
    end
  else
    add(c, c.amount)
    if c.kind == 't' then
      redis.call('HSET', c.h, 'r:' .. rid, c.amount_s .. '|' .. fmt(c.cur))
      redis.call('HINCRBY', c.h, 'held', c.amount)
      redis.call('ZADD', c.z, c.cur, rid)
      redis.call('PEXPIRE', c.z, math.ceil(c.window + c.w + SLACK))
    end
    redis.call('PEXPIRE', c.h, math.ceil(c.window + c.w + SLACK))
    reset = (c.cur + B + 1) * c.w - now
  end
  out[#out + 1] = tostring(math.max(c.limit - c.in_use - c.amount, 0))
  out[#out + 1] = math.ceil(reset)
end
return out
"""
)

_SETTLE = (
    _COMMON
    + """
for i = 1, n do
  local c = counter(i)
  if c.kind == 's' then
    release_hold(c, rid)
    if c.amount > 0 then
      redis.call('HINCRBYFLOAT', c.h, 'used', c.amount_s)
      if c.ends > 0 then redis.call('PEXPIREAT', c.h, math.max(c.ends + MARGIN, now + SLACK)) end
    end
  elseif c.kind == 'c' then
    release_hold(c, rid)
  elseif c.kind == 't' then
    roll(c)
    release_tokens(c, rid)
    if c.amount > 0 then
      add(c, c.amount)
      redis.call('PEXPIRE', c.h, math.ceil(c.window + c.w + SLACK))
    end
  end
end
return 1
"""
)

_PEEK = (
    _COMMON
    + """
local out = {}
for i = 1, n do
  local c = counter(i)
  if c.kind == 's' or c.kind == 'c' then
    sweep(c)
    out[#out + 1] = tostring(c.used)
  else
    roll(c)
    out[#out + 1] = tostring(math.max(c.sum - c.held, 0))
  end
  out[#out + 1] = tostring(math.max(c.held, 0))
end
return out
"""
)

# KEYS: spend hashes; ARGV: margin ms, then (total, period end ms or 0) per key. Keeps the larger spend.
_LOAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000
for i = 1, #KEYS do
  local total, ends = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local used = tonumber(redis.call('HGET', KEYS[i], 'used') or '0')
  if total > used then
    redis.call('HSET', KEYS[i], 'used', ARGV[2 * i])
    if ends > 0 then redis.call('PEXPIREAT', KEYS[i], math.max(ends + tonumber(ARGV[1]), now + 60000)) end
  end
end
return 1
"""


RESERVE, SETTLE, PEEK, LOAD = Script(_RESERVE), Script(_SETTLE), Script(_PEEK), Script(_LOAD)


def _keys(counters: Iterable[Counter]) -> list[str]:
    keys = []
    for counter in counters:
        keys += (PREFIX + counter.key, PREFIX + counter.key + ":exp")
    return keys


def _args(request_id: str, ttl: float, counters: Iterable[Counter], cost: float, tokens: int) -> list:
    args = [request_id, round(ttl * 1000), BUCKETS, round(PERIOD_MARGIN * 1000), round(SLACK * 1000)]
    args.append(round(HOLD_RETRY * 1000))
    for c in counters:
        amount = amount_for(c, cost, tokens)
        args += (
            _CODE[c.kind],
            repr(float(c.limit)),
            repr(amount) if c.kind == SPEND else str(int(amount)),
            round(c.window * 1000),
            round(c.expires_at * 1000) if c.expires_at is not None else 0,
        )
    return args


class RedisLimiter(Limiter):
    """Counters shared by every gateway process on `redis_url` (see the module docstring), through proxy/resp.py:
    pipelined on `connections` sockets per event loop. `timeout` bounds each round trip (a Redis that does not
    answer within it is an outage); while Redis is unreachable it is tried again at most every `retry_interval`
    seconds."""

    def __init__(self, redis_url: str, *, timeout: float = 2.0, retry_interval: float = 1.0, connections: int = 1):
        Resp(redis_url)  # a URL it cannot use is a configuration error, said at start rather than as an outage
        self.redis_url = redis_url
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.connections = connections
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Resp] = weakref.WeakKeyDictionary()
        self._pending: set[asyncio.Task] = set()
        self._down_since: float | None = None  # wall clock, for status()
        self._up_since: float | None = None
        self._retry_at = 0.0  # monotonic: no Redis call before this while it is down

    def _client(self) -> Resp:
        """This event loop's client (the gateway's loop, and the loops of Ingate's own calls)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = Resp(self.redis_url, timeout=self.timeout, connections=self.connections)
        return client

    # --- the request path ---------------------------------------------------------------------------------

    async def reserve(
        self, request_id: str, counters: Iterable[Counter], *, cost: float, tokens: int, ttl: float
    ) -> Reservation:
        counters = checked_counters(counters, cost, tokens, ttl)
        reservation = Reservation(request_id, counters, cost, tokens)
        if not counters:
            return reservation
        if self._down_since is not None and time.monotonic() < self._retry_at:
            return self._without_redis(reservation)
        try:
            reply = await self._client().evalsha(
                RESERVE, _keys(counters), _args(request_id, ttl, counters, cost, tokens)
            )
        except Exception as exc:  # noqa: BLE001  (whatever Redis does, each counter's fail_open decides)
            self._failed(exc)
            return self._without_redis(reservation)
        self._ok()
        if int(reply[0]) == 0:
            counter = counters[int(reply[1]) - 1]
            retry_ms = int(reply[3])
            reservation.refusal = Refusal(
                counter,
                LIMIT,
                float(reply[2]),
                amount_for(counter, cost, tokens),
                None if retry_ms < 0 else retry_ms / 1000,
            )
            return reservation
        for index, counter in enumerate(counters):
            remaining, reset_ms = float(reply[1 + 2 * index]), int(reply[2 + 2 * index])
            reservation.standing[counter.key] = Standing(
                counter.limit, remaining, None if reset_ms < 0 else reset_ms / 1000
            )
        return reservation

    def _without_redis(self, reservation: Reservation) -> Reservation:
        closed = [c for c in reservation.counters if not c.fail_open]
        if closed:
            reservation.refusal = Refusal(closed[0], UNAVAILABLE)
        else:
            reservation.unchecked = reservation.counters
        return reservation

    def settle(self, reservation: Reservation, *, cost: float, tokens: int) -> None:
        checked_counters((), cost, tokens)
        if not reservation.claim_settle():
            return
        counters = [c for c in reservation.counters if c.kind != REQUESTS]  # a request counts once, when reserved
        if not counters:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.error("Limits: settle of request %s called off the event loop; not recorded", reservation.request_id)
            return
        if len(self._pending) >= MAX_PENDING_SETTLES:
            self._failed(RuntimeError(f"{MAX_PENDING_SETTLES} settles already waiting for Redis"))
            return
        task = loop.create_task(self._send_settle(reservation.request_id, counters, cost, tokens))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_settle(self, request_id: str, counters: list[Counter], cost: float, tokens: int) -> None:
        if self._down_since is not None and time.monotonic() < self._retry_at:
            return
        try:
            await self._client().evalsha(SETTLE, _keys(counters), _args(request_id, 0, counters, cost, tokens))
        except Exception as exc:  # noqa: BLE001  (holds expire on their own; the record keeps the spend)
            self._failed(exc)
            return
        self._ok()

    async def flush(self) -> None:
        loop = asyncio.get_running_loop()
        mine = [task for task in self._pending if task.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)

    async def stop(self) -> None:
        await self.flush()
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()

    # --- outages --------------------------------------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        self._retry_at = time.monotonic() + self.retry_interval
        if self._down_since is None:
            self._down_since = time.time()
            log.warning(
                "Limits cannot reach Redis (%s): fail-open limits are skipped and fail-closed ones refuse requests "
                "until it is back",
                exc or type(exc).__name__,
            )

    def _ok(self) -> None:
        if self._down_since is not None:
            log.warning("Limits reach Redis again after %.0fs of outage", time.time() - self._down_since)
            self._down_since = None
            self._up_since = time.time()

    def status(self) -> dict:
        """For /ingate/health: {"backend": "redis", "redis": "ok" | "down", "since": epoch seconds of the outage's
        start (down) or of the last recovery (ok, None if none)}. What the last call saw; no I/O."""
        if self._down_since is not None:
            return {"backend": "redis", "redis": "down", "since": self._down_since}
        return {"backend": "redis", "redis": "ok", "since": self._up_since}

    # --- pages and start-up (synchronous: threads, never the event loop) ------------------------------------

    def _sync(self):
        import redis

        return redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)

    def snapshot(self, counters: Iterable[Counter]) -> dict[str, Usage]:
        """Each counter's use as Redis has it (one round trip). Raises redis.RedisError when Redis is unreachable:
        the page says so rather than showing zeros."""
        counters = checked_counters(counters)
        if not counters:
            return {}
        client = self._sync()
        try:
            reply = client.eval(PEEK.text, 2 * len(counters), *_keys(counters), *_args("", 0, counters, 0, 0))
        finally:
            client.close()
        return {c.key: Usage(float(reply[2 * i]), float(reply[2 * i + 1])) for i, c in enumerate(counters)}

    def load(self, totals) -> None:
        """Seed spend counters with the database's recorded spend (see MemoryLimiter.load): for a budget created
        mid-period, or a Redis that lost its data. Keeps the larger of the two. Raises redis.RedisError."""
        items = list(totals.values() if isinstance(totals, dict) else totals)
        for counter, _ in items:
            if counter.kind != SPEND:
                raise ValueError(f"only spend counters are loaded, not {counter.kind} ({counter.key})")
        if not items:
            return
        args = [round(PERIOD_MARGIN * 1000)]
        for counter, spent in items:
            args += (repr(float(spent)), round(counter.expires_at * 1000) if counter.expires_at else 0)
        client = self._sync()
        try:
            client.eval(LOAD.text, len(items), *(PREFIX + c.key for c, _ in items), *args)
        finally:
            client.close()
