"""Target health: a circuit breaker per target that opens after repeated failures, lets exactly one probe
through after its cool-down, and is shared by every gateway process through Redis (in-process without it).
The breaker tests run against both backends; the Redis ones need REDIS_URL (set in CI) and use database 7."""

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from redis.connection import parse_url

from proxy.routing import CLOSED, HALF_OPEN, OPEN, Exhausted, Health, Plan, RedisHealth, Target, health_for
from proxy.routing.retry import CIRCUIT_OPEN

ROOT = Path(__file__).resolve().parents[2]
TARGET = Target("openai", "gpt-4o", "key-1")
KEY = TARGET.key(7)
# Short enough to wait out for real: Redis's TTLs run on its own clock.
TUNABLES = {"threshold": 3, "window": 2.0, "cooldown": 0.4, "probe_timeout": 2.0}


@pytest.fixture
def redis_url():
    if not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (set in CI)")
    parts = parse_url(django_settings.REDIS_URL)
    url = f"redis://{parts.get('host', '127.0.0.1')}:{parts.get('port', 6379)}/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request):
    """A factory of Health objects: each call is one gateway process's view. In-process ones share nothing;
    Redis ones share db 7."""
    if request.param == "memory":
        return lambda **options: Health(**{**TUNABLES, **options})
    url = request.getfixturevalue("redis_url")
    return lambda **options: RedisHealth(url, **{**TUNABLES, **options})


def run(coro):
    return asyncio.run(coro)


async def fail(health, times=1, status=503, key=KEY):
    for _ in range(times):
        health.record_failure(key, "status", status=status)
    await health.flush()


async def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# --- the breaker, either backend ------------------------------------------------------------------------


def test_the_circuit_opens_after_threshold_failures_within_the_window(backend):
    async def main():
        health = backend()
        await fail(health, 2)
        closed_after_two = not health.is_open(KEY)
        await fail(health, 1)
        return closed_after_two, health.is_open(KEY), health.state(KEY)

    assert run(main()) == (True, True, OPEN)


def test_failures_further_apart_than_the_window_do_not_open_it(backend):
    async def main():
        health = backend(window=0.3)
        await fail(health, 2)
        await asyncio.sleep(0.35)
        await fail(health, 1)
        return health.is_open(KEY)

    assert run(main()) is False


def test_an_open_target_is_skipped_until_its_cool_down_ends(backend):
    async def main():
        health = backend()
        await fail(health, 3)
        during = (health.is_open(KEY), health.probe_due(KEY))
        await asyncio.sleep(0.45)
        return during, (health.is_open(KEY), health.probe_due(KEY), health.state(KEY))

    assert run(main()) == ((True, False), (True, True, HALF_OPEN))


def test_exactly_one_request_gets_the_probe_after_the_cool_down(backend):
    async def main():
        health = backend()
        await fail(health, 3)
        await asyncio.sleep(0.45)
        claims = await asyncio.gather(*(health.claim_probe(KEY) for _ in range(10)))
        return claims.count(True), health.is_open(KEY), health.probe_due(KEY)

    assert run(main()) == (1, True, False)


def test_a_good_probe_closes_the_circuit(backend):
    async def main():
        health = backend()
        await fail(health, 3)
        await asyncio.sleep(0.45)
        assert await health.claim_probe(KEY)
        health.record_success(KEY, 120.0)
        await health.flush()
        return health.is_open(KEY), health.state(KEY)

    assert run(main()) == (False, CLOSED)


def test_a_bad_probe_opens_the_circuit_for_another_cool_down(backend):
    async def main():
        health = backend()
        await fail(health, 3)
        await asyncio.sleep(0.45)
        assert await health.claim_probe(KEY)
        await fail(health, 1, status=502)
        reopened = (health.state(KEY), health.probe_due(KEY), round(health.retry_in(KEY), 1))
        await asyncio.sleep(0.45)
        return reopened, health.probe_due(KEY)

    assert run(main()) == ((OPEN, False, 0.4), True)


