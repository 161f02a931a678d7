"""Budgets across gateway processes, as they run in production: two `uvicorn` processes sharing PostgreSQL and
Redis never overspend a budget between them, and a process killed while it holds a reservation does not leave a
phantom 429 behind once the reservation expires. They need both servers, so they run in CI."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from decimal import Decimal

import httpx
import pytest
import redis
from django.conf import settings as django_settings

from observability.models import RequestRecord
from tenancy.audit import Actor
from tenancy.limits import budget_create, rate_limit_create
from tenancy.tests.factories import AppFactory, OrganizationFactory, make_key
from tests.test_outages import GatewayProcess, _gateway_env, _postgres_url_via

pytestmark = [
    pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (set in CI)"),
    pytest.mark.skipif(
        django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="needs DATABASE_URL, a database two processes share (set in CI)",
    ),
]

# Every answer is exactly as long as the request allows (the fake provider counts one token per word), so what a
# request is charged at settle is its reservation less a few input tokens: settling frees almost nothing, and a
# budget of ten worst cases admits ten requests however they interleave.
OUTPUT = 1000
ANSWER = " ".join(["word"] * OUTPUT)
CHAT = {"model": "gpt-4o-mini", "max_tokens": OUTPUT, "messages": [{"role": "user", "content": "hello there"}]}
# gpt-4o-mini at $0.15 / $0.60 per million: at most ~60 input tokens are reserved for this body (bytes bound),
# plus the output. Ten of these is the budget; the eleventh cannot fit even once the ten have settled.
WORST = 60 * 0.15e-6 + OUTPUT * 0.60e-6
BUDGET = Decimal(str(round(10 * WORST, 6)))
# Reservations never settled expire after this many seconds: longer than any request here takes on a loaded
# machine (a hold that expired in flight would let an eleventh request in), short enough to wait out.
TTL = 15


@pytest.fixture
def key(transactional_db):
    """(APIKey, plaintext) in an org of its own, committed (the gateway processes read it over their connections)."""
    app = AppFactory(org=OrganizationFactory(slug="limits-procs"), slug="limits-app")
    made = make_key(app=app, name="shared")
    yield made
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    stale = list(client.scan_iter(f"ingate:limits:o{made[0].org_id}:*"))
    if stale:
        client.delete(*stale)
    client.close()


def _env(tmp_path, fake_url: str, **overrides: str) -> dict[str, str]:
    port = int(django_settings.DATABASES["default"].get("PORT") or 5432)
    return _gateway_env(
        tmp_path,
        fake_url,
        DATABASE_URL=_postgres_url_via(port),
        REDIS_URL=django_settings.REDIS_URL,
        **overrides,
    )


@pytest.fixture
def two_gateways(key, fake, tmp_path_factory):
    """Two gateway processes on the test database and Redis; reservations they never settle expire after TTL s."""
    stream = f"ingate:records:test:limits:{os.getpid()}:{time.monotonic_ns()}"
    started = []
    try:
        for name in ("a", "b"):
            folder = tmp_path_factory.mktemp(f"gateway-{name}")
            env = _env(folder, fake.url, INGATE_LIMITS_RESERVATION_TTL=str(TTL), INGATE_RECORD_STREAM=stream)
            started.append(GatewayProcess(env, folder))
        yield started
    finally:
        for gateway in started:
            if gateway.proc.poll() is None:
                gateway.stop()
        redis.Redis.from_url(django_settings.REDIS_URL).delete(stream)


async def _spread(urls: list[str], plaintext: str, n: int, headers: dict | None = None) -> list[httpx.Response]:
    """`n` requests at once, alternating between the gateways."""
    auth = {"authorization": f"Bearer {plaintext}", **(headers or {})}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(client.post(urls[i % len(urls)] + "/v1/chat/completions", json=CHAT, headers=auth) for i in range(n))
        )


def _records(org_id: int, count: int, timeout: float = 20.0) -> list[RequestRecord]:
    """The org's records once `count` are stored (the processes write them in batches), or what is there by then."""
    deadline = time.monotonic() + timeout
    while len(found := list(RequestRecord.objects.filter(org_id=org_id))) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_two_gateway_processes_admit_at_most_ten_of_200_concurrent_requests_on_a_budget_worth_ten(two_gateways, key):
    api_key, plaintext = key
    budget_create(
        actor=Actor.system("test"), org=api_key.org, scope="key", key=api_key, amount_usd=BUDGET, period="day"
    )
    replies = asyncio.run(_spread([g.url for g in two_gateways], plaintext, 200, {"x-fake-text": ANSWER}))
    statuses = [r.status_code for r in replies]
    assert set(statuses) <= {200, 429}, [r.text for r in replies if r.status_code not in (200, 429)][:3]
    # No request uses more than it reserved here, so the overshoot is nil: ten, shared by both processes.
    assert statuses.count(200) == 10
    refusal = next(r for r in replies if r.status_code == 429)
    assert refusal.json()["error"]["code"] == "budget_exceeded" and refusal.headers["x-should-retry"] == "false"
    records = _records(api_key.org_id, 200)
    assert len(records) == 200
    spent = sum(r.cost_total for r in records if r.status == 200)
    assert Decimal("0") < spent <= BUDGET
    assert sum(r.outcome == "limited" for r in records) == 190


def test_a_killed_gateways_reservation_expires_and_the_next_request_on_another_process_succeeds(
    two_gateways, key, fake
):
    api_key, plaintext = key
    actor = Actor.system("test")
    budget_create(
        actor=actor,
        org=api_key.org,
        scope="key",
        key=api_key,
        amount_usd=Decimal(str(round(1.5 * WORST, 6))),
        period="day",
    )
    rate_limit_create(actor=actor, org=api_key.org, scope="key", key=api_key, concurrent=1)
    doomed, survivor = two_gateways
    auth = {"authorization": f"Bearer {plaintext}"}
    for gateway in two_gateways:  # warm: the key, the budget's counter and the model's price are in memory
        warm = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=auth, timeout=30)
        assert warm.status_code == 200, warm.text  # five words of answer: a sliver of the budget
    slow = {**auth, "x-fake-chunks": "100", "x-fake-chunk-delay-ms": "300"}  # a stream of 30 s
    reserved_at = time.monotonic()
    with httpx.stream(
        "POST", doomed.url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=slow, timeout=30
    ) as stream:
        assert stream.status_code == 200
        next(stream.iter_raw())  # mid-stream: the reservation is held
        os.kill(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait(timeout=10)
    held = httpx.post(survivor.url + "/v1/chat/completions", json=CHAT, headers=auth, timeout=30)
    # The dead process's hold still counts: its request may yet be billed.
    assert held.status_code == 429, f"{held.status_code} {time.monotonic() - reserved_at:.1f} s after the reservation"
    while (answer := httpx.post(survivor.url + "/v1/chat/completions", json=CHAT, headers=auth)).status_code != 200:
        assert answer.status_code == 429, answer.text
        assert time.monotonic() - reserved_at < TTL + 5, "the killed gateway's reservation did not expire"
        time.sleep(0.2)
    assert time.monotonic() - reserved_at >= TTL - 0.5  # released by its expiry, not by anything else
