"""Filtering requests by prompt version as the pages write it (`support/greeter@2`), on the records API and the
logs page: a person's reference, never a database id they cannot see; raw ids still work for old links."""

import datetime
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability.models import RequestRecord
from prompts import services
from tenancy.audit import Actor
from tenancy.tests.factories import make_key

URL = "/ingate/api/v1/records/"
SYSTEM = Actor.system("test")


def record(tenant, version=None, **fields):
    return RequestRecord.objects.create(
        org=tenant.org,
        app=tenant.app,
        key=tenant.key,
        provider="openai",
        endpoint="chat.completions",
        model="gpt-4o-mini",
        status=200,
        cost_total=Decimal("0.001"),
        usage_source="reported",
        total_ms=100.0,
        prompt_version=version,
        created_at=timezone.now() - datetime.timedelta(minutes=1),
        **fields,
    )


@pytest.fixture
def versions(world):
    """support/greeter v1 and v2 in the own org, whose ids are not their numbers, with one request each; the
    other org has a prompt of the same name."""
    other = services.prompt_create(actor=SYSTEM, org=world.own.org, namespace="sales", name="pitch")
    for _ in range(3):
        services.version_create(actor=SYSTEM, prompt=other, messages=[{"role": "system", "content": "Buy."}])
    prompt = services.prompt_create(actor=SYSTEM, org=world.own.org, namespace="support", name="greeter")
    v1, v2 = (
        services.version_create(actor=SYSTEM, prompt=prompt, messages=[{"role": "system", "content": f"v{n}"}])
        for n in (1, 2)
    )
    theirs = services.prompt_create(actor=SYSTEM, org=world.other.org, namespace="secret", name="plan")
    services.version_create(actor=SYSTEM, prompt=theirs, messages=[{"role": "system", "content": "hidden"}])
    return {"v1": v1, "v2": v2, "r1": record(world.own, v1), "r2": record(world.own, v2), "none": record(world.own)}


def ids(reply):
    assert reply.status_code == 200, reply.json()
    return {row["id"] for row in reply.json()["results"]}


@pytest.mark.parametrize("ref", ["support/greeter@2", "support/greeter@v2", "greeter@2"])
def test_the_records_api_filters_by_a_version_reference(client_for, world, versions, ref):
    viewer = client_for(user=world.own.users["viewer"])
    assert versions["v2"].pk != 2
    assert ids(viewer.get(URL, {"prompt_version": ref})) == {str(versions["r2"].pk)}


def test_the_records_api_still_takes_a_version_id(client_for, world, versions):
    viewer = client_for(user=world.own.users["viewer"])
    assert ids(viewer.get(URL, {"prompt_version": versions["v1"].pk})) == {str(versions["r1"].pk)}


def test_a_key_that_reads_logs_may_filter_by_reference_without_reading_prompts(client_for, world, versions):
    _, reader = make_key(app=world.own.app, scopes=["logs:read"])
    assert ids(client_for(key=reader).get(URL, {"prompt_version": "support/greeter@1"})) == {str(versions["r1"].pk)}


@pytest.mark.parametrize(
    "ref, message",
    [
        ("support/greeter@9", "support/greeter has no version 9 (the latest is v2)."),
        ("secret/plan@1", "No prompt secret/plan in your organizations."),  # the other org's: unknown, not hidden rows
        ("greeter", "is not a prompt version: write namespace/name@version"),
    ],
)
def test_an_unknown_or_malformed_reference_is_a_field_error(client_for, world, versions, ref, message):
    reply = client_for(user=world.own.users["viewer"]).get(URL, {"prompt_version": ref})
    assert reply.status_code == 400 and message in " ".join(reply.json()["prompt_version"])


def test_totals_and_series_take_the_same_reference(client_for, world, versions):
    viewer = client_for(user=world.own.users["viewer"])
    assert viewer.get(f"{URL}totals/", {"prompt_version": "support/greeter@1"}).json()["requests"] == 1
    assert viewer.get(f"{URL}series/", {"prompt_version": "support/greeter@nope"}).status_code == 400


def test_the_logs_page_filters_by_a_version_reference_and_reports_a_bad_one(world, versions):
    browser = Client()
    browser.force_login(world.own.users["viewer"])
    page = browser.get("/ingate/logs/", {"org": "own-org", "prompt_version": "support/greeter@v1"}).content.decode()
    assert f'data-record="{versions["r1"].pk}"' in page and page.count("data-record=") == 1
    assert 'placeholder="support/greeter@3"' in page
    reply = browser.get("/ingate/logs/", {"org": "own-org", "prompt_version": "support/greeter@7"})
    assert reply.status_code == 200 and "support/greeter has no version 7 (the latest is v2)." in reply.content.decode()
    assert "data-record=" not in reply.content.decode()
