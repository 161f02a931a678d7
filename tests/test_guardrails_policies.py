"""Guardrail policies as data: refused when a check cannot run (with the field named) through the services and
the API, one policy per org default, app and key, and a saved policy applying to the very next request."""

from __future__ import annotations

import openai
import pytest
from django.core.exceptions import ValidationError

from tenancy import selectors
from tenancy.audit import Actor
from tenancy.guardrails import guardrail_policy_create, guardrail_policy_update
from tenancy.models import AuditLog, Role

SYSTEM = Actor.system("test")
API = "/ingate/api/v1/guardrail-policies/"


def test_an_invalid_regex_is_refused_on_save_with_the_check_and_field_named(world):
    with pytest.raises(ValidationError) as caught:
        guardrail_policy_create(
            actor=SYSTEM, org=world.own.org, name="p", checks=[{"name": "x", "kind": "regex", "pattern": "a("}]
        )
    [message] = caught.value.message_dict["checks"]
    assert message.startswith("checks[0].pattern: not a valid regular expression")


def test_the_api_refuses_a_bad_schema_as_a_field_error_and_saves_a_good_policy(world, client_for):
    admin = client_for(world.own.users[Role.ADMIN])
    bad = {"name": "x", "kind": "json", "schema": {"type": 12}}
    answer = admin.post(API, {"org": world.own.org.pk, "name": "p", "checks": [bad]}, format="json")
    assert answer.status_code == 400 and answer.json()["checks"][0].startswith("checks[0].schema:")
    good = [{"name": "pii", "kind": "pii", "action": "redact"}, {"name": "out", "kind": "json", "action": "flag"}]
    made = admin.post(API, {"org": world.own.org.pk, "name": "p", "checks": good, "restore": True}, format="json")
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["checks"][0] == {"name": "pii", "kind": "pii", "action": "redact", "direction": "request"}
    assert (
        body["checks"][1]["direction"] == "response" and body["stream_mode"] == "hold" and body["on_error"] == "block"
    )
    assert AuditLog.objects.filter(org=world.own.org, object_type__icontains="guardrail", action="create").exists()
    again = admin.post(API, {"org": world.own.org.pk, "name": "second"}, format="json")
    assert again.status_code == 400 and "already has a policy" in again.json()["app"][0]


def test_the_loader_gives_the_proxy_enabled_policies_as_plain_rows(world):
    on = guardrail_policy_create(actor=SYSTEM, org=world.own.org, name="on")
    guardrail_policy_create(actor=SYSTEM, org=world.own.org, app=world.own.app, name="off", enabled=False)
    guardrail_policy_create(actor=SYSTEM, org=world.other.org, name="theirs")
    [row] = selectors.guardrail_policies_of(world.own.org.pk)
    assert row["id"] == on.pk and row["checks"] == [] and row["app_id"] is None


def test_a_saved_policy_applies_to_the_next_request(gateway, gateway_key, fake):
    key, plaintext = gateway_key
    client = openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0)
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "project bluebird"}]}
    assert client.chat.completions.create(**ask)
    policy = guardrail_policy_create(actor=SYSTEM, org=key.org, name="p")
    assert client.chat.completions.create(**ask)  # no checks yet
    guardrail_policy_update(
        actor=SYSTEM, policy=policy, checks=[{"name": "codename", "kind": "keywords", "words": ["bluebird"]}]
    )
    with pytest.raises(openai.BadRequestError, match="codename"):
        client.chat.completions.create(**ask)


def test_the_guardrails_page_lists_policies_and_recent_decisions_for_admins_only(recording, gateway_key, fake):
    import time

    from django.test import Client

    from observability.models import RequestRecord
    from tenancy.tests.factories import MembershipFactory, UserFactory

    key, plaintext = gateway_key
    guardrail_policy_create(
        actor=SYSTEM,
        org=key.org,
        name="no codenames",
        checks=[{"name": "codename", "kind": "keywords", "words": ["bluebird"]}],
    )
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "bluebird plans"}])
    deadline = time.monotonic() + 5
    while not RequestRecord.objects.filter(org=key.org, guardrail="blocked").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    admin, viewer = Client(), Client()
    admin.force_login(MembershipFactory(org=key.org, role=Role.ADMIN, user=UserFactory(username="admin")).user)
    viewer.force_login(MembershipFactory(org=key.org, role=Role.VIEWER, user=UserFactory(username="viewer")).user)
    page = admin.get("/ingate/guardrails/").content.decode()
    assert "no codenames" in page and "bluebird" in page  # the policy's words, shown to an admin
    decisions = page[page.index('data-testid="guardrail-decisions"') :]
    assert "codename" in decisions and "blocked" in decisions and "bluebird plans" not in decisions
    assert "no codenames" not in viewer.get("/ingate/guardrails/").content.decode()


def test_the_admin_refuses_a_bad_pattern_on_the_checks_field(world):
    import json

    from django.test import Client

    browser = Client()
    browser.force_login(world.staff)
    form = {
        "org": world.own.org.pk,
        "name": "from the admin",
        "enabled": "on",
        "checks": json.dumps([{"name": "x", "kind": "regex", "pattern": "(?<=lookbehind)"}]),
        "message": "",
        "stream_mode": "hold",
        "on_error": "block",
    }
    page = browser.post("/admin/tenancy/guardrailpolicy/add/", form)
    assert page.status_code == 200 and "checks[0].pattern: not a valid regular expression" in page.content.decode()
    form["checks"] = json.dumps([{"name": "x", "kind": "regex", "pattern": "secret-\\d+"}])
    assert browser.post("/admin/tenancy/guardrailpolicy/add/", form).status_code == 302
    assert selectors.guardrail_policies_of(world.own.org.pk)[0]["checks"][0]["direction"] == "request"
