"""Budgets and rate limits as reserve/settle counters: budgets hold under concurrency (also across processes
sharing Redis), holds never leak (settle, expiry), windows hold their rate, and a Redis outage follows each
counter's fail-open setting. Most tests run against both backends; the Redis ones need REDIS_URL (set in CI)
and clear the limits' keys there."""

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import hiredis
import pytest
import redis
from django.conf import settings as django_settings
from redis.connection import parse_url

from proxy.limits import (
    CONCURRENCY,
    LIMIT,
    REQUESTS,
    SPEND,
    TOKENS,
    UNAVAILABLE,
    Counter,
    MemoryLimiter,
    RedisLimiter,
    limiter_for,
)
from proxy.limits.redis_store import PREFIX

ROOT = Path(__file__).resolve().parents[2]
COST = 0.25  # a request's worst-case cost
BUDGET = Counter("o1:budget:key:7:month:2026-12", SPEND, 10 * COST, label="monthly budget of key 'ci' ($2.50)")


def in_an_hour(counter: Counter) -> Counter:
    return Counter(**{**_fields(counter), "expires_at": time.time() + 3600})


def _fields(counter: Counter) -> dict:
    return {name: getattr(counter, name) for name in counter.__dataclass_fields__}


def run(coro):
    return asyncio.run(coro)


def _forget_counters(client) -> None:
    stale = list(client.scan_iter(PREFIX + "*"))
    if stale:
        client.delete(*stale)


@pytest.fixture
def redis_url():
    """REDIS_URL's database, without any limits counter before or after the test (other keys are left alone)."""
    if not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (set in CI)")
    parts = parse_url(django_settings.REDIS_URL)
    url = f"redis://{parts.get('host', '127.0.0.1')}:{parts.get('port', 6379)}/{parts.get('db', 0)}"
    client = redis.Redis.from_url(url)
    _forget_counters(client)
    yield url
    _forget_counters(client)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def make(request):
    """A factory of limiters: in-process ones share nothing, Redis ones share REDIS_URL (like gateway processes)."""
    if request.param == "memory":
        return lambda **options: MemoryLimiter()
    url = request.getfixturevalue("redis_url")
    return lambda **options: RedisLimiter(url, **options)


async def reserve_many(limiter, n, counters, *, cost=COST, tokens=0, ttl=30.0, prefix="req"):
    return await asyncio.gather(
        *(limiter.reserve(f"{prefix}-{i}", counters, cost=cost, tokens=tokens, ttl=ttl) for i in range(n))
    )


# --- budgets under concurrency --------------------------------------------------------------------------------


def test_200_concurrent_requests_on_a_budget_worth_10_admit_exactly_10(make):
    async def main():
        limiter = make()
        results = await reserve_many(limiter, 200, [BUDGET])
        await limiter.stop()
        return results

    results = run(main())
    granted = [r for r in results if r.granted]
    refused = [r.refusal for r in results if not r.granted]
    assert len(granted) == 10
    assert len(refused) == 190
    assert all(r.counter == BUDGET and r.reason == LIMIT for r in refused)
    assert "monthly budget of key 'ci' ($2.50) is used up" in refused[0].message
    assert refused[0].used == pytest.approx(2.5)
    assert refused[0].retry_after is not None and refused[0].retry_after <= 1.0  # the holds are in flight
    assert sorted(r.standing[BUDGET.key].remaining for r in granted) == pytest.approx([COST * i for i in range(10)])


