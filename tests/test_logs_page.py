"""The logs page and the records API's filters: partial, case-insensitive text filters with human labels, the
time range presets, cost and latency ranges, cache hits, sortable columns, saved views per person, and the
capped CSV/JSONL export of what is filtered."""

import csv
import datetime
import io
import json
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability.models import RecordRollup, RequestRecord, SavedView
from tests.matrix import content

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


def found(reply) -> set[str]:
    assert reply.status_code == 200, reply.content
    return {row["id"] for row in reply.json()["results"]}


def ids(*records) -> set[str]:
    return {str(r.pk) for r in records}


@pytest.fixture
def viewer(client_for, world):
    return client_for(user=world.own.users["viewer"])


@pytest.fixture
def browser(world):
    client = Client()
    client.force_login(world.own.users["viewer"])
    return client


def rows_of(page) -> list[str]:
    html = page.content.decode()
    return [part.split('"', 1)[0] for part in html.split('data-record="')[1:]]


def test_text_filters_match_any_part_ignoring_case_and_quotes_match_exactly(world, viewer):
    mini = record(world.own, model="gpt-4o-mini")
    full = record(world.own, model="gpt-4o")
    assert found(viewer.get(URL, {"model": "4O"})) == ids(mini, full)
    assert found(viewer.get(URL, {"model": '"gpt-4o"'})) == ids(full)
    alice = record(world.own, user_id="Alice@Example.com", session_id="Checkout-7")
    assert found(viewer.get(URL, {"user": "alice"})) == ids(alice)
    assert found(viewer.get(URL, {"session": "checkout"})) == ids(alice)


def test_a_breakdown_rows_link_selects_exactly_its_value(world, browser):
    from observability import selectors

    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    for model in ("gpt-4o", "gpt-4o-mini"):
        RecordRollup.objects.create(org=world.own.org, bucket=now, dimension="model", value=model, requests=1)
    rows = selectors.rollup_breakdown(world.own.org.pk, now - datetime.timedelta(hours=1), "model")
    assert {row["filter"] for row in rows} == {("model", '"gpt-4o"'), ("model", '"gpt-4o-mini"')}


def test_time_range_presets_leave_older_records_out(world, viewer):
    now = timezone.now()
    fresh = record(world.own, created_at=now - datetime.timedelta(minutes=5))
    hours = record(world.own, created_at=now - datetime.timedelta(hours=2))
    days = record(world.own, created_at=now - datetime.timedelta(days=3))
    assert found(viewer.get(URL, {"range": "15m"})) == ids(fresh)
    assert found(viewer.get(URL, {"range": "4h"})) == ids(fresh, hours)
    assert found(viewer.get(URL, {"range": "7d"})) == ids(fresh, hours, days)
    assert viewer.get(URL, {"range": "2y"}).status_code == 400


def test_a_custom_range_from_the_pages_date_fields_selects_between_them(world, browser):
    now = timezone.now()
    inside = record(world.own, created_at=now - datetime.timedelta(hours=3))
    record(world.own, created_at=now - datetime.timedelta(hours=1))
    local = "%Y-%m-%dT%H:%M"  # what <input type=datetime-local> sends: no seconds, no offset (read as UTC)
    since = (now - datetime.timedelta(hours=4)).strftime(local)
    until = (now - datetime.timedelta(hours=2)).strftime(local)
    page = browser.get("/ingate/logs/", {"org": "own-org", "since": since, "until": until})
    assert rows_of(page) == [str(inside.pk)]


def test_cost_latency_and_cache_filters_select_their_ranges(world, viewer):
    cheap_fast = record(world.own, cost_total=Decimal("0.001"), total_ms=120)
    dear_slow = record(world.own, cost_total=Decimal("0.5"), total_ms=4500)
    cached = record(world.own, cost_total=Decimal("0"), total_ms=3, cache_hit=True)
    assert found(viewer.get(URL, {"cost_min": "0.01"})) == ids(dear_slow)
    assert found(viewer.get(URL, {"cost_max": "0.01"})) == ids(cheap_fast, cached)
    assert found(viewer.get(URL, {"latency_min": "100", "latency_max": "1000"})) == ids(cheap_fast)
    assert found(viewer.get(URL, {"cache_hit": "true"})) == ids(cached)
    assert viewer.get(URL, {"cost_min": "-1"}).status_code == 400


