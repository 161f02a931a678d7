"""Eval runs end to end in the embedded default (no broker: a background thread runs them): a dataset × two prompt versions × two models
× evaluators, every call through the gateway's proxy path to the fake provider, results and aggregates
checked, every call in the request records with its cost; then cancellation, resumption and comparison."""

import json
import time
import uuid

import pytest

from evals import runner, services
from evals.compare import compare
from evals.models import EvalResult, EvalRun, RunStatus
from evals.tests.waiting import finished
from evals.transfer import clean_item
from observability.models import RequestRecord
from prompts import services as prompts
from tenancy.audit import Actor

SYSTEM = Actor.system("test")
CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Peru": "Lima", "Kenya": "Nairobi"}


def scripted(model: str, text: str):
    """gpt-4o knows every capital; gpt-4o-mini gets Peru and Kenya wrong; the judge answers in JSON."""
    if model == "claude-3-5-haiku-latest":
        return json.dumps({"score": 0.9 if "Paris" in text or "Tokyo" in text else 0.2, "reason": "checked"})
    country = next((c for c in CAPITALS if c in text), None)
    if country is None:
        return None
    if model == "gpt-4o-mini" and country in ("Peru", "Kenya"):
        return "I am not sure."
    return CAPITALS[country]


@pytest.fixture
def setup(recording, gateway_key, fake, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded default, also when CI runs with Redis (see test_worker.py)
    key, _ = gateway_key
    fake.answers = scripted
    dataset = services.dataset_create(
        actor=SYSTEM,
        org=key.org,
        name="capitals",
        items=[clean_item({"variables": {"country": c}, "expected": city}) for c, city in CAPITALS.items()],
    )
    prompt = prompts.prompt_create(actor=SYSTEM, org=key.org, namespace="geo", name="capital")
    v1 = prompts.version_create(
        actor=SYSTEM,
        prompt=prompt,
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Capital of {{country}}?"}],
    )
    v2 = prompts.version_create(
        actor=SYSTEM,
        prompt=prompt,
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "One word."},
            {"role": "user", "content": "What is the capital of {{country}}?"},
        ],
    )
    return key.org, dataset, (v1, v2)


def queue(org, dataset, targets, evaluators, **kwargs) -> EvalRun:
    return services.run_create(
        actor=SYSTEM, org=org, dataset_version=dataset.latest, targets=targets, evaluators=evaluators, **kwargs
    )


def queue_and_wait(org, dataset, targets, evaluators, **kwargs) -> EvalRun:
    """Queued, and finished by the background thread (the POST that queues a run does not wait for it)."""
    return finished(queue(org, dataset, targets, evaluators, **kwargs).pk)


def records_of(run: EvalRun, expected: int, timeout: float = 5.0) -> list[RequestRecord]:
    deadline = time.monotonic() + timeout
    while True:
        found = list(RequestRecord.objects.filter(session_id=run.session_id))
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_run_of_two_prompt_versions_on_two_models_scores_every_item_and_records_every_call(setup, fake):
    org, dataset, (v1, v2) = setup
    run = queue_and_wait(
        org,
        dataset,
        [
            {"prompt_version": v1.pk, "model": "gpt-4o-mini"},
            {"prompt_version": v1.pk, "model": "gpt-4o"},
            {"prompt_version": v2.pk, "model": "gpt-4o-mini"},
            {"prompt_version": v2.pk, "model": "gpt-4o"},
        ],
        [
            {"kind": "exact_match"},
            {"kind": "similarity", "threshold": 0.9},
            {
                "kind": "llm_judge",
                "name": "judge",
                "rubric": "Names the right capital.",
                "provider": "anthropic",
                "model": "claude-3-5-haiku-latest",
            },
        ],
        concurrency=3,
    )
    assert (run.status, run.done, run.total, run.failed, run.attempts) == (RunStatus.COMPLETED, 16, 16, 0, 1)
    summaries = {t.position: t.summary for t in run.targets.all()}
    assert [summaries[p]["evaluators"]["exact_match"]["pass_rate"] for p in range(4)] == [0.5, 1.0, 0.5, 1.0]
    assert summaries[1]["evaluators"]["judge"]["mean"] == pytest.approx((0.9 + 0.9 + 0.2 + 0.2) / 4)
    assert summaries[1]["pass_rate"] == 0.5  # the judge fails Peru and Kenya: every evaluator must pass
    assert all(
        s["items"] == 4 and s["cost"] > 0 and s["latency_p95_ms"] >= s["latency_p50_ms"] for s in summaries.values()
    )

    peru = EvalResult.objects.get(target__position=0, item__variables__country="Peru")
    assert peru.output == "I am not sure." and not peru.passed and peru.cost > 0 and peru.judge_cost > 0
    exact = next(s for s in peru.scores if s["name"] == "exact_match")
    assert exact["score"] == 0 and "Lima" in exact["explanation"]

    sent = [r.json() for r in fake.requests if r.path == "/v1/chat/completions"]
    assert {"role": "system", "content": "One word."} in [m for body in sent for m in body["messages"]]
    assert {m["content"] for body in sent for m in body["messages"]} >= {
        "Capital of Kenya?",
        "What is the capital of Kenya?",
    }
    assert not any(name.startswith("x-ingate") for r in fake.requests for name in r.headers)

    records = records_of(run, 32)  # 16 answers + 16 judge calls, each recorded and costed
    assert len(records) == 32 and all(r.cost_total is not None and r.org_id == org.pk for r in records)
    assert {r.client for r in records} == {"ingate-evals", "ingate-evals-judge"}
    answers = [r for r in records if r.client == "ingate-evals"]
    assert {r.properties["eval-run"] for r in records} == {str(run.pk)}
    assert {r.prompt_version_id for r in answers} == {v1.pk, v2.pk}
    assert {peru.request_id} <= {str(r.pk) for r in answers}


