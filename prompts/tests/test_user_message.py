"""The prompt page's "User message": sent as the user's turn after the rendered prompt; and a system prompt
alone, which Anthropic and Gemini refuse (`"messages": []`), refused on the page before anything is sent."""

import html
import time

import pytest
from django.test import Client

from observability.models import RequestRecord
from prompts import services
from tenancy.audit import Actor
from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory

SYSTEM = Actor.system("test")


@pytest.fixture
def refunds(gateway_key):
    """A system-only prompt for Claude, in the gateway key's org."""
    key, _ = gateway_key
    prompt = services.prompt_create(actor=SYSTEM, org=key.org, namespace="support", name="refunds")
    version = services.version_create(
        actor=SYSTEM,
        prompt=prompt,
        model="claude-3-5-haiku-latest",
        messages=[{"role": "system", "content": "You help {{company}} with refunds."}],
    )
    return prompt, version


@pytest.fixture
def member(gateway_key) -> Client:
    key, _ = gateway_key
    client = Client()
    client.force_login(MembershipFactory(org=key.org, role=Role.MEMBER).user)
    return client


def post(client, prompt, **fields) -> str:
    form = {"version": "1", "variables": '{"company": "Acme"}', **fields}
    return html.unescape(client.post(f"/ingate/prompts/{prompt.pk}/render/", form, follow=True).content.decode())


def test_the_user_message_is_sent_to_anthropic_as_the_turn_after_the_system_prompt(recording, member, fake, refunds):
    prompt, version = refunds
    fake.defaults["x-fake-text"] = "Within 5 days."
    page = post(member, prompt, user="Where is my refund?", send="1")
    assert 'data-testid="answer"' in page and "Within 5 days." in page
    sent = fake.last_request.json()
    assert sent["system"] == "You help Acme with refunds."
    assert sent["messages"] == [{"role": "user", "content": "Where is my refund?"}]
    deadline = time.monotonic() + 5
    while not RequestRecord.objects.filter(prompt_version_id=version.pk).exists():
        assert time.monotonic() < deadline, "the call was never recorded"
        time.sleep(0.02)


@pytest.mark.parametrize("model", ["claude-3-5-haiku-latest", "gemini-2.0-flash"])
def test_sending_a_system_prompt_alone_to_a_provider_that_refuses_it_is_an_error_and_nothing_is_sent(
    recording, member, fake, refunds, model
):
    prompt, _ = refunds
    page = post(member, prompt, model=model, send="1")
    assert (
        "refuses a request without a user message, and this one has only a system prompt: write a user message" in page
    )
    assert 'data-testid="answer"' not in page
    assert fake.requests == []


def test_rendering_a_system_prompt_alone_shows_the_body_and_warns_that_anthropic_would_refuse_it(member, refunds, fake):
    prompt, _ = refunds
    page = post(member, prompt)
    assert '"system": "You help Acme with refunds."' in page and '"messages": []' in page
    assert 'data-testid="render-warning"' in page and "Anthropic refuses a request without a user message" in page
    page = post(member, prompt, user="Where is my refund?")
    assert '"content": "Where is my refund?"' in page and 'data-testid="render-warning"' not in page
    assert "Where is my refund?</textarea>" in page  # the form keeps what was typed
    assert fake.requests == []


def test_openai_still_takes_a_system_prompt_alone(recording, member, fake, refunds):
    prompt, _ = refunds
    fake.defaults["x-fake-text"] = "Hello."
    page = post(member, prompt, model="gpt-4o-mini", send="1")
    assert "Hello." in page
    assert fake.last_request.json()["messages"] == [{"role": "system", "content": "You help Acme with refunds."}]


def test_bad_variables_are_a_form_error_and_nothing_is_sent(recording, member, fake, refunds):
    prompt, _ = refunds
    page = post(member, prompt, variables="{nope", user="hi", send="1")
    assert "Variables are not valid JSON" in page and fake.requests == []
    page = post(member, prompt, version="9", user="hi", send="1")
    assert "support/refunds has no version 9 (the latest is v1)." in page and fake.requests == []


def test_the_render_api_takes_the_same_user_message(client_for, world):
    prompt = services.prompt_create(actor=SYSTEM, org=world.own.org, namespace="support", name="refunds")
    services.version_create(
        actor=SYSTEM, prompt=prompt, messages=[{"role": "system", "content": "You help {{company}}."}]
    )
    reply = client_for(user=world.own.users["viewer"]).post(
        f"/ingate/api/v1/prompts/{prompt.pk}/render/",
        {"version": 1, "variables": {"company": "Acme"}, "provider": "anthropic", "user": "Where is my refund?"},
        format="json",
    )
    assert reply.status_code == 200, reply.json()
    assert reply.json()["request"]["system"] == "You help Acme."
    assert reply.json()["request"]["messages"] == [{"role": "user", "content": "Where is my refund?"}]
