"""Dashboard pages: login required, tenant-scoped, unknown prices flagged, every page renders."""

import datetime
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability import rollups
from observability.models import RequestRecord


def make_record(tenant, **fields):
    values = {
        "org": tenant.org,
        "app": tenant.app,
        "key": tenant.key,
        "provider": "openai",
        "endpoint": "chat.completions",
        "model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "status": 200,
        "input_tokens": 1200,
        "output_tokens": 300,
        "total_tokens": 1500,
        "cost_total": Decimal("0.00036"),
        "usage_source": "reported",
        "total_ms": 850.0,
        "overhead_ms": 0.4,
        "upstream_ms": 300.0,
        "session_id": "sess-1",
        "client": "claude-code",
        "created_at": timezone.now() - datetime.timedelta(minutes=5),
    }
    values.update(fields)
    record = RequestRecord.objects.create(**values)
    rollups.apply([record])  # as the record writer does when it inserts
    return record


@pytest.fixture
def browser(world):
    client = Client()
    client.force_login(world.own.users["viewer"])
    return client


def test_pages_need_a_login():
    for url in ("/ingate/", "/ingate/logs/", "/ingate/sessions/", "/ingate/live/"):
        reply = Client().get(url)
        assert reply.status_code == 302 and reply["location"].startswith("/ingate/login/")


def test_overview_totals_and_breakdowns_cover_only_the_picked_org(browser, world):
    make_record(world.own)
    make_record(world.own, model="claude-haiku-4-5", response_model="", provider="anthropic", cost_total=None)
    make_record(world.other, cost_total=Decimal("99"))
    page = browser.get("/ingate/?org=own-org").content.decode()
    assert 'data-testid="total-requests">2<' in page
    assert "$0.00036" in page and "$99" not in page
    assert "1 request with an unknown price" in page
    assert 'id="chart-requests"' in page and "chart.umd.min.js" in page
    assert browser.get("/ingate/?org=other-org").status_code == 404


def test_logs_filter_and_link_to_detail(browser, world):
    kept = make_record(world.own, session_id="s-keep")
    make_record(world.own, session_id="s-other")
    page = browser.get("/ingate/logs/", {"org": "own-org", "session": "s-keep"}).content.decode()
    assert f'data-record="{kept.pk}"' in page and page.count("data-record=") == 1
    detail = browser.get(f"/ingate/logs/{kept.pk}/").content.decode()
    assert 'data-testid="record-cost">$0.00036<' in detail
    assert "gpt-4o-mini-2024-07-18" in detail and "body / streaming" in detail


def test_unpriced_record_says_so_instead_of_zero(browser, world):
    record = make_record(world.own, model="acme-private", response_model="", cost_total=None)
    detail = browser.get(f"/ingate/logs/{record.pk}/").content.decode()
    assert ">unpriced<" in detail and "$0<" not in detail


def test_another_orgs_record_is_not_found(browser, world):
    theirs = make_record(world.other)
    assert browser.get(f"/ingate/logs/{theirs.pk}/").status_code == 404


def test_sessions_list_and_timeline(browser, world):
    make_record(world.own, session_id="sess-9", created_at=timezone.now() - datetime.timedelta(minutes=3))
    make_record(world.own, session_id="sess-9", cost_total=Decimal("0.01"))
    listing = browser.get("/ingate/sessions/", {"org": "own-org"}).content.decode()
    assert "sess-9" in listing
    timeline = browser.get("/ingate/sessions/sess-9/", {"org": "own-org"}).content.decode()
    assert timeline.count('data-testid="gantt-row"') == 2 and 'data-testid="session-cost">$0.01036<' in timeline


def test_bad_filter_input_is_reported_not_a_crash(browser, world):
    reply = browser.get("/ingate/logs/", {"org": "own-org", "since": "not a date"})
    assert reply.status_code == 200 and "Enter a valid date/time" in reply.content.decode()
