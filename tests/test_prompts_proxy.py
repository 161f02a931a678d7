"""Prompts from the registry used through the gateway by label, from the OpenAI SDK, with promotion and
rollback taking effect on the next request, and every record linked to the version it used."""

import time

import httpx
import openai
import pytest
from django.test import Client

from observability.models import RequestRecord
from prompts import services
from tenancy.audit import Actor
from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, make_key
from tests.test_records import wait_for_record

SYSTEM = Actor.system("test")


@pytest.fixture
def greeter(gateway_key):
    key, _ = gateway_key
    prompt = services.prompt_create(actor=SYSTEM, org=key.org, namespace="support", name="greeter")
    versions = [
        services.version_create(
            actor=SYSTEM,
            prompt=prompt,
            model="gpt-4o-mini",
            parameters={"temperature": 0.1, "max_tokens": 50},
            messages=[{"role": "system", "content": f"Reply in {{{{language}}}}. (v{n})"}],
            commit_message=f"v{n}",
        )
        for n in (1, 2)
    ]
    services.label_set(actor=SYSTEM, prompt=prompt, name="production", version=versions[0])
    return prompt, versions


def ask(client, **kwargs):
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"X-Ingate-Prompt": "support/greeter@production", **kwargs.pop("headers", {})},
        **kwargs,
    )


def test_a_prompt_by_label_is_rendered_in_and_the_record_links_its_version(recording, gateway_key, fake, greeter):
    _, plaintext = gateway_key
    prompt, (v1, v2) = greeter
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = ask(client, temperature=0.9, headers={"X-Ingate-Prompt-Variables": '{"language": "French"}'})
    sent = fake.last_request.json()
    assert sent["messages"] == [
        {"role": "system", "content": "Reply in French. (v1)"},
        {"role": "user", "content": "hello"},
    ]
    assert sent["temperature"] == 0.9 and sent["max_tokens"] == 50  # the client's parameters win
    assert not any(name.startswith("x-ingate") for name in fake.last_request.headers)
    assert wait_for_record(raw.headers["x-ingate-request-id"]).prompt_version_id == v1.pk

    services.label_set(actor=SYSTEM, prompt=prompt, name="production", version=v2)  # promotion
    raw = ask(client, extra_body={"ingate": {"variables": {"language": "German"}}})
    assert fake.last_request.json()["messages"][0]["content"] == "Reply in German. (v2)"
    assert "ingate" not in fake.last_request.json()
    assert wait_for_record(raw.headers["x-ingate-request-id"]).prompt_version_id == v2.pk

    services.label_rollback(actor=SYSTEM, prompt=prompt, name="production")
    raw = ask(client, headers={"X-Ingate-Prompt-Variables": '{"language": "Dutch"}'})
    assert fake.last_request.json()["messages"][0]["content"] == "Reply in Dutch. (v1)"
    wait_for_record(raw.headers["x-ingate-request-id"])
    per_version = {v: RequestRecord.objects.filter(prompt_version_id=v).count() for v in (v1.pk, v2.pk)}
    assert per_version == {v1.pk: 2, v2.pk: 1}
    # Cost, latency and errors group by prompt version in the API and on the prompt's page.
    key, _ = gateway_key
    _, reader = make_key(app=key.app, scopes=["logs:read"])
    series = httpx.get(
        recording.url + "/ingate/api/v1/records/series/",
        params={"group_by": "prompt_version", "bucket": "day"},
        headers={"authorization": f"Bearer {reader}"},
    ).json()
    assert {row["group"]: row["requests"] for row in series} == {str(v1.pk): 2, str(v2.pk): 1}
    assert all(row["cost"] and row["p95_ms"] for row in series)


def test_prompt_errors_come_back_in_the_providers_shape(recording, gateway_key, fake, greeter):
    _, plaintext = gateway_key
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError) as missing:
        ask(client)
    assert "missing variable: language" in missing.value.message
    with pytest.raises(openai.BadRequestError) as unknown:
        ask(client, headers={"X-Ingate-Prompt": "support/nope@production"})
    assert "No prompt support/nope@production" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as garbled:
        ask(client, headers={"X-Ingate-Prompt-Variables": "{not json"})
    assert "not valid JSON" in garbled.value.message
    assert fake.requests == []


def test_the_prompt_page_sends_a_rendered_version_to_a_model_through_the_gateway(recording, gateway_key, fake, greeter):
    key, _ = gateway_key
    prompt, (v1, _) = greeter
    user = MembershipFactory(org=key.org, role=Role.MEMBER).user
    client = Client()
    client.force_login(user)
    fake.defaults["x-fake-text"] = "Bonjour !"
    page = client.post(
        f"/ingate/prompts/{prompt.pk}/render/",
        {
            "version": 1,
            "variables": '{"language": "French"}',
            "model": "gpt-4o-mini",
            "send": "1",
        },
        follow=True,
    ).content.decode()
    assert 'data-testid="answer"' in page and "Bonjour !" in page and "request record" in page
    sent = fake.last_request
    assert sent.json()["messages"] == [{"role": "system", "content": "Reply in French. (v1)"}]
    assert sent.json()["temperature"] == 0.1 and sent.header("authorization") == "Bearer sk-upstream-openai-0001"
    assert not any(name.startswith("x-ingate") for name in sent.headers)
    wait_for_prompt_record(v1.pk)
    record = RequestRecord.objects.get(prompt_version_id=v1.pk)
    assert (record.user_id, record.client, record.org_id, record.key_id) == (
        user.get_username(),
        "ingate-playground",
        key.org_id,
        None,
    )
    assert record.output_tokens == 2 and record.cost_total is not None


def test_the_prompt_page_shows_the_providers_error_when_the_model_fails(recording, gateway_key, fake, greeter):
    key, _ = gateway_key
    prompt, _ = greeter
    client = Client()
    client.force_login(MembershipFactory(org=key.org, role=Role.MEMBER).user)
    fake.defaults["status"] = 404
    page = client.post(
        f"/ingate/prompts/{prompt.pk}/render/",
        {
            "version": 1,
            "variables": '{"language": "French"}',
            "model": "gpt-nope",
            "send": "1",
        },
        follow=True,
    ).content.decode()
    assert 'data-testid="answer"' in page and "fake provider error 404" in page


def wait_for_prompt_record(version_id: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not RequestRecord.objects.filter(prompt_version_id=version_id).exists():
        assert time.monotonic() < deadline, "the page's call was never recorded"
        time.sleep(0.02)


def test_a_viewer_may_render_but_not_send_a_prompt_to_a_model(recording, gateway_key, fake, greeter):
    key, _ = gateway_key
    prompt, _ = greeter
    client = Client()
    client.force_login(MembershipFactory(org=key.org, role=Role.VIEWER).user)
    page = client.post(
        f"/ingate/prompts/{prompt.pk}/render/",
        {
            "version": 1,
            "variables": '{"language": "French"}',
            "model": "gpt-4o-mini",
            "send": "1",
        },
        follow=True,
    ).content.decode()
    assert "Reply in French. (v1)" in page and "may read prompts but not send them" in page
    assert not fake.requests