def test_raw_message_targets_fill_placeholders_and_a_missing_variable_is_an_item_error(setup):
    org, dataset, _ = setup
    services.items_add(actor=SYSTEM, dataset=dataset, items=[clean_item({"variables": {"land": "Chad"}})])
    run = queue_and_wait(
        org,
        dataset.__class__.objects.get(pk=dataset.pk),
        [{"messages": [{"role": "user", "content": "Capital of {{country}}?"}], "model": "gpt-4o"}],
        [{"kind": "exact_match"}],
    )
    assert (run.status, run.done, run.failed) == (RunStatus.COMPLETED, 5, 1)
    broken = EvalResult.objects.get(run=run, item__variables__land="Chad")
    assert "missing variable: country" in broken.error and broken.request_id == "" and not broken.passed
    assert EvalResult.objects.filter(run=run, passed=True).count() == 4


def test_a_target_without_a_prompt_on_items_without_messages_is_an_error_per_item_and_the_run_completes(setup, fake):
    org, dataset, _ = setup  # the items carry variables only
    run = queue_and_wait(org, dataset, [{"model": "gpt-4o"}], [{"kind": "exact_match"}])
    assert (run.status, run.done, run.failed) == (RunStatus.COMPLETED, 4, 4)
    assert {r.error for r in run.results.all()} == {"The item has no messages and the target no prompt to give it."}
    assert not fake.requests


def test_a_failing_model_is_recorded_per_item_not_a_failed_run(setup, fake):
    org, dataset, _ = setup
    fake.defaults["status"] = 500
    run = queue_and_wait(
        org,
        dataset,
        [{"messages": [{"role": "user", "content": "{{country}}"}], "model": "gpt-4o"}],
        [{"kind": "contains", "values": ["a"]}],
    )
    assert (run.status, run.done, run.failed) == (RunStatus.COMPLETED, 4, 4)
    assert all("fake provider error 500" in r.error and r.scores[0]["score"] == 0 for r in run.results.all())


def test_bad_targets_and_evaluators_are_field_errors_and_nothing_is_queued(setup):
    org, dataset, (v1, _) = setup
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as bad:
        queue(org, dataset, [{"model": ""}, {"prompt_version": 999999}], [{"kind": "regex", "pattern": "("}])
    assert set(bad.value.message_dict) >= {"evaluators.0.pattern"}
    with pytest.raises(ValidationError) as bad:
        queue(org, dataset, [{"model": ""}, {"prompt_version": 999999}], [{"kind": "exact_match"}])
    assert set(bad.value.message_dict) == {"targets.0.model", "targets.1.prompt_version"}
    assert not EvalRun.objects.exists()


