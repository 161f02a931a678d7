"""A request's detail page: what was kept of its bodies under the org's body mode (the request's shape in the
default `metadata` mode, never two empty boxes), which mode is on and where it is changed; the prompt version
it used, linked; and the billing facts a record may carry (service tier, 1-hour cache writes, server tools)."""

import datetime
import html
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability.bodies import request_metadata
from observability.models import ObservabilitySettings, RequestBody, RequestRecord
from prompts import services
from tenancy.audit import Actor

SHAPE = {
    "model": "gpt-4o-mini",
    "temperature": 0.2,
    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Where?"},
        {"role": "user", "content": "Oslo"},
    ],
}


def make_record(tenant, **fields):
    return RequestRecord.objects.create(
        org=tenant.org,
        app=tenant.app,
        key=tenant.key,
        provider="openai",
        endpoint="chat.completions",
        model="gpt-4o-mini",
        status=200,
        input_tokens=1200,
        output_tokens=300,
        total_tokens=1500,
        cost_total=Decimal("0.00036"),
        usage_source="reported",
        total_ms=850.0,
        created_at=timezone.now() - datetime.timedelta(minutes=5),
        **fields,
    )


@pytest.fixture
def browser(world):
    client = Client()
    client.force_login(world.own.users["viewer"])
    return client


def page_of(browser, record) -> str:
    reply = browser.get(f"/ingate/logs/{record.pk}/")
    assert reply.status_code == 200
    return html.unescape(reply.content.decode())


def test_in_the_default_metadata_mode_the_page_shows_the_requests_shape_and_no_empty_bodies(browser, world):
    record = make_record(world.own)
    RequestBody.objects.create(record=record, created_at=record.created_at, metadata=request_metadata(SHAPE, 812))
    page = page_of(browser, record)
    assert (
        "Body mode of Own Org: <b>metadata</b>: the request's shape (messages by role, tools, parameters) is "
        "kept, not its text; bodies are kept only in <code>full</code> mode."
    ) in page
    assert (
        '<code>POST /ingate/api/v1/observability-settings/</code> <code>{"org": '
        + str(world.own.org.pk)
        + ', "body_mode": "off" | "metadata" | "full"}</code>'
    ) in page
    assert "<th>Messages</th><td>1 system, 2 user, 1 assistant</td>" in page
    assert "<th>Tools</th><td>get_weather</td>" in page and "<th>temperature</th><td>0.2</td>" in page
    assert "<th>Request size</th><td>812 bytes</td>" in page
    assert 'data-testid="request-json"' not in page and "This request's bodies were not kept, only its shape." in page


def test_in_full_mode_the_bodies_are_shown_with_the_shape(browser, world):
    ObservabilitySettings.objects.create(org=world.own.org, body_mode="full")
    record = make_record(world.own)
    RequestBody.objects.create(
        record=record,
        created_at=record.created_at,
        metadata=request_metadata(SHAPE, 812),
        request='{"messages": "Weather in Oslo?"}',
        response="Sunny, 21 °C.",
    )
    page = page_of(browser, record)
    assert "Body mode of Own Org: <b>full</b>: request and response bodies are kept, size-capped." in page
    assert (
        '<pre class="body" id="request-json" data-testid="request-json">{\n  "messages": "Weather in Oslo?"\n}</pre>'
        in page
    )
    assert "Sunny, 21 °C." in page


def test_with_bodies_off_the_page_says_nothing_was_kept(browser, world):
    ObservabilitySettings.objects.create(org=world.own.org, body_mode="off")
    page = page_of(browser, make_record(world.own))
    assert "Body mode of Own Org: <b>off</b>: nothing of the bodies is kept." in page
    assert "Nothing of this request's bodies was kept." in page


def test_the_prompt_version_a_request_used_links_to_its_prompt(browser, world):
    actor = Actor.system("test")
    prompt = services.prompt_create(actor=actor, org=world.own.org, namespace="support", name="greeter")
    services.version_create(actor=actor, prompt=prompt, messages=[{"role": "system", "content": "v1"}])
    v2 = services.version_create(actor=actor, prompt=prompt, messages=[{"role": "system", "content": "v2"}])
    page = page_of(browser, make_record(world.own, prompt_version=v2))
    assert (
        f'<td data-testid="prompt-version"><a href="/ingate/prompts/{prompt.pk}/">support/greeter@v2</a></td>' in page
    )
    gone = page_of(browser, make_record(world.own, prompt_version_id=987654))
    assert "id 987654 <small>(no longer in the registry)</small>" in gone
    assert 'data-testid="prompt-version"' not in page_of(browser, make_record(world.own))


def test_billing_facts_are_shown_when_the_record_has_them(browser, world):
    page = page_of(
        browser,
        make_record(
            world.own,
            service_tier="flex",
            cache_write_tokens=2000,
            cache_write_1h_tokens=1500,
            tool_calls={"web_search": 2, "code_execution": 1},
            cost_tools=Decimal("0.02"),
        ),
    )
    assert '<td data-testid="service-tier">flex</td>' in page
    assert "(of which 1 h: 1,500)" in page
    assert "web_search × 2, code_execution × 1" in page and "$0.02" in page
    plain = page_of(browser, make_record(world.own))
    assert not any(f'data-testid="{name}"' in plain for name in ("service-tier", "cache-write-1h", "tool-calls"))


def test_staff_are_pointed_at_the_admin_to_change_the_body_mode(world):
    staff = Client()
    staff.force_login(world.staff)
    page = page_of(staff, make_record(world.own))
    assert 'or in the <a href="/admin/observability/observabilitysettings/">admin</a>' in page