def test_a_single_target_route_fails_fast_with_the_last_error_while_open(backend):
    async def main():
        health = backend()
        await fail(health, 3, status=529)
        with pytest.raises(Exhausted) as ended:
            Plan(7, [TARGET], health=health, retries=3).next()
        return ended.value

    ended = run(main())
    assert (ended.reason, ended.attempts, ended.failure.status) == (CIRCUIT_OPEN, 0, 529)
    assert 0 < ended.retry_after <= 0.4


def test_a_closed_circuit_counts_afresh_after_closing(backend):
    async def main():
        health = backend()
        await fail(health, 3)
        await asyncio.sleep(0.45)
        assert await health.claim_probe(KEY)
        health.record_success(KEY, 100.0)
        await fail(health, 2)
        return health.is_open(KEY)

    assert run(main()) is False


def test_no_counter_is_shared_between_orgs(backend):
    async def main():
        health = backend()
        await fail(health, 3, key=TARGET.key(7))
        return health.is_open(TARGET.key(7)), health.is_open(TARGET.key(8))

    assert run(main()) == (True, False)


def test_the_routes_page_sees_state_failures_timing_and_reopening_time(backend):
    async def main():
        health = backend(cooldown=30.0)
        other = Target("azure", "gpt-4o", "env").key(7)
        health.record_success(other, 200.0)
        health.record_success(other, 400.0)
        await fail(health, 1, key=other)
        await fail(health, 3)
        return {item.key: item for item in health.snapshot(7)}, health.snapshot(8)

    before = time.time()
    seen, other_org = run(main())
    assert other_org == []
    opened, degraded = seen[KEY], seen[Target("azure", "gpt-4o", "env").key(7)]
    assert opened.state == OPEN and opened.last_failure.status == 503
    assert before + 29 < opened.opened_until < before + 31
    assert (degraded.state, degraded.failures, degraded.opened_until) == (CLOSED, 1, None)
    assert degraded.ewma_ttfb_ms == pytest.approx(240.0)  # 200, then 20% of the way to 400


def test_without_redis_the_gateway_uses_in_process_health():
    assert type(health_for("", threshold=2)) is Health


# --- shared through Redis ---------------------------------------------------------------------------------


