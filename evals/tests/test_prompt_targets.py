"""Eval targets and playground columns that use a prompt version: named as the pages write it
(`support/greeter@1`) on the eval-runs API, and a system prompt alone refused for providers that refuse it
(Anthropic, Gemini) before anything is sent."""

import json

import pytest
from django.test import Client

from evals import services
from evals.models import EvalResult
from evals.tests.waiting import finished
from evals.transfer import clean_item
from prompts import services as prompts
from tenancy.audit import Actor

SYSTEM = Actor.system("test")
RUNS = "/ingate/api/v1/eval-runs/"


@pytest.fixture
def member(client_for, world):
    return client_for(user=world.own.users["member"])


@pytest.fixture
def greeter(world):
    """support/greeter: a system prompt alone, v1 and v2 (ids unlike their numbers), in the own org."""
    prompts.version_create(
        actor=SYSTEM,
        prompt=prompts.prompt_create(actor=SYSTEM, org=world.own.org, namespace="x", name="y"),
        messages=[{"role": "user", "content": "."}],
    )
    prompt = prompts.prompt_create(actor=SYSTEM, org=world.own.org, namespace="support", name="greeter")
    return [
        prompts.version_create(
            actor=SYSTEM,
            prompt=prompt,
            model="claude-3-5-haiku-latest",
            messages=[{"role": "system", "content": f"Greet {{{{name}}}} (v{n})."}],
        )
        for n in (1, 2)
    ]


@pytest.fixture
def names(world):
    return services.dataset_create(
        actor=SYSTEM,
        org=world.own.org,
        name="names",
        items=[clean_item({"variables": {"name": "Ann"}, "expected": "Hi Ann"})],
    )


def create_run(api, world, dataset, *targets):
    return api.post(
        RUNS,
        {
            "org": world.own.org.pk,
            "dataset_version": dataset.latest.pk,
            "targets": list(targets),
            "evaluators": [{"kind": "exact_match"}],
        },
        format="json",
    )


def test_a_run_target_names_its_prompt_version_as_the_pages_write_it(member, world, greeter, names):
    reply = create_run(
        member,
        world,
        names,
        {"prompt_version": "support/greeter@1", "model": "gpt-4o"},
        {"prompt_version": "greeter@v2", "model": "gpt-4o"},
        {"prompt_version": greeter[0].pk, "model": "gpt-4o"},
    )
    assert reply.status_code == 201, reply.json()
    targets = reply.json()["target_list"]
    assert [t["prompt_version"] for t in targets] == [greeter[0].pk, greeter[1].pk, greeter[0].pk]
    assert [t["prompt_version_ref"] for t in targets] == ["support/greeter@1", "support/greeter@2", "support/greeter@1"]
    assert targets[0]["label"] == "support/greeter@1 · openai/gpt-4o"


def test_an_unknown_version_reference_is_a_field_error_naming_what_exists(member, world, greeter, names):
    other = prompts.prompt_create(actor=SYSTEM, org=world.other.org, namespace="secret", name="plan")
    prompts.version_create(actor=SYSTEM, prompt=other, messages=[{"role": "system", "content": "hidden"}])
    reply = create_run(
        member,
        world,
        names,
        {"prompt_version": "support/greeter@5", "model": "gpt-4o"},
        {"prompt_version": "secret/plan@1", "model": "gpt-4o"},
    )
    assert reply.status_code == 400
    assert reply.json()["targets.0.prompt_version"] == ["support/greeter has no version 5 (the latest is v2)."]
    assert reply.json()["targets.1.prompt_version"] == ["No prompt secret/plan in your organizations."]


def test_a_run_of_a_system_prompt_alone_on_anthropic_records_why_for_each_item_and_sends_nothing(
    member, world, greeter, names, recording, fake, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    reply = create_run(member, world, names, {"prompt_version": "support/greeter@1"})
    assert reply.status_code == 201, reply.json()
    run = finished(reply.json()["id"])
    assert (run.status, run.done, run.failed) == ("completed", 1, 1)
    assert "Anthropic refuses a request without a user message" in EvalResult.objects.get(run=run).error
    assert fake.requests == []


def test_a_playground_column_with_a_system_prompt_alone_for_anthropic_is_refused_before_sending(world, greeter, fake):
    client = Client()
    client.force_login(world.own.users["member"])
    reply = client.post(
        "/ingate/evals/playground/stream/",
        json.dumps(
            {
                "org": "own-org",
                "model": "claude-3-5-haiku-latest",
                "prompt_version": greeter[0].pk,
                "variables": {"name": "Ann"},
                "user": "",
            }
        ),
        content_type="application/json",
    )
    assert reply.status_code == 400 and "Anthropic refuses a request without a user message" in reply.json()["error"]
    assert fake.requests == []