def test_a_resumed_run_skips_stored_items_and_counts_each_once(setup):
    """What a worker dying mid-run leaves: some results stored, the run 'running' with a stale heartbeat."""
    org, dataset, _ = setup
    run = queue(
        org,
        dataset,
        [{"messages": [{"role": "user", "content": "{{country}}"}], "model": "gpt-4o"}],
        [{"kind": "exact_match"}],
        queue=False,
    )  # the test plays the worker that died
    lease = uuid.uuid4()
    assert runner.claim(run.pk, lease)
    dead = runner.Execution(EvalRun.objects.select_related("org").get(pk=run.pk), lease)
    target, first = dead._pending()[0]
    dead._save(target, first, None, runner.Case(output="Paris", expected="Paris"), [])
    assert not runner.claim(run.pk, uuid.uuid4())  # its heartbeat is fresh: nobody else takes it
    assert runner.stalled() == []
    EvalRun.objects.filter(pk=run.pk).update(heartbeat_at=run.created_at - runner.datetime.timedelta(hours=1))
    assert runner.stalled() == [run.pk]
    assert runner.execute(run.pk) == RunStatus.COMPLETED
    assert not dead._save(target, first, None, runner.Case(output="late"), [])  # the dead worker's lease is gone
    run.refresh_from_db()
    assert (run.done, run.total, run.attempts) == (4, 4, 2)
    assert EvalResult.objects.filter(run=run).count() == 4
    assert EvalResult.objects.get(run=run, item=first).output == "Paris"  # the earlier attempt's result stands


def test_cancelling_a_queued_run_stops_it_before_any_call(setup, fake):
    org, dataset, _ = setup
    run = queue(
        org,
        dataset,
        [{"messages": [{"role": "user", "content": "{{country}}"}], "model": "gpt-4o"}],
        [{"kind": "exact_match"}],
        queue=False,
    )
    services.run_cancel(actor=SYSTEM, run=run)
    assert runner.execute(run.pk) == "not claimed"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.done == 0 and not fake.requests


def test_comparing_two_targets_finds_regressions_improvements_and_deltas(setup):
    org, dataset, (v1, _) = setup
    run = queue_and_wait(
        org,
        dataset,
        [{"prompt_version": v1.pk, "model": "gpt-4o"}, {"prompt_version": v1.pk, "model": "gpt-4o-mini"}],
        [{"kind": "exact_match"}],
    )
    a, b = run.targets.order_by("position")
    result = compare(a, b)
    assert result["counts"]["regression"] == 2 and result["counts"]["same"] == 2
    assert {r["input"] for r in result["rows"] if r["change"] == "regression"} == {"country=Peru", "country=Kenya"}
    assert result["delta"]["pass_rate"] == -0.5 and result["delta"]["evaluators"]["exact_match"]["mean"] == -0.5
    back = compare(b, a)
    assert back["counts"]["improvement"] == 2 and back["delta"]["pass_rate"] == 0.5


def test_cancelling_a_running_run_hangs_up_the_calls_in_flight_and_keeps_what_is_done(setup, fake, settings):
    import threading

    org, dataset, _ = setup
    settings.INGATE_EVAL_HEARTBEAT_SECONDS = 0.1
    fake.defaults["delay_ms"] = 400
    run = queue(
        org,
        dataset,
        [{"messages": [{"role": "user", "content": "{{country}}"}], "model": "gpt-4o"}],
        [{"kind": "exact_match"}],
        concurrency=1,
        queue=False,
    )

    def work():
        from django.db import connection

        runner.execute(run.pk)
        connection.close()  # what Celery does after each task

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 10
    while not EvalResult.objects.filter(run=run).exists():
        assert time.monotonic() < deadline, "no item finished"
        time.sleep(0.02)
    services.run_cancel(actor=SYSTEM, run=run)
    worker.join(timeout=10)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and 1 <= run.done < 4 and run.finished_at is not None
    assert run.targets.get().summary["items"] == run.done
    hung_up = records_of(run, run.done + 1)
    assert "client_disconnect" in {r.outcome for r in hung_up}  # the call in flight when the cancel came
    assert fake.wait_for_disconnects(1, timeout=3)  # the upstream saw the hang-up


def test_each_run_reads_the_orgs_credentials_afresh_even_where_no_invalidation_reaches(setup, fake):
    """Workers hear no cache invalidations; a credential changed behind the caches' back (a queryset update
    sends no signal) still applies from the next run on."""
    from tenancy.models import ProviderCredential
    from tenancy.tests.factories import make_credential

    org, dataset, _ = setup
    make_credential(org, provider="openai", secret="sk-org-0001", base_url="http://127.0.0.1:9")  # nothing listens
    target = [{"messages": [{"role": "user", "content": "{{country}}"}], "model": "gpt-4o"}]
    broken = queue_and_wait(org, dataset, target, [{"kind": "exact_match"}])
    assert broken.failed == 4 and "could not reach" in broken.results.first().error
    ProviderCredential.objects.filter(org=org, provider="openai").update(base_url=fake.url)
    fixed = queue_and_wait(org, dataset, target, [{"kind": "exact_match"}])
    assert (fixed.failed, fixed.targets.get().summary["pass_rate"]) == (0, 1.0)
