"""`?search=` on the records API and the logs page: a case-insensitive match over the short text columns."""

import pytest
from django.test import Client

from observability.models import RequestRecord

URL = "/ingate/api/v1/records/"


def record(tenant, **fields):
    values = {
        "org": tenant.org,
        "app": tenant.app,
        "key": tenant.key,
        "provider": "openai",
        "endpoint": "chat.completions",
        "model": "gpt-4o-mini",
        "status": 200,
    }
    return RequestRecord.objects.create(**(values | fields))


@pytest.fixture
def records(world):
    own = world.own
    return {
        "model": record(own, model="claude-haiku-4-5", provider="anthropic"),
        "answered": record(own, model="gpt-4o", response_model="gpt-4o-2024-08-06"),
        "session": record(own, session_id="Refund-Flow-42"),
        "user": record(own, user_id="alice@example.com"),
        "error": record(own, status=429, outcome="upstream_error", error="Rate limit reached for requests"),
        "client": record(own, client="aider"),
        "other_org": record(world.other, model="claude-haiku-4-5", session_id="Refund-Flow-42"),
    }


def found(reply) -> set[str]:
    assert reply.status_code == 200, reply.content
    return {row["id"] for row in reply.json()["results"]}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("HAIKU", "model"),
        ("2024-08-06", "answered"),
        ("refund-flow", "session"),
        ("ALICE@", "user"),
        ("rate limit", "error"),
        ("Aider", "client"),
    ],
)
def test_search_finds_records_by_model_answered_model_session_user_error_or_client_ignoring_case(
    client_for, world, records, query, expected
):
    reply = client_for(user=world.own.users["viewer"]).get(URL, {"search": query})
    assert found(reply) == {str(records[expected].pk)}


def test_a_search_that_matches_nothing_returns_nothing_rather_than_everything(client_for, world, records):
    assert found(client_for(user=world.own.users["viewer"]).get(URL, {"search": "no-such-thing"})) == set()


def test_search_narrows_totals_and_sessions_like_every_other_filter(client_for, world, records):
    api = client_for(user=world.own.users["viewer"])
    assert api.get(f"{URL}totals/", {"search": "gpt-4o"}).json()["requests"] == 5  # all but the haiku one
    sessions = api.get(f"{URL}sessions/", {"search": "REFUND"}).json()["results"]
    assert [row["session_id"] for row in sessions] == ["Refund-Flow-42"]
    assert api.get(f"{URL}sessions/", {"search": "alice"}).json()["results"] == []  # her request has no session


def test_the_logs_page_has_a_search_box_that_filters_the_table(world, records):
    browser = Client()
    browser.force_login(world.own.users["viewer"])
    page = browser.get("/ingate/logs/", {"org": "own-org", "search": "refund"}).content.decode()
    assert 'name="search"' in page
    assert f'data-record="{records["session"].pk}"' in page and page.count("data-record=") == 1


def test_a_search_with_a_nul_character_is_a_field_error_not_a_database_error(client_for, world, records):
    reply = client_for(user=world.own.users["viewer"]).get(URL, {"search": "gpt\x00"})
    assert reply.status_code == 400 and "search" in reply.json()
