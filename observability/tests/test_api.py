"""The records API: tenant isolation, the logs filters, series and totals, sessions, and streamed exports."""

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from observability.models import RequestRecord
from tenancy.tests.factories import make_key

URL = "/ingate/api/v1/records/"


def record(tenant, minutes_ago=0, **fields):
    values = {
        "org": tenant.org,
        "app": tenant.app,
        "key": tenant.key,
        "provider": "openai",
        "endpoint": "chat.completions",
        "model": "gpt-4o-mini",
        "status": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "cost_total": Decimal("0.001"),
        "total_ms": 100.0,
        "usage_source": "reported",
        "created_at": timezone.now() - datetime.timedelta(minutes=minutes_ago),
    }
    values.update(fields)
    return RequestRecord.objects.create(**values)


@pytest.fixture
def records(world):
    own, other = world.own, world.other
    return {
        "a": record(own, 5, session_id="s1", user_id="alice", properties={"env": "prod"}, total_ms=100),
        "b": record(own, 4, session_id="s1", model="claude-haiku-4-5", provider="anthropic", total_ms=300),
        "c": record(own, 3, status=429, outcome="upstream_error", cost_total=None, total_ms=50),
        "d": record(own, 60 * 30, model="gpt-4o", cost_total=None, usage_source="none"),
        "x": record(other, 2, session_id="s1"),
    }


def ids(reply):
    return {row["id"] for row in reply.json()["results"]}


def test_members_see_only_their_orgs_records(client_for, world, records):
    viewer = client_for(user=world.own.users["viewer"])
    assert ids(viewer.get(URL)) == {str(records[k].pk) for k in "abcd"}
    assert viewer.get(f"{URL}{records['x'].pk}/").status_code == 404
    assert client_for(user=world.outsider).get(URL).json()["results"] == []


def test_gateway_keys_need_the_logs_read_scope(client_for, world, records):
    assert client_for(key=world.own.plaintext).get(URL).status_code == 403  # proxy scope only
    _, reader = make_key(app=world.own.app, scopes=["logs:read"])
    reply = client_for(key=reader).get(URL)
    assert reply.status_code == 200 and ids(reply) == {str(records[k].pk) for k in "abcd"}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("session=s1", "ab"),
        ("model=claude-haiku-4-5", "b"),
        ("provider=anthropic", "b"),
        ("errors=true", "c"),
        ("status=429", "c"),
        ("user=alice", "a"),
        ("property=env:prod", "a"),
        ("unpriced=true", "d"),  # c failed: failed, not unpriced
        ("unpriced=false", "abc"),
        ("app=own-app", "abcd"),
    ],
)
def test_logs_filters(client_for, world, records, query, expected):
    reply = client_for(user=world.own.users["member"]).get(f"{URL}?{query}")
    assert ids(reply) == {str(records[k].pk) for k in expected}


def test_time_range_filter(client_for, world, records):
    since = (timezone.now() - datetime.timedelta(hours=1)).isoformat()
    reply = client_for(user=world.own.users["member"]).get(URL, {"since": since})
    assert ids(reply) == {str(records[k].pk) for k in "abc"}


def test_bad_filter_values_get_field_errors(client_for, world, records):
    api = client_for(user=world.own.users["member"])
    reply = api.get(URL, {"since": "yesterday"})
    assert reply.status_code == 400 and "since" in reply.json()
    reply = api.get(f"{URL}series/", {"bucket": "minute"})
    assert reply.status_code == 400 and "bucket" in reply.json()


def test_totals_count_errors_cost_and_unpriced_requests(client_for, world, records):
    record(world.own, 1, model="acme-private", cost_total=None)  # reported usage, no price
    record(world.own, 1, endpoint="models", usage_source="none", cost_total=None)  # not billed by the token
    since = (timezone.now() - datetime.timedelta(hours=1)).isoformat()
    totals = client_for(user=world.own.users["member"]).get(f"{URL}totals/", {"since": since}).json()
    assert totals["requests"] == 5 and totals["errors"] == 1
    assert Decimal(str(totals["cost"])) == Decimal("0.002") and totals["priced"] == 2
    assert totals["unpriced"] == 1  # the failed 429 (c) and the model list are not unpriced


def test_series_by_model_with_latency_percentiles(client_for, world, records):
    since = (timezone.now() - datetime.timedelta(hours=1)).isoformat()
    rows = (
        client_for(user=world.own.users["member"])
        .get(f"{URL}series/", {"since": since, "group_by": "model", "bucket": "day"})
        .json()
    )
    by_model = {}
    for row in rows:
        by_model.setdefault(row["group"], []).append(row)
    assert sum(r["requests"] for r in by_model["gpt-4o-mini"]) == 2
    assert sum(r["requests"] for r in by_model["claude-haiku-4-5"]) == 1
    assert by_model["claude-haiku-4-5"][0]["p95_ms"] == pytest.approx(300)


def test_the_list_pages_by_cursor_newest_first(client_for, world, records):
    api = client_for(user=world.own.users["member"])
    first = api.get(URL, {"limit": 2}).json()
    assert [row["id"] for row in first["results"]] == [str(records["c"].pk), str(records["b"].pk)]
    second = api.get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == [str(records["a"].pk), str(records["d"].pk)]
    assert second["next"] is None


def test_sessions_group_requests(client_for, world, records):
    rows = client_for(user=world.own.users["member"]).get(f"{URL}sessions/").json()["results"]
    assert [(r["session_id"], r["requests"], r["tokens"]) for r in rows] == [("s1", 2, 30)]