def test_two_gateway_processes_sharing_redis_admit_10_requests_in_total_on_a_budget_worth_10(redis_url):
    start_at = time.time() + 2.0
    script = textwrap.dedent(
        f"""
        import asyncio, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from proxy.limits import Counter, RedisLimiter
        counter = Counter({BUDGET.key!r}, "spend", {BUDGET.limit!r})

        async def main():
            limiter = RedisLimiter({redis_url!r})
            await asyncio.sleep(max({start_at!r} - time.time(), 0))
            results = await asyncio.gather(
                *(limiter.reserve(f"child-{{i}}", [counter], cost={COST!r}, tokens=0, ttl=30) for i in range(200))
            )
            await limiter.stop()
            print(sum(r.granted for r in results), sum(not r.granted for r in results))

        asyncio.run(main())
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)

    async def main():
        limiter = RedisLimiter(redis_url)
        await asyncio.sleep(max(start_at - time.time(), 0))
        results = await reserve_many(limiter, 200, [BUDGET], prefix="parent")
        await limiter.stop()
        return sum(r.granted for r in results)

    mine = run(main())
    out, _ = child.communicate(timeout=30)
    theirs, refused = (int(part) for part in out.split())
    assert child.returncode == 0
    assert theirs + refused == 200  # the other process did run its 200 against the same budget
    assert mine + theirs == 10


def test_settling_lowers_spend_to_the_actual_cost_and_frees_room(make):
    async def main():
        limiter = make()
        first = await reserve_many(limiter, 10, [BUDGET])
        blocked = await limiter.reserve("eleventh", [BUDGET], cost=COST, tokens=0, ttl=30)
        for reservation in first:
            limiter.settle(reservation, cost=0.05, tokens=0)
        await limiter.flush()
        used = limiter.snapshot([BUDGET])[BUDGET.key]
        after = await reserve_many(limiter, 20, [BUDGET], prefix="after")
        await limiter.stop()
        return blocked, used, after

    blocked, used, after = run(main())
    assert not blocked.granted
    assert used.used == pytest.approx(0.5) and used.reserved == pytest.approx(0)
    # $2.00 left at $0.25 worst case each: 8 more fit.
    assert sum(r.granted for r in after) == 8


def test_a_request_that_used_more_than_it_reserved_is_charged_its_actual_cost(make):
    async def main():
        limiter = make()
        reservation = await limiter.reserve("big", [BUDGET], cost=COST, tokens=0, ttl=30)
        limiter.settle(reservation, cost=2.4, tokens=0)
        await limiter.flush()
        used = limiter.snapshot([BUDGET])[BUDGET.key]
        next_one = await limiter.reserve("next", [BUDGET], cost=COST, tokens=0, ttl=30)
        await limiter.stop()
        return used, next_one

    used, next_one = run(main())
    assert used.used == pytest.approx(2.4)
    assert next_one.refusal.counter == BUDGET


def test_settling_twice_charges_the_request_once(make):
    async def main():
        limiter = make()
        reservation = await limiter.reserve("once", [BUDGET], cost=COST, tokens=0, ttl=30)
        limiter.settle(reservation, cost=0.1, tokens=0)
        limiter.settle(reservation, cost=0.1, tokens=0)
        await limiter.flush()
        used = limiter.snapshot([BUDGET])[BUDGET.key]
        await limiter.stop()
        return used

    assert run(main()).used == pytest.approx(0.1)


def test_an_unsettled_reservation_expires_after_its_ttl_and_the_next_request_fits(make):
    async def main():
        limiter = make()
        killed = await reserve_many(limiter, 10, [BUDGET], ttl=0.3)  # a gateway that dies before settling
        refused = await limiter.reserve("during", [BUDGET], cost=COST, tokens=0, ttl=30)
        await asyncio.sleep(0.45)
        after = await limiter.reserve("after", [BUDGET], cost=COST, tokens=0, ttl=30)
        usage = limiter.snapshot([BUDGET])[BUDGET.key]
        await limiter.stop()
        return killed, refused, after, usage

    killed, refused, after, usage = run(main())
    assert all(r.granted for r in killed)
    assert not refused.granted
    assert after.granted
    assert usage.used == 0 and usage.reserved == pytest.approx(COST)


def test_settling_an_expired_reservation_still_records_its_spend_once(make):
    async def main():
        limiter = make()
        slow = await limiter.reserve("slow", [BUDGET], cost=COST, tokens=0, ttl=0.2)
        await asyncio.sleep(0.3)
        other = await limiter.reserve("other", [BUDGET], cost=COST, tokens=0, ttl=30)  # sweeps the expired hold
        limiter.settle(slow, cost=0.3, tokens=0)
        limiter.settle(slow, cost=0.3, tokens=0)
        await limiter.flush()
        usage = limiter.snapshot([BUDGET])[BUDGET.key]
        await limiter.stop()
        return other, usage

    other, usage = run(main())
    assert other.granted
    assert usage.used == pytest.approx(0.3) and usage.reserved == pytest.approx(COST)


def test_a_spent_budget_says_it_frees_up_when_its_period_ends(make):
    budget = in_an_hour(BUDGET)

    async def main():
        limiter = make()
        reservation = await limiter.reserve("all", [budget], cost=2.5, tokens=0, ttl=30)
        limiter.settle(reservation, cost=2.5, tokens=0)
        await limiter.flush()
        refused = await limiter.reserve("more", [budget], cost=0.0, tokens=0, ttl=30)  # even an unpriced one
        too_big = await limiter.reserve("huge", [budget], cost=3.0, tokens=0, ttl=30)
        await limiter.stop()
        return refused.refusal, too_big.refusal

    refused, too_big = run(main())
    assert refused.reason == LIMIT
    assert 3590 < refused.retry_after <= 3600
    assert "Retry after 3600s." in refused.message or "Retry after 3599s." in refused.message
    assert too_big.retry_after is None
    assert too_big.message.endswith("This request alone is larger than the limit.")


def test_a_refused_second_counter_takes_nothing_from_the_first(make):
    team = Counter("o1:budget:team:3:month:2026-12", SPEND, 100.0, label="team budget")
    slots = Counter("o1:concurrency:key:7", CONCURRENCY, 1, label="key 'ci'")

    async def main():
        limiter = make()
        holder = await limiter.reserve("holder", [slots], cost=0, tokens=0, ttl=30)
        refused = await reserve_many(limiter, 5, [team, slots], cost=1.0)
        usage = limiter.snapshot([team, slots])
        await limiter.stop()
        return holder, refused, usage

    holder, refused, usage = run(main())
    assert holder.granted
    assert all(r.refusal.counter == slots for r in refused)
    assert usage[team.key] == (0.0, 0.0)
    assert usage[slots.key].reserved == 1


def test_load_seeds_spend_from_recorded_totals_and_never_lowers_it(make):
    budget = in_an_hour(BUDGET)

    async def main():
        limiter = make()
        limiter.load({budget.key: (budget, 2.4)})
        refused = await limiter.reserve("a", [budget], cost=COST, tokens=0, ttl=30)
        limiter.load([(budget, 1.0)])  # an older total read before recent settles reached the database
        usage = limiter.snapshot([budget])[budget.key]
        fits = await limiter.reserve("b", [budget], cost=0.1, tokens=0, ttl=30)
        await limiter.stop()
        return refused, usage, fits

    refused, usage, fits = run(main())
    assert refused.refusal.counter == budget
    assert usage.used == pytest.approx(2.4)
    assert fits.granted


# --- concurrency slots ----------------------------------------------------------------------------------------


def test_a_concurrency_slot_comes_back_on_settle_and_on_expiry(make):
    slots = Counter("o1:concurrency:app:2", CONCURRENCY, 2, label="app 'bot'")

    async def main():
        limiter = make()
        first = await reserve_many(limiter, 5, [slots], ttl=0.3)
        limiter.settle(next(r for r in first if r.granted), cost=0, tokens=0)
        await limiter.flush()
        after_settle = await reserve_many(limiter, 5, [slots], prefix="s", ttl=30)
        await asyncio.sleep(0.45)  # the other first slot was never settled: it expires
        after_expiry = await reserve_many(limiter, 5, [slots], prefix="e", ttl=30)
        await limiter.stop()
        return first, after_settle, after_expiry

    first, after_settle, after_expiry = run(main())
    assert sum(r.granted for r in first) == 2
    assert sum(r.granted for r in after_settle) == 1
    assert sum(r.granted for r in after_expiry) == 1
    refusal = next(r.refusal for r in after_expiry if not r.granted)
    assert refusal.message.startswith("Concurrency limit reached: app 'bot' allows 2 requests at once.")


# --- rate windows --------------------------------------------------------------------------------------------


def _busiest(events: list[tuple[float, float]], window: float) -> float:
    """The most any `window` seconds hold, over (time, amount) events."""
    events.sort()
    best, total, start = 0.0, 0.0, 0
    for at, amount in events:
        total += amount
        while events[start][0] <= at - window:
            total -= events[start][1]
            start += 1
        best = max(best, total)
    return best


async def _hammer(limiter, counters, *, seconds, tokens, actual, callers=64):
    """`callers` clients sending requests back to back for `seconds`; each admitted one settles after a short
    answer. Returns (time sent, actual tokens) per admitted request, and the refusals. The time a request was
    sent is the closest this side sees to when the limiter admitted it: the answer can reach its caller many
    milliseconds later on a busy event loop."""
    admitted, refusals = [], []
    deadline = time.time() + seconds
    ids = iter(range(10**9))

    async def caller():
        while (sent := time.time()) < deadline:
            reservation = await limiter.reserve(f"c-{next(ids)}", counters, cost=0, tokens=tokens, ttl=30)
            if reservation.granted:
                admitted.append((sent, actual))
                await asyncio.sleep(0.01)
                limiter.settle(reservation, cost=0, tokens=actual)
            else:
                refusals.append(reservation.refusal)
                await asyncio.sleep(0.005)

    await asyncio.gather(*(caller() for _ in range(callers)))
    await limiter.flush()
    return admitted, refusals


def test_requests_per_window_hold_within_5_percent_at_64_concurrent_callers(make):
    rpm = Counter("o1:rate:key:7:requests", REQUESTS, 100, window=1.0, label="requests of key 'ci'")

    async def main():
        limiter = make()
        result = await _hammer(limiter, [rpm], seconds=3.2, tokens=0, actual=1)
        await limiter.stop()
        return result

    admitted, refusals = run(main())
    assert _busiest(admitted, 1.0) <= 105
    assert len(admitted) >= 0.95 * 100 * 3  # three whole windows at least
    assert all(r.counter == rpm and 0 < r.retry_after <= 1.05 for r in refusals)


def test_tokens_per_window_hold_within_5_percent_at_64_concurrent_callers(make):
    tpm = Counter("o1:rate:key:7:tokens", TOKENS, 2000, window=1.0, label="tokens of key 'ci'")

    async def main():
        limiter = make()
        # Each reserves a worst case of 40 tokens and uses 25: settling gives the difference back.
        result = await _hammer(limiter, [tpm], seconds=3.2, tokens=40, actual=25)
        await limiter.stop()
        return result

    admitted, refusals = run(main())
    assert _busiest(admitted, 1.0) <= 2000 * 1.05
    assert sum(tokens for _, tokens in admitted) >= 0.95 * 2000 * 3
    assert refusals and all(r.counter == tpm for r in refusals)


def test_a_token_reservation_settled_lower_gives_its_room_back_at_once(make):
    tpm = Counter("o1:rate:org:tokens", TOKENS, 1000, window=60)

    async def main():
        limiter = make()
        big = await limiter.reserve("big", [tpm], cost=0, tokens=900, ttl=30)
        refused = await limiter.reserve("next", [tpm], cost=0, tokens=200, ttl=30)
        limiter.settle(big, cost=0, tokens=100)
        await limiter.flush()
        usage = limiter.snapshot([tpm])[tpm.key]
        admitted = await limiter.reserve("again", [tpm], cost=0, tokens=200, ttl=30)
        await limiter.stop()
        return big, refused, usage, admitted

    big, refused, usage, admitted = run(main())
    assert big.standing[tpm.key].remaining == 100
    assert 59 < big.standing[tpm.key].reset <= 62
    assert refused.refusal.used == 900 and 59 < refused.refusal.retry_after <= 62
    assert usage == (100.0, 0.0)
    assert admitted.granted and admitted.standing[tpm.key].remaining == 700


def test_a_request_larger_than_a_token_limit_is_told_waiting_will_not_help(make):
    tpm = Counter("o1:rate:org:tokens", TOKENS, 1000, window=60, label="tokens per minute of the org")

    async def main():
        limiter = make()
        result = await limiter.reserve("huge", [tpm], cost=0, tokens=5000, ttl=30)
        await limiter.stop()
        return result.refusal

    refusal = run(main())
    assert refusal.retry_after is None
    assert refusal.message == (
        "Rate limit reached: tokens per minute of the org allows 1,000 tokens per 60s; 0 tokens in the current "
        "window, and this request may use up to 5,000 tokens. This request alone is larger than the limit."
    )


# --- Redis specifics -----------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_with_redis_unreachable_open_counters_pass_closed_ones_refuse_and_one_warning_is_logged(caplog):
    rpm = Counter("o1:rate:requests", REQUESTS, 10)  # rate limits fail open by default
    closed = Counter("o1:budget:org:month", SPEND, 10.0, label="monthly budget of the org")  # budgets closed

    async def main():
        limiter = RedisLimiter(f"redis://127.0.0.1:{_closed_port()}/6", retry_interval=0)
        open_only = [await limiter.reserve(f"o-{i}", [rpm], cost=1, tokens=0, ttl=30) for i in range(3)]
        with_budget = [await limiter.reserve(f"c-{i}", [rpm, closed], cost=1, tokens=0, ttl=30) for i in range(3)]
        for reservation in open_only:
            limiter.settle(reservation, cost=1, tokens=0)
        await limiter.flush()
        return open_only, with_budget, limiter.status()

    with caplog.at_level(logging.WARNING, logger="proxy.limits"):
        open_only, with_budget, status = run(main())
    assert all(r.granted and r.unchecked == (rpm,) for r in open_only)
    assert all(r.refusal.counter == closed and r.refusal.reason == UNAVAILABLE for r in with_budget)
    assert with_budget[0].refusal.message == (
        "monthly budget of the org: limits cannot be checked: Redis is unreachable, and this limit refuses "
        "requests until it is back."
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Limits cannot reach Redis" in warnings[0].getMessage()
    assert status["redis"] == "down" and time.time() - 10 < status["since"] <= time.time()


class _Forwarder:
    """A TCP relay to Redis that can be cut and restored: an outage without touching the real server."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.server = None
        self.port = _closed_port()
        self.links: list[asyncio.StreamWriter] = []

    async def up(self):
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def down(self):
        self.server.close()
        for writer in self.links:
            writer.close()
        self.links.clear()
        await self.server.wait_closed()

    async def _link(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.links += (writer, up_writer)

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(redis_url, caplog):
    parts = parse_url(redis_url)
    budget = Counter("o1:budget:org", SPEND, 10.0)

    async def main():
        relay = _Forwarder((parts.get("host", "127.0.0.1"), parts.get("port", 6379)))
        await relay.up()
        limiter = RedisLimiter(f"redis://127.0.0.1:{relay.port}/{parts.get('db', 0)}", retry_interval=0, timeout=0.5)
        before = await limiter.reserve("a", [budget], cost=1, tokens=0, ttl=30)
        await relay.down()
        during = [await limiter.reserve(f"b-{i}", [budget], cost=1, tokens=0, ttl=30) for i in range(3)]
        status_down = limiter.status()
        await relay.up()
        after = await limiter.reserve("c", [budget], cost=1, tokens=0, ttl=30)
        status_up = limiter.status()
        await limiter.stop()
        await relay.down()
        return before, during, status_down, after, status_up

    with caplog.at_level(logging.WARNING, logger="proxy.limits"):
        before, during, status_down, after, status_up = run(main())
    assert before.granted and after.granted
    assert all(r.refusal.reason == UNAVAILABLE for r in during)
    assert status_down["redis"] == "down" and status_up["redis"] == "ok"
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2
    assert "cannot reach Redis" in messages[0] and "reach Redis again" in messages[1]


class _CountingForwarder(_Forwarder):
    """The relay, reading the commands clients send through it (what Redis itself receives)."""

    def __init__(self, target):
        super().__init__(target)
        self.commands: list[str] = []

    async def _link(self, reader, writer):
        parser = hiredis.Reader()
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.links += (writer, up_writer)

        async def upstream():
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    self.commands.append(command[0].decode().upper())
                up_writer.write(data)
            up_writer.close()

        async def back():
            while data := await up_reader.read(65536):
                writer.write(data)
            writer.close()

        await asyncio.gather(upstream(), back(), return_exceptions=True)


def test_a_reservation_and_its_settlement_cost_one_redis_round_trip_each(redis_url):
    parts = parse_url(redis_url)
    counters = [
        in_an_hour(BUDGET),
        Counter("o1:budget:org:month", SPEND, 100.0),
        Counter("o1:rate:requests", REQUESTS, 100),
        Counter("o1:rate:tokens", TOKENS, 100_000),
        Counter("o1:concurrency", CONCURRENCY, 10),
    ]

    async def main():
        relay = _CountingForwarder((parts.get("host", "127.0.0.1"), parts.get("port", 6379)))
        await relay.up()
        limiter = RedisLimiter(f"redis://127.0.0.1:{relay.port}/{parts.get('db', 0)}")
        warm = await limiter.reserve("warm", counters, cost=0.1, tokens=100, ttl=30)  # connects, loads the script
        limiter.settle(warm, cost=0.1, tokens=100)
        await limiter.flush()
        relay.commands.clear()
        reservation = await limiter.reserve("measured", counters, cost=0.1, tokens=100, ttl=30)
        await asyncio.sleep(0.05)  # whatever else it might send arrives at the relay
        on_the_way_in = list(relay.commands)
        limiter.settle(reservation, cost=0.05, tokens=80)
        limiter.settle(reservation, cost=0.05, tokens=80)
        await limiter.flush()
        await asyncio.sleep(0.05)
        await limiter.stop()
        await relay.down()
        return reservation, on_the_way_in, relay.commands[len(on_the_way_in) :]

    reservation, inbound, outbound = run(main())
    assert reservation.granted and len(reservation.standing) == 5
    assert inbound == ["EVALSHA"]
    assert outbound == ["EVALSHA"]


def test_redis_forgets_counters_once_they_cannot_matter(redis_url):
    budget = in_an_hour(BUDGET)
    rpm = Counter("o1:rate:requests", REQUESTS, 100, window=60)
    slots = Counter("o1:concurrency", CONCURRENCY, 10)

    async def main():
        limiter = RedisLimiter(redis_url)
        reservation = await limiter.reserve("r", [budget, rpm, slots], cost=0.1, tokens=0, ttl=30)
        limiter.settle(reservation, cost=0.1, tokens=0)
        await limiter.flush()
        await limiter.stop()

    run(main())
    client = redis.Redis.from_url(redis_url)
    ttl = {key.decode(): client.pttl(key) / 1000 for key in client.keys(PREFIX + "*")}
    client.close()
    # The settled request holds nothing: the hold indexes are gone, every other key expires.
    assert set(ttl) == {PREFIX + budget.key, PREFIX + rpm.key, PREFIX + slots.key}
    assert 3600 + 2 * 86400 - 10 < ttl[PREFIX + budget.key] <= 3600 + 2 * 86400
    assert 0 < ttl[PREFIX + rpm.key] <= 60 + 1 + 60
    assert 0 < ttl[PREFIX + slots.key] <= 30 + 60


def test_pages_can_read_counters_from_a_thread_while_requests_reserve(make):
    slots = Counter("o1:concurrency", CONCURRENCY, 1000)
    limiter = make()
    seen, stop = [], threading.Event()

    def page():
        while not stop.is_set():
            seen.append(limiter.snapshot([slots])[slots.key].reserved)

    reader = threading.Thread(target=page)
    reader.start()

    async def main():
        try:
            return await reserve_many(limiter, 300, [slots])
        finally:
            stop.set()
            await limiter.stop()

    results = run(main())
    reader.join()
    assert sum(r.granted for r in results) == 300
    assert limiter.snapshot([slots])[slots.key].reserved == 300
    assert seen and all(0 <= value <= 300 for value in seen)


def test_limiter_for_shares_counters_through_redis_only_when_configured(redis_url):
    assert isinstance(limiter_for(""), MemoryLimiter)
    assert isinstance(limiter_for(redis_url), RedisLimiter)
    assert MemoryLimiter().status() == {"backend": "memory", "redis": None, "since": None}


def test_a_counter_with_a_bad_limit_or_kind_is_refused_when_built():
    with pytest.raises(ValueError, match="kind must be one of"):
        Counter("k", "dollars", 1)
    with pytest.raises(ValueError, match="limit must be a finite number"):
        Counter("k", SPEND, -1)
    with pytest.raises(ValueError, match="at least 1 second"):
        Counter("k", REQUESTS, 5, window=0.1)
    assert Counter("k", SPEND, 1).fail_open is False and Counter("k", TOKENS, 1).fail_open is True


def test_a_caller_passing_a_nan_cost_gets_an_error_not_a_silent_pass(make):
    async def main():
        limiter = make()
        try:
            with pytest.raises(ValueError, match="cost and tokens must be finite"):
                await limiter.reserve("x", [BUDGET], cost=float("nan"), tokens=0, ttl=30)
        finally:
            await limiter.stop()

    run(main())
