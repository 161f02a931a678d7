"""Budgets and rate limits through the running gateway: concurrent requests never overspend a hard budget, every
endpoint counts, refusals come in the provider's own 429 shape with headers SDKs honour, responses carry what is
left, and the record says `limited`."""

from __future__ import annotations

import asyncio
import bisect
import collections
import json
import socket
import threading
import time
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
import redis
from asgiref.sync import async_to_sync

from observability import limits
from proxy import internal
from proxy.limits.redis_store import PREFIX
from tenancy.audit import Actor
from tenancy.limits import budget_create, rate_limit_create
from tenancy.selectors import budget_config

CHAT = {"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]}
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]}
# gpt-4o-mini: $0.15 / $0.60 per million tokens. A CHAT body (~90 bytes at 2 bytes per token: ~45 tokens) plus 100
# output tokens reserves at most about $0.0000675 per request.
WORST_CHAT = 45 * 0.15e-6 + 100 * 0.60e-6


@pytest.fixture(autouse=True)
def fresh_counters(settings):
    """No limits counter left in Redis by an earlier test session: ids start again with a new test database."""
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        stale = list(client.scan_iter(PREFIX + "*"))
        if stale:
            client.delete(*stale)
        client.close()


@pytest.fixture
def key(gateway_key):
    return gateway_key[0]


@pytest.fixture
def auth(gateway_key):
    return {"authorization": f"Bearer {gateway_key[1]}"}


def budget(key, **fields):
    fields.setdefault("scope", "key")
    if fields["scope"] == "key":
        fields.setdefault("key", key)
    return budget_create(actor=Actor.system("test"), org=key.org, **fields)


def limit(key, **fields):
    fields.setdefault("scope", "key")
    if fields["scope"] == "key":
        fields.setdefault("key", key)
    return rate_limit_create(actor=Actor.system("test"), org=key.org, **fields)


async def _burst(url: str, headers: dict, body: dict, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(client.post(url, json=body, headers=headers) for _ in range(n)))


def test_two_hundred_concurrent_requests_never_overspend_a_hard_budget(gateway, key, auth, fake):
    amount = Decimal("0.000700")  # about ten requests' worst case
    budget(key, amount_usd=amount, period="day")
    gateway.app.sink.recent = collections.deque(maxlen=500)  # keep every record of the burst
    replies = asyncio.run(_burst(gateway.url + "/v1/chat/completions", auth, CHAT, 200))
    statuses = [r.status_code for r in replies]
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}
    assert 10 <= admitted < 200  # at least what the worst case allows; far from all
    refused = next(r for r in replies if r.status_code == 429)
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert refused.headers["x-should-retry"] == "false"
    records = gateway.wait_for_records(200, timeout=15)
    spend = sum(gateway.app.sink.price(r) or 0 for r in records if r.status == 200)
    assert spend <= float(amount)
    assert sum(1 for r in records if r.outcome == "limited") == 200 - admitted


def test_responses_under_a_budget_say_what_is_left(gateway, key, auth, fake):
    budget(key, amount_usd=Decimal("5"), period="month")
    response = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=auth)
    assert response.status_code == 200
    left = float(response.headers["x-ingate-budget-remaining"])
    assert 5 - WORST_CHAT * 1.5 <= left < 5


def test_a_request_limit_refuses_the_next_request_on_any_endpoint_in_the_providers_shape(gateway, key, gateway_key):
    limit(key, requests_per_minute=3)
    client = openai.OpenAI(api_key=gateway_key[1], base_url=gateway.url + "/v1", max_retries=0)
    claude = anthropic.Anthropic(api_key=gateway_key[1], base_url=gateway.url, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(**CHAT)
    assert raw.headers["x-ratelimit-limit-requests"] == "3"
    assert raw.headers["x-ratelimit-remaining-requests"] == "2"
    claude.messages.create(**MESSAGE)
    with client.chat.completions.create(**CHAT, stream=True) as stream:
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(**MESSAGE)
    assert "requests-per-minute limit" in caught.value.message
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    retry_after = int(caught.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 61  # the rest of the window, rounded up
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4o-mini", input="hi")


def test_a_budget_refusal_stops_an_sdk_that_would_retry(gateway, key, gateway_key):
    budget(key, amount_usd=Decimal("0.000001"), period="month")  # less than any request's worst case
    claude = anthropic.Anthropic(api_key=gateway_key[1], base_url=gateway.url, max_retries=3)
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(**MESSAGE)
    assert "budget" in caught.value.message and caught.value.body["error"]["type"] == "rate_limit_error"
    assert len(gateway.wait_for_records(1)) == 1  # one request, no retries (x-should-retry: false)


def test_ingates_own_calls_count_against_the_orgs_budget(gateway, key, fake):
    budget(key, scope="org", amount_usd=Decimal("0.000001"), period="day")
    answer = async_to_sync(internal.chat)(
        internal.Principal(org_id=key.org_id, org_slug=key.org.slug),
        "openai",
        "gpt-4o-mini",
        [{"role": "user", "content": "hello"}],
    )
    assert answer.status == 429 and "budget" in answer.error
    assert fake.requests == []


def test_an_unpriced_model_is_refused_under_a_hard_budget_but_not_a_soft_one(gateway, key, auth, fake):
    body = {**CHAT, "model": "no-such-model-xyz"}
    budget(key, amount_usd=Decimal("10"), period="month", hard=False)
    assert httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=auth).status_code == 200
    budget(key, amount_usd=Decimal("10"), period="month", name="hard one")
    refused = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=auth)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "budget_unpriced_model" and "price override" in refused.text