def test_route_and_outcome_filters(world, viewer):
    routed = record(world.own, route="Support-Fallback")
    refused = record(world.own, outcome="limited", status=429)
    assert found(viewer.get(URL, {"route": "support"})) == ids(routed)
    assert found(viewer.get(URL, {"outcome": "limited"})) == ids(refused)


def test_the_guardrail_filter_selects_records_by_what_a_guardrail_did(world, viewer, browser):
    blocked = record(world.own, outcome="blocked", status=400, guardrail="blocked")
    flagged = record(world.own, guardrail="flagged")
    record(world.own)
    assert found(viewer.get(URL, {"guardrail": "blocked"})) == ids(blocked)
    assert found(viewer.get(URL, {"guardrail": "flagged"})) == ids(flagged)
    assert viewer.get(URL, {"guardrail": "maybe"}).status_code == 400
    assert "Any guardrail outcome" in browser.get("/ingate/logs/", {"org": "own-org"}).content.decode()


def test_the_filters_read_as_words_not_field_names(world, browser):
    page = browser.get("/ingate/logs/", {"org": "own-org"}).content.decode()
    for label in ("Time range", "Last 15 minutes", "Last 30 days", "Custom range", "Cost from ($)", "Latency to (ms)"):
        assert label in page
    for generated in ("is greater than", "is less than", "Unknown", "Created at"):
        assert generated not in page


def test_sorting_by_a_column_orders_the_table_and_the_heading_links_flip_it(world, browser):
    cheap = record(world.own, cost_total=Decimal("0.001"), total_ms=900)
    dear = record(world.own, cost_total=Decimal("0.5"), total_ms=100)
    unpriced = record(world.own, cost_total=None, total_ms=500)
    page = browser.get("/ingate/logs/", {"org": "own-org", "sort": "-cost"})
    assert rows_of(page) == ids_in_order(dear, cheap, unpriced)  # unknown costs last either way
    assert 'aria-sort="descending"' in page.content.decode() and "sort=cost" in page.content.decode()
    page = browser.get("/ingate/logs/", {"org": "own-org", "sort": "cost"})
    assert rows_of(page) == ids_in_order(cheap, dear, unpriced)
    page = browser.get("/ingate/logs/", {"org": "own-org", "sort": "-latency"})
    assert rows_of(page) == ids_in_order(cheap, unpriced, dear)
    page = browser.get("/ingate/logs/", {"org": "own-org", "sort": "drop table"})  # unknown: newest first
    assert rows_of(page) == ids_in_order(unpriced, dear, cheap)


def ids_in_order(*records) -> list[str]:
    return [str(r.pk) for r in records]


def test_a_saved_view_comes_back_for_its_owner_only_and_can_be_deleted(world, browser):
    record(world.own, model="claude-haiku-4-5")
    reply = browser.post(
        "/ingate/logs/views/?org=own-org", {"name": "Haiku failures", "query": "model=haiku&errors=true"}
    )
    assert reply.status_code == 302 and "model=haiku" in reply["Location"]
    page = browser.get("/ingate/logs/", {"org": "own-org"}).content.decode()
    assert "Haiku failures" in page and "model=haiku&amp;errors=true" in page
    view = SavedView.objects.get()

    someone_else = Client()
    someone_else.force_login(world.own.users["admin"])
    assert "Haiku failures" not in someone_else.get("/ingate/logs/", {"org": "own-org"}).content.decode()
    assert someone_else.post(f"/ingate/logs/views/{view.pk}/delete/?org=own-org").status_code == 404

    assert browser.post(f"/ingate/logs/views/{view.pk}/delete/?org=own-org").status_code == 302
    assert not SavedView.objects.exists()