class Gateway:
    """Another gateway process: a Python process of its own with a RedisHealth on the same Redis, listening
    for the others' news, answering commands on stdin."""

    SCRIPT = textwrap.dedent(
        """
        import asyncio, json, sys
        from proxy.routing import RedisHealth, Target

        KEY = Target("openai", "gpt-4o", "key-1").key(7)

        async def main(url, tunables):
            health = RedisHealth(url, **tunables)
            health.start()
            await asyncio.sleep(0.3)  # subscribed
            loop = asyncio.get_running_loop()
            print(json.dumps("ready"), flush=True)
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                command = line.split()
                if command[0] == "fail":
                    health.record_failure(KEY, "status", status=int(command[1]))
                    await health.flush()
                    answer = None
                elif command[0] == "success":
                    health.record_success(KEY, 50.0)
                    await health.flush()
                    answer = None
                elif command[0] == "claim":
                    answer = await health.claim_probe(KEY)
                else:
                    answer = {"open": health.is_open(KEY), "due": health.probe_due(KEY), "state": health.state(KEY)}
                print(json.dumps(answer), flush=True)
            await health.stop()

        asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
        """
    )

    def __init__(self, url: str, tunables: dict):
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, url, json.dumps(tunables)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read() == "ready"

    def read(self):
        line = self.process.stdout.readline()
        assert line, "the other gateway process died"
        return json.loads(line)

    def ask(self, command: str):
        self.send(command)
        return self.read()

    def send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def wait_for(self, field: str, value, timeout=3.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ask("state")[field] == value:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def other_gateway(redis_url):
    gateway = Gateway(redis_url, TUNABLES)
    yield gateway
    gateway.close()


def test_a_circuit_opened_in_one_process_is_open_in_another(redis_url, other_gateway):
    async def main():
        health = RedisHealth(redis_url, **TUNABLES)
        await fail(health, 3)
        seen = await asyncio.to_thread(other_gateway.wait_for, "open", True, 1.0)
        await health.stop()
        return health.is_open(KEY), seen

    assert run(main()) == (True, True)


def test_failures_in_different_processes_add_up(redis_url, other_gateway):
    async def main():
        health = RedisHealth(redis_url, **TUNABLES)
        health.start()
        await asyncio.sleep(0.3)
        other_gateway.ask("fail 503")
        await fail(health, 1)
        mine_alone = health.is_open(KEY)
        other_gateway.ask("fail 503")  # the third, in the other process, opens it for both
        seen_here = await wait_for(lambda: health.is_open(KEY), 1.0)
        await health.stop()
        return mine_alone, seen_here, other_gateway.ask("state")["open"]

    assert run(main()) == (False, True, True)


def test_only_one_process_gets_the_probe_and_its_success_closes_the_circuit_everywhere(redis_url, other_gateway):
    async def main():
        health = RedisHealth(redis_url, **TUNABLES)
        health.start()
        await asyncio.sleep(0.3)
        await fail(health, 3)
        assert await asyncio.to_thread(other_gateway.wait_for, "due", True, 2.0)
        await wait_for(lambda: health.probe_due(KEY), 1.0)
        other_gateway.send("claim")  # both ask at once
        mine = await health.claim_probe(KEY)
        theirs = await asyncio.to_thread(other_gateway.read)
        winner_succeeds = "success"
        if mine:
            health.record_success(KEY, 80.0)
            await health.flush()
        else:
            other_gateway.ask(winner_succeeds)
        closed_here = await wait_for(lambda: not health.is_open(KEY), 1.0)
        closed_there = await asyncio.to_thread(other_gateway.wait_for, "open", False, 1.0)
        await health.stop()
        return sorted([mine, theirs]), closed_here, closed_there

    assert run(main()) == ([False, True], True, True)


def test_a_bad_probe_in_one_process_reopens_the_circuit_in_the_other(redis_url, other_gateway):
    async def main():
        health = RedisHealth(redis_url, **TUNABLES)
        health.start()
        await asyncio.sleep(0.3)
        await fail(health, 3)
        await asyncio.sleep(0.45)
        assert other_gateway.ask("claim") is True
        mine = await health.claim_probe(KEY)  # taken: this process waits for the verdict
        other_gateway.ask("fail 502")
        await asyncio.sleep(0.1)
        state = (health.state(KEY), health.probe_due(KEY))
        await health.stop()
        return mine, state

    assert run(main()) == (False, (OPEN, False))


def test_the_routes_page_of_any_process_sees_a_circuit_another_opened(redis_url, other_gateway):
    for _ in range(3):
        other_gateway.ask("fail 503")
    page = RedisHealth(redis_url, **{**TUNABLES, "cooldown": 30.0})  # a process that served none of it
    (seen,) = page.snapshot(7)
    assert (seen.key, seen.state) == (KEY, OPEN) and page.snapshot(8) == []


def test_a_success_on_a_closed_circuit_never_reaches_redis():
    connections = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)

    def accept():  # a "Redis" that counts who connects and hangs up on them
        while listener.fileno() != -1:
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            connections.append(conn)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/7"

    async def main():
        health = RedisHealth(url, **TUNABLES)
        for _ in range(50):
            health.record_success(KEY, 90.0)
        await health.flush()
        quiet = len(connections)
        health.record_failure(KEY, "connect")
        await health.flush()
        return quiet, len(connections) > 0, health.ttfb(KEY)

    try:
        assert run(main()) == (0, True, 90.0)
    finally:
        listener.close()
        thread.join(2)


def test_without_redis_reachable_each_process_still_opens_on_its_own_failures():
    async def main():
        health = RedisHealth("redis://127.0.0.1:1/7", **TUNABLES)
        await fail(health, 3)
        opened = health.is_open(KEY)
        await asyncio.sleep(0.45)
        claimed = await health.claim_probe(KEY)  # Redis cannot arbitrate: this process decides alone
        return opened, claimed

    assert run(main()) == (True, True)