def test_a_stream_the_client_leaves_settles_and_frees_its_slot(gateway, key, auth, fake):
    limit(key, concurrent=1)
    body = {**CHAT, "stream": True}
    headers = {**auth, "x-fake-chunks": "40", "x-fake-chunk-delay-ms": "30"}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()  # kept: a dropped iterator closes the response
        next(chunks)
        busy = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=auth)
        assert busy.status_code == 429 and "concurrency" in busy.json()["error"]["message"].lower()
    # The client left mid-stream: its slot comes back once the gateway settles it.
    for _ in range(50):
        again = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=auth)
        if again.status_code == 200:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert again.status_code == 200


def test_a_user_default_budget_counts_each_user_on_their_own(gateway, key, auth, fake):
    budget(key, scope="user", app=key.app, amount_usd=Decimal("0.000001"), period="day")
    refused = httpx.post(
        gateway.url + "/v1/chat/completions", json={**CHAT, "user": "alice"}, headers=auth
    )  # over anyone's worst case
    assert refused.status_code == 429 and "alice" in refused.json()["error"]["message"]
    unnamed = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=auth)
    assert unnamed.status_code == 200  # no user named: no user budget applies


def test_health_reports_the_limits_store(gateway, client):
    body = json.loads(client.get("/ingate/health").content)
    assert body["checks"]["limits"]["status"] in ("ok", "degraded")


def test_what_a_request_in_flight_holds_shows_as_reserved_until_it_settles(gateway, key, auth, fake):
    made = budget(key, amount_usd=Decimal("5"), period="month")
    slow = threading.Thread(
        target=httpx.post,
        args=(gateway.url + "/v1/chat/completions",),
        kwargs={"json": CHAT, "headers": {**auth, "x-fake-delay-ms": "1500"}, "timeout": 10},
    )
    slow.start()
    deadline = time.monotonic() + 3
    while not (held := limits.reserved_now(key.org, [made])[made.id]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert Decimal("0") < held <= Decimal(str(WORST_CHAT * 1.5))
    slow.join()
    deadline = time.monotonic() + 3
    while limits.reserved_now(key.org, [made])[made.id] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert limits.reserved_now(key.org, [made])[made.id] == 0


def test_with_redis_unreachable_budgets_fail_closed_and_rate_limits_open(gateway, key, auth, fake, settings, caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        settings.REDIS_URL = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    limit(key, requests_per_minute=1000)
    assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=auth).status_code == 200
    budget(key, amount_usd=Decimal("5"), period="month")
    refused = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=auth)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "limits_unavailable"
    assert "Redis is unreachable" in refused.json()["error"]["message"]
    budget(key, amount_usd=Decimal("5"), period="month", fail_open=True, name="lenient")
    # Both budgets apply: the fail-closed one still refuses.
    assert httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=auth).status_code == 503
    outage_logs = [r for r in caplog.records if "limits" in r.name and "unreachable" in r.getMessage().lower()]
    assert len(outage_logs) <= 2  # once per outage, not once per request


def test_every_endpoint_and_stream_and_ingates_own_calls_are_charged_to_the_budget(gateway, key, gateway_key, fake):
    made = budget(key, scope="org", amount_usd=Decimal("5"), period="month")
    client = openai.OpenAI(api_key=gateway_key[1], base_url=gateway.url + "/v1", max_retries=0)
    claude = anthropic.Anthropic(api_key=gateway_key[1], base_url=gateway.url, max_retries=0)
    client.chat.completions.create(**CHAT)
    with client.chat.completions.create(**CHAT, stream=True) as stream:  # no include_usage asked: still charged
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    claude.messages.create(**MESSAGE)
    with claude.messages.stream(**MESSAGE) as stream:
        assert stream.get_final_text()
    client.responses.create(model="gpt-4o-mini", input="hi", max_output_tokens=50)
    with client.responses.stream(model="gpt-4o-mini", input="hi", max_output_tokens=50) as stream:
        assert stream.get_final_response().output_text
    answer = async_to_sync(internal.chat)(
        internal.Principal(org_id=key.org_id, org_slug=key.org.slug),
        "openai",
        "gpt-4o-mini",
        [{"role": "user", "content": "hello"}],
    )
    assert answer.status == 200
    records = gateway.wait_for_records(7)
    assert len(records) == 7 and all(r.status == 200 for r in records)
    costs = [gateway.app.sink.price(r) for r in records]
    assert all(cost and cost > 0 for cost in costs)  # each one priced: none of them free
    config = budget_config(made)
    deadline = time.monotonic() + 5
    while (counted := limits.counter_spend(key.org_id, "UTC", config)) is None or float(counted) < sum(costs) - 1e-6:
        assert time.monotonic() < deadline, (counted, sum(costs))
        time.sleep(0.02)
    assert float(counted) == pytest.approx(sum(costs), abs=1e-6)