def test_a_view_without_a_name_is_not_saved(world, browser):
    browser.post("/ingate/logs/views/?org=own-org", {"name": "  ", "query": "model=x"})
    assert not SavedView.objects.exists()


def test_a_view_cannot_be_saved_in_another_org(world, browser):
    reply = browser.post("/ingate/logs/views/?org=other-org", {"name": "Sneaky", "query": ""})
    assert reply.status_code == 404 and not SavedView.objects.exists()


def test_the_export_buttons_carry_the_pages_filters_and_export_only_those_records(world, browser, viewer):
    wanted = record(world.own, model="claude-haiku-4-5", user_id="alice")
    record(world.own, model="gpt-4o", user_id="alice")
    page = browser.get("/ingate/logs/", {"org": "own-org", "model": "haiku", "range": "24h"}).content.decode()
    link = page.split('data-testid="export-csv"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert "model=haiku" in link and "range=24h" in link and "export_format=csv" in link
    reply = viewer.get(link)
    lines = list(csv.reader(io.StringIO(content(reply).decode())))
    assert [row[0] for row in lines[1:]] == [str(wanted.pk)]


def test_an_export_stops_at_the_cap_keeps_the_newest_and_says_so(world, viewer, settings):
    settings.INGATE_EXPORT_MAX_ROWS = 2
    now = timezone.now()
    made = [record(world.own, created_at=now - datetime.timedelta(minutes=n)) for n in range(4)]
    reply = viewer.get(f"{URL}export/", {"export_format": "jsonl"})
    exported = [json.loads(line)["id"] for line in content(reply).decode().splitlines()]
    assert exported == [str(made[1].pk), str(made[0].pk)]  # the two newest, oldest first
    assert reply["X-Ingate-Export-Capped"] == "2"
    reply = viewer.get(f"{URL}export/", {"export_format": "jsonl", "range": "15m", "model": "nothing-like-this"})
    assert "X-Ingate-Export-Capped" not in reply


def test_an_empty_org_is_told_how_to_send_its_first_request(world, browser):
    page = browser.get("/ingate/logs/", {"org": "own-org"}).content.decode()
    assert "No requests yet" in page and "base_url" in page


def test_a_range_from_an_overview_link_shows_in_the_custom_range_fields_so_a_new_search_keeps_it(world, browser):
    page = browser.get("/ingate/logs/", {"org": "own-org", "since": "2026-12-07T21:00:00+02:00"}).content.decode()
    assert 'name="since" value="2026-12-07T19:00:00"' in page
    assert '<option value="custom" selected>' in page


def test_someone_of_no_org_cannot_save_a_view(world):
    outsider = Client()
    outsider.force_login(world.outsider)
    assert outsider.post("/ingate/logs/views/", {"name": "Mine", "query": ""}).status_code == 404
    assert not SavedView.objects.exists()


def test_a_saved_views_query_is_stored_as_plain_query_parameters(world, browser):
    reply = browser.post("/ingate/logs/views/?org=own-org", {"name": "Odd", "query": "model=a b\r\nSet-Cookie: x=1"})
    assert reply.status_code == 302 and "\n" not in reply["Location"]
    assert SavedView.objects.get().query == "model=a+b%0D%0ASet-Cookie%3A+x%3D1"


def test_every_filter_of_the_records_api_has_a_field_on_the_page(world, browser):
    """A filter added to the FilterSet later (scores, guardrails) shows under "More filters" without a template
    change; only the org (the header's picker) is placed elsewhere."""
    from observability.selectors import RecordFilter

    page = browser.get("/ingate/logs/", {"org": "own-org"}).content.decode()
    missing = [name for name in RecordFilter.base_filters if name != "org" and f'name="{name}"' not in page]
    assert not missing
