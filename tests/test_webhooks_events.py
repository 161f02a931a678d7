"""Each webhook event type fires once per cause, from where it happens: tenancy's services (keys, credentials),
budget events, the record pipeline's batches (rate limits, failures, guardrails), the circuit breakers' transitions
handed over by the proxy, eval runs and prompt labels. Payloads carry an event id and never a secret."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from decimal import Decimal

import httpx
import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from standardwebhooks import Webhook

from evals import runner
from evals import services as evals
from evals.models import RunStatus
from evals.tests.waiting import finished
from evals.transfer import clean_item
from observability.pipeline import WEBHOOK_FAILED_OUTCOMES, RecordPipeline
from prompts import services as prompts
from proxy.codes import ErrorCode
from proxy.routing.health import Health, RedisHealth, TargetKey
from tenancy import services
from tenancy.audit import Actor
from tenancy.guardrails import guardrail_policy_create
from tenancy.limits import budget_create, rate_limit_create
from tenancy.models import BudgetEvent, BudgetEventKind, WebhookEvent
from tenancy.tests.factories import AppFactory, OrganizationFactory
from tenancy.webhooks import outbox, sources
from tenancy.webhooks.services import webhook_endpoint_create

from .webhook_receiver import start_receiver

SYSTEM = Actor.system("test")


@pytest.fixture
def receiver():
    r = start_receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def hooks(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded mode, also where CI runs with Redis
    settings.INGATE_WEBHOOK_ALLOW_PRIVATE = True
    yield
    assert outbox.WORKER.idle.wait(10)


@pytest.fixture
def org(transactional_db, hooks):
    return OrganizationFactory(slug="acme")


def listen(org, receiver, **fields) -> str:
    return webhook_endpoint_create(actor=SYSTEM, org=org, url=receiver.url, **fields)[1]


def events_of(org, event_type: str) -> list[WebhookEvent]:
    return list(WebhookEvent.objects.filter(org=org, type=event_type).order_by("created_at"))


# --- tenancy's services --------------------------------------------------------------------------------------------


def test_creating_and_revoking_a_key_fire_once_each_without_the_secret(org, receiver):
    secret = listen(org, receiver)
    key, plaintext = services.api_key_create(actor=SYSTEM, app=AppFactory(org=org), name="ci")
    services.api_key_revoke(actor=SYSTEM, key=key)
    services.api_key_revoke(actor=SYSTEM, key=key)  # already revoked: no second event
    got = receiver.wait_for(2)
    time.sleep(0.2)
    assert len(receiver.received) == 2
    payloads = [Webhook(secret).verify(r.body, r.headers) for r in got]
    assert sorted(p["type"] for p in payloads) == ["key.created", "key.revoked"]
    for received, payload in zip(got, payloads, strict=True):
        assert payload["data"]["key"]["prefix"] == key.prefix
        assert plaintext.encode() not in received.body and key.digest.encode() not in received.body


def test_a_credential_change_fires_without_its_secret(org, receiver):
    listen(org, receiver)
    credential = services.provider_credential_create(actor=SYSTEM, org=org, provider="openai", secret="sk-live-123456")
    services.provider_credential_update(actor=SYSTEM, credential=credential, secret="sk-live-654321")
    services.provider_credential_delete(actor=SYSTEM, credential=credential)
    got = receiver.wait_for(3)
    changes = [json.loads(r.body)["data"]["change"] for r in got]
    assert sorted(changes) == ["created", "deleted", "updated"]
    assert all(b"sk-live" not in r.body and b"4321" not in r.body for r in got)


# --- budgets ------------------------------------------------------------------------------------------------------


def test_each_budget_event_fires_once_as_threshold_or_exceeded(org, receiver):
    listen(org, receiver)
    budget = budget_create(actor=SYSTEM, org=org, scope="org", amount_usd=Decimal("10"), thresholds=[50, 100])
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for threshold, kind, spend in ((50, BudgetEventKind.THRESHOLD, "5.5"), (100, BudgetEventKind.REACHED, "10.2")):
        BudgetEvent.objects.create(
            budget=budget,
            org=org,
            kind=kind,
            threshold=threshold,
            period_start=start,
            spend=Decimal(spend),
            amount_usd=Decimal("10"),
        )
    assert outbox.emit_budget_events() == 2
    assert outbox.emit_budget_events() == 0  # sent once, however many sweeps run
    assert not BudgetEvent.objects.filter(delivered_at__isnull=True).exists()
    got = sorted((json.loads(r.body) for r in receiver.wait_for(2)), key=lambda p: p["data"]["threshold_percent"])
    assert [p["type"] for p in got] == ["budget.threshold", "budget.exceeded"]
    assert got[1]["data"]["spend_usd"] == "10.200000" and got[1]["data"]["budget"]["amount_usd"] == "10.000000"


# --- record batches (plain rows, as the pipeline inserts them) ----------------------------------------------------------


def on_records(rows) -> int:
    """The hook as the record pipeline calls it after inserting a batch (observability/pipeline.py)."""
    return sources.on_records(rows, rate_limited=ErrorCode.RATE_LIMITED, failed_outcomes=WEBHOOK_FAILED_OUTCOMES)


def row(org, n: int, **fields) -> dict:
    base = {
        "id": f"00000000-0000-0000-0000-{n:012d}",
        "org_id": org.pk,
        "key_id": 7,
        "app_id": None,
        "created_at": "2026-12-07T21:30:05+00:00",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "status": 200,
        "outcome": "ok",
        "error_type": "",
        "error": "",
    }
    return {**base, **fields}


def test_rate_limit_refusals_fire_once_per_key_and_minute(org, receiver):
    listen(org, receiver)
    limited = {"status": 429, "outcome": "limited", "error_type": "rate_limited", "error": "Rate limit reached"}
    assert on_records([row(org, n, **limited) for n in range(3)]) == 1
    assert on_records([row(org, 3, **limited)]) == 0  # a later batch, the same key and minute
    assert on_records([row(org, 4, key_id=8, **limited)]) == 1  # another key
    assert on_records([row(org, 5, created_at="2026-12-07T21:31:00+00:00", **limited)]) == 1  # next minute
    first = events_of(org, "ratelimit.exceeded")[0]
    assert first.payload["data"]["refused_in_batch"] == 3 and first.payload["data"]["key_id"] == 7


def test_failed_requests_go_only_to_endpoints_that_opt_in_and_match_the_filter(org, receiver):
    everything = start_receiver()
    try:
        listen(org, everything)  # lists no events: all but the opt-in ones
        listen(org, receiver, events=["request.failed"], failed_statuses=[502])
        failed = {"outcome": "upstream_error", "error_type": "upstream_error"}
        on_records([row(org, 1, status=500, **failed), row(org, 2, status=502, **failed), row(org, 3)])
        (got,) = receiver.wait_for(1)
        assert (
            json.loads(got.body)["data"]["request_id"].endswith("2") and json.loads(got.body)["data"]["status"] == 502
        )
        time.sleep(0.2)
        assert everything.received == [] and len(receiver.received) == 1
    finally:
        everything.server.shutdown()


def test_a_guardrail_decision_fires_once_and_leaves_the_matched_text_home(org, receiver):
    listen(org, receiver, events=["guardrail.triggered"])
    decisions = [{"name": "pii", "action": "redact", "matched": "alice@example.com"}]
    rows = [row(org, 1, guardrail="redacted", guardrail_decisions=decisions), row(org, 2, guardrail="")]
    assert on_records(rows) == 1
    assert on_records(rows[:1]) == 0  # the same record again (a replayed batch)
    (got,) = receiver.wait_for(1)
    data = json.loads(got.body)["data"]
    assert data["guardrail"] == "redacted" and data["decisions"] == [{"name": "pii", "action": "redact"}]
    assert b"alice@example.com" not in got.body


def test_records_of_an_org_without_endpoints_cost_no_event(org):
    limited = {"status": 429, "outcome": "limited", "error_type": "rate_limited"}
    assert on_records([row(org, 1, **limited)]) == 0
    assert not WebhookEvent.objects.exists()


def test_a_rate_limited_request_through_the_gateway_reaches_the_receiver_once(recording, gateway_key, hooks, receiver):
    key, plaintext = gateway_key
    listen(key.org, receiver, events=["ratelimit.exceeded"])
    rate_limit_create(actor=SYSTEM, org=key.org, scope="key", key=key, requests_per_minute=1)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    statuses = [
        httpx.post(
            f"{recording.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {plaintext}"}
        ).status_code
        for _ in range(3)
    ]
    assert statuses.count(429) >= 2
    (got,) = receiver.wait_for(1)
    payload = json.loads(got.body)
    assert payload["type"] == "ratelimit.exceeded" and payload["data"]["key_id"] == key.pk
    time.sleep(0.5)
    assert len(receiver.received) == 1


def test_a_request_a_guardrail_blocks_reaches_the_receiver_as_guardrail_triggered(
    recording, gateway_key, hooks, receiver
):
    key, plaintext = gateway_key
    listen(key.org, receiver, events=["guardrail.triggered"])
    guardrail_policy_create(
        actor=SYSTEM,
        org=key.org,
        name="no codenames",
        checks=[{"name": "codename", "kind": "keywords", "words": ["bluebird"], "action": "block"}],
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "tell me about bluebird"}]}
    answer = httpx.post(
        f"{recording.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {plaintext}"}
    )
    assert answer.status_code == 400
    (got,) = receiver.wait_for(1)
    payload = json.loads(got.body)
    assert payload["type"] == "guardrail.triggered" and payload["data"]["guardrail"] == "blocked"
    assert payload["data"]["decisions"][0]["check"] == "codename"
    assert payload["data"]["decisions"][0]["action"] == "block"
    assert "bluebird" not in got.body.decode()  # the matched text never leaves
    time.sleep(0.5)
    assert len(receiver.received) == 1


# --- circuit breakers, handed over as notes -----------------------------------------------------------------------------


def test_a_circuit_transition_is_noted_once_and_becomes_one_event(org, receiver):
    listen(org, receiver)
    notes, now = [], [0.0]
    health = Health(threshold=2, window=30, cooldown=10, clock=lambda: now[0])
    health.announce = notes.append
    target = TargetKey(str(org.pk), "openai", "gpt-4o", "env")
    for _ in range(4):  # opens at the second failure; more failures while open are not news
        health.record_failure(target, "http", status=503)
    now[0] = 11.0
    health.record_failure(target, "http", status=503)  # the probe fails: re-opened, still down, no new event
    now[0] = 22.0
    health.record_success(target)  # a good probe closes it
    health.record_success(target)
    assert [n["kind"] for n in notes] == ["target_down", "target_up"]
    assert notes[0]["failure"] == "HTTP 503"
    assert sources.on_notes(notes) == 2
    got = [json.loads(r.body) for r in receiver.wait_for(2)]
    assert sorted(p["type"] for p in got) == ["route.target_down", "route.target_up"]
    assert {p["data"]["model"] for p in got} == {"gpt-4o"}


def test_the_record_pipeline_turns_the_proxys_notes_into_events(org, receiver, settings):
    listen(org, receiver)
    pipeline = RecordPipeline()
    try:
        pipeline.note(
            {"kind": "target_down", "org_id": str(org.pk), "provider": "openai", "model": "m", "credential": "env"}
        )
        (got,) = receiver.wait_for(1)
        assert json.loads(got.body)["type"] == "route.target_down"
    finally:
        pipeline.close()


# --- evals and prompts --------------------------------------------------------------------------------------------------


def test_a_finished_eval_run_fires_completed_once(recording, gateway_key, hooks, receiver, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    org = gateway_key[0].org
    listen(org, receiver, events=["eval.run.completed", "eval.run.failed"])
    dataset = evals.dataset_create(actor=SYSTEM, org=org, name="d", items=[clean_item({"variables": {"x": "1"}})])
    run = evals.run_create(
        actor=SYSTEM,
        org=org,
        dataset_version=dataset.latest,
        targets=[{"model": "gpt-4o"}],
        evaluators=[{"kind": "exact_match"}],
    )
    assert finished(run.pk).status == RunStatus.COMPLETED
    (got,) = receiver.wait_for(1)
    payload = json.loads(got.body)
    assert payload["type"] == "eval.run.completed" and payload["data"]["run_id"] == run.pk
    assert payload["data"]["total"] == payload["data"]["done"] == 1
    time.sleep(0.2)
    assert len(receiver.received) == 1


def test_a_failed_eval_run_fires_failed_once(recording, gateway_key, hooks, receiver, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    org = gateway_key[0].org
    listen(org, receiver, events=["eval.run.failed"])
    dataset = evals.dataset_create(actor=SYSTEM, org=org, name="d", items=[clean_item({"variables": {"x": "1"}})])
    run = evals.run_create(
        actor=SYSTEM,
        org=org,
        dataset_version=dataset.latest,
        targets=[{"model": "gpt-4o"}],
        evaluators=[{"kind": "exact_match"}],
    )
    finished(run.pk)
    runner.fail(run, "Gave up.")
    runner.fail(run, "Gave up.")
    (got,) = receiver.wait_for(1)
    assert json.loads(got.body)["data"]["error"] == "Gave up."
    time.sleep(0.2)
    assert len(receiver.received) == 1


def test_moving_a_prompt_label_fires_and_a_move_to_the_same_version_does_not(org, receiver):
    listen(org, receiver)
    prompt = prompts.prompt_create(actor=SYSTEM, org=org, namespace="geo", name="capital")
    v1 = prompts.version_create(actor=SYSTEM, prompt=prompt, model="m", messages=[{"role": "user", "content": "a"}])
    v2 = prompts.version_create(actor=SYSTEM, prompt=prompt, model="m", messages=[{"role": "user", "content": "b"}])
    prompts.label_set(actor=SYSTEM, prompt=prompt, name="production", version=v1)
    prompts.label_set(actor=SYSTEM, prompt=prompt, name="production", version=v2)
    prompts.label_set(actor=SYSTEM, prompt=prompt, name="production", version=v2)
    got = [json.loads(r.body) for r in receiver.wait_for(2)]
    time.sleep(0.2)
    assert len(receiver.received) == 2
    moved = sorted((p["data"] for p in got), key=lambda d: d["version"])
    assert moved[1] == {**moved[1], "label": "production", "version": 2, "previous_version": 1}
    assert moved[1]["prompt"]["ref"] == "geo/capital"


def test_event_ids_are_unique_and_match_the_webhook_id_header(org, receiver):
    listen(org, receiver)
    for n in range(3):
        outbox.emit(org_id=org.pk, event_type="key.created", data={"n": n})
    got = receiver.wait_for(3)
    ids = [r.headers["webhook-id"] for r in got]
    assert len(set(ids)) == 3 and all(json.loads(r.body)["id"] == r.headers["webhook-id"] for r in got)
    assert all(i.startswith("evt_") for i in ids)
    assert datetime.datetime.fromisoformat(json.loads(got[0].body)["timestamp"].replace("Z", "+00:00"))


@pytest.mark.parametrize("shared", ["memory", "redis"])
def test_a_transition_seen_by_two_gateway_processes_is_announced_once(shared):
    """With Redis the process whose report opened (or whose probe closed) the shared circuit announces it; the
    others learn of it by pub/sub and stay quiet. Without Redis there is one process to speak of (embedded)."""
    if shared == "redis" and not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (set in CI)")
    tunables = {"threshold": 3, "window": 2.0, "cooldown": 0.3, "probe_timeout": 2.0}
    notes: list[dict] = []

    def process():
        health = RedisHealth(django_settings.REDIS_URL, **tunables) if shared == "redis" else Health(**tunables)
        health.announce = notes.append
        return health

    target = TargetKey(uuid.uuid4().hex, "openai", "gpt-4o", "env")  # a circuit no other test shares

    async def main():
        first, second = process(), (process() if shared == "redis" else None)
        views = [first, second] if second else [first]
        for n in range(4):
            views[n % len(views)].record_failure(target, "http", status=503)
            for view in views:
                await view.flush()
        await asyncio.sleep(0.35)
        assert await first.claim_probe(target)
        first.record_success(target)
        for view in views:
            await view.flush()

    asyncio.run(main())
    assert [n["kind"] for n in notes] == ["target_down", "target_up"]