def test_a_request_rate_limit_holds_within_5_percent_at_64_concurrent_clients(gateway, key, auth, fake, settings):
    # Counted over 5 s windows (INGATE_LIMITS_RATE_WINDOW) rather than a minute, so three whole windows fit in a
    # test: 1,800 a minute is 150 per 5 s.
    settings.INGATE_LIMITS_RATE_WINDOW = 5.0
    limit(key, requests_per_minute=1800)
    gateway.app.sink.recent = collections.deque(maxlen=20_000)
    seconds, window, allowed = 16.0, 5.0, 150

    async def clients():
        deadline = time.monotonic() + seconds
        refused = []

        async def one(client):
            while time.monotonic() < deadline:
                response = await client.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=auth)
                if response.status_code == 429:
                    refused.append(response)
                    await asyncio.sleep(0.02)
                else:
                    assert response.status_code == 200, response.text

        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
            await asyncio.gather(*(one(client) for _ in range(64)))
        return refused

    refused = asyncio.run(clients())
    records = gateway.records
    admitted = sorted(r.started_at for r in records if r.status == 200)
    busiest = max(bisect.bisect_right(admitted, at + window) - i for i, at in enumerate(admitted))
    assert busiest <= allowed * 1.05
    # Nor is it starved: a request is refused only when the window before it (plus the bucket it counts whole)
    # is full, within 5 %, whatever pace a loaded machine lets the clients keep. Times are arrivals; the first
    # window's opening burst of 64 is admitted some way after it arrives, so refusals are judged from the second.
    lookback = window * (1 + 1 / 60) + 0.05
    seen_full = [
        bisect.bisect_right(admitted, r.started_at + 0.05) - bisect.bisect_left(admitted, r.started_at - lookback)
        for r in records
        if r.outcome == "limited" and r.started_at > admitted[0] + window + 1
    ]
    assert seen_full and min(seen_full) >= allowed * 0.95, sorted(seen_full)[:5]
    assert len(admitted) >= 2 * allowed  # the clients did run whole windows
    assert refused and all(r.json()["error"]["code"] == "rate_limited" for r in refused)
    assert all(1 <= int(r.headers["retry-after"]) <= 6 for r in refused)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stream_the_client_cuts_is_charged_what_it_used_not_nothing(gateway, key, auth, fake, provider):
    made = budget(key, amount_usd=Decimal("5"), period="month")
    path, body = ("/v1/chat/completions", CHAT) if provider == "openai" else ("/v1/messages", MESSAGE)
    headers = {**auth, "x-fake-chunks": "40", "x-fake-chunk-delay-ms": "30", "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", gateway.url + path, json={**body, "stream": True}, headers=headers) as response:
        assert response.status_code == 200
        next(response.iter_raw())  # the head of the stream, then the client leaves: no usage chunk reaches Ingate
    record = gateway.wait_for_records(1)[0]
    assert record.outcome == "client_disconnect"
    config = budget_config(made)
    deadline = time.monotonic() + 5
    while (spent := limits.counter_spend(key.org_id, "UTC", config)) is None:
        assert time.monotonic() < deadline, "the cut stream was charged nothing"
        time.sleep(0.02)
    # The prompt and what was relayed (bytes bound), never more than the request's worst case (its body as
    # relayed carries stream_options too; the counter is read rounded to the micro-dollar).
    price_in, price_out = gateway.app.sink.unit_prices(key.org_id, provider, body["model"])[:2]
    worst = (len(json.dumps({**body, "stream": True})) / 2 + 30) * price_in + body["max_tokens"] * price_out
    assert 0 < float(spent) <= worst + 1e-6
    assert limits.reserved_now(key.org, [made])[made.id] == 0


def test_requests_no_provider_bills_pass_a_hard_budget_uncharged_but_count_as_requests(gateway, key, gateway_key):
    made = budget(key, amount_usd=Decimal("0.000001"), period="month")  # spent by any billed request
    limit(key, requests_per_minute=100)
    client = openai.OpenAI(api_key=gateway_key[1], base_url=gateway.url + "/v1", max_retries=0)
    claude = anthropic.Anthropic(api_key=gateway_key[1], base_url=gateway.url, max_retries=0)
    listed = client.models.with_raw_response.list()
    assert listed.headers["x-ratelimit-remaining-requests"] == "99"
    assert claude.messages.count_tokens(model=MESSAGE["model"], messages=MESSAGE["messages"]).input_tokens > 0
    with pytest.raises(openai.RateLimitError, match="budget"):
        client.chat.completions.create(**CHAT)  # a billed request is still refused
    assert limits.counter_spend(key.org_id, "UTC", budget_config(made)) is None  # nothing charged
