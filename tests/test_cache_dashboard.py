"""Response cache hits on the dashboard: hits, hit rate and the money they saved reach the rollups as the records are
written, the overview's Cache card and its per-app and per-key breakdowns, and the records API's totals; a rebuild
and the migration that added the columns count the same; a real browser shows the card."""

from __future__ import annotations

import datetime
import importlib
import shutil
from decimal import Decimal

import openai
import pytest
from django.apps import apps as django_apps
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from observability import rollups
from observability.models import RecordRollup, RequestRecord
from tenancy.audit import Actor
from tenancy.cache import cache_settings_create
from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory
from tests.test_cache_proxy import no_entries_left  # noqa: F401  (autouse: no entry of an earlier run answers)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHAT = {"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": "what is 2 + 2?"}]}


@pytest.fixture
def member(gateway_key):
    key, _ = gateway_key
    cache_settings_create(actor=Actor.system("test"), org=key.org, enabled=True)
    return MembershipFactory(org=key.org, role=Role.MEMBER, user=UserFactory(username="dana")).user


def ask_three_times(gateway, plaintext) -> list[str]:
    """One miss and two hits of the same question; the cache statuses the gateway answered with."""
    client = openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0)
    statuses = [client.chat.completions.with_raw_response.create(**CHAT).headers["x-ingate-cache"] for _ in range(3)]
    gateway.app.sink.close()  # flush now rather than wait for the writer's next round
    return statuses


def test_hits_and_the_money_they_saved_reach_the_overview_and_the_records_api(
    recording, gateway_key, fake, member, client_for
):
    key, plaintext = gateway_key
    assert ask_three_times(recording, plaintext) == ["MISS", "HIT", "HIT"]
    miss, *hits = RequestRecord.objects.filter(org=key.org).order_by("created_at")
    assert miss.cost_total > 0 and not miss.cache_hit
    assert all(hit.cache_hit and hit.cost_total == 0 and hit.cost_saved == miss.cost_total for hit in hits)
    saved = miss.cost_total * 2

    overview = Client()
    overview.force_login(member)
    page = overview.get("/ingate/", {"org": "acme"}).content.decode()
    assert 'data-testid="cache-hits">2<' in page and 'data-testid="cache-hit-rate">(66.7%)<' in page
    assert f'data-testid="cache-saved">{_usd(saved)}<' in page
    # The app's row and the key's row each count the two hits, at the same rate and saving.
    assert page.count('data-cache="hits">2<') == 2 and page.count('data-cache="rate">66.7%<') == 2
    assert page.count(f'data-cache="saved">{_usd(saved)}<') == 2
    assert page.count('<th class="num">Cache hits</th>') == 2  # only the app and key breakdowns have them

    detail = overview.get(f"/ingate/logs/{hits[0].pk}/").content.decode()
    assert f"saved {_usd(miss.cost_total)}" in detail
    assert f'href="/ingate/logs/{miss.pk}/" data-testid="cache-source">request {miss.pk}<' in detail
    assert 'data-testid="record-cost">$0<' in detail

    api = client_for(user=member)
    totals = api.get("/ingate/api/v1/records/totals/", {"org": "acme", "app": "acme-app"}).json()
    assert totals["cache_hits"] == 2 and round(totals["hit_rate"], 1) == 66.7
    assert Decimal(str(totals["cost_saved"])) == saved and Decimal(str(totals["cost"])) == miss.cost_total
    series = api.get("/ingate/api/v1/records/series/", {"org": "acme", "group_by": "key"}).json()
    assert sum(point["cache_hits"] for point in series) == 2
    assert sum(Decimal(point["cost_saved"]) for point in series) == saved


def _usd(amount: Decimal) -> str:
    from observability.templatetags.ingate_format import usd

    return str(usd(amount))


def _record(tenant, **fields) -> RequestRecord:
    values = {
        "org": tenant.org,
        "app": tenant.app,
        "key": tenant.key,
        "provider": "openai",
        "endpoint": "chat.completions",
        "model": "gpt-4o-mini",
        "status": 200,
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "cost_total": Decimal("0.002"),
        "usage_source": "reported",
        "total_ms": 40.0,
        "created_at": timezone.now() - datetime.timedelta(minutes=5),
    }
    record = RequestRecord.objects.create(**(values | fields))
    rollups.apply([record])  # as the record writer does when it inserts
    return record


def _cache_columns(org) -> list[tuple]:
    return sorted(
        RecordRollup.objects.filter(org=org).values_list("dimension", "value", "requests", "cache_hits", "cost_saved")
    )


@pytest.fixture
def hits(world):
    """Own org: one miss and three hits (one of them an hour earlier); the other org: two hits of its own."""
    _record(world.own)
    for minutes in (5, 6, 65):
        _record(
            world.own,
            cache_hit=True,
            cost_total=Decimal(0),
            cost_saved=Decimal("0.002"),
            created_at=timezone.now() - datetime.timedelta(minutes=minutes),
        )
    for _ in range(2):
        _record(world.other, cache_hit=True, cost_total=Decimal(0), cost_saved=Decimal("5"))
    return world


def test_each_orgs_rollups_count_only_its_own_hits_and_savings(hits):
    own = RecordRollup.objects.filter(org=hits.own.org, dimension="all")
    assert sum(r.cache_hits for r in own) == 3 and sum(r.cost_saved for r in own) == Decimal("0.006")
    assert sum(r.requests for r in own) == 4
    app = RecordRollup.objects.filter(org=hits.own.org, dimension="app", value=str(hits.own.app.pk))
    assert sum(r.cache_hits for r in app) == 3
    other = RecordRollup.objects.filter(org=hits.other.org, dimension="all")
    assert sum(r.cache_hits for r in other) == 2 and sum(r.cost_saved for r in other) == Decimal("10")


def test_rebuilt_rollups_count_the_same_hits_and_savings_as_the_writer(hits):
    written = _cache_columns(hits.own.org)
    rollups.rebuild(hits.own.org.pk)
    assert _cache_columns(hits.own.org) == written


def test_the_migration_counts_the_hits_recorded_before_it(hits):
    written = _cache_columns(hits.own.org)
    RecordRollup.objects.update(cache_hits=0, cost_saved=0)  # as the columns were when they were added
    migration = importlib.import_module("observability.migrations.0010_rollup_cache_hits_saved")
    migration.count_hits(django_apps, None)
    assert _cache_columns(hits.own.org) == written


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)")
def test_the_overview_shows_the_cache_card_in_a_browser(recording, gateway_key, fake, member):
    assert ask_three_times(recording, gateway_key[1]) == ["MISS", "HIT", "HIT"]
    saved = _usd(RequestRecord.objects.get(org=gateway_key[0].org, cache_hit=False).cost_total * 2)
    with sync_playwright() as playwright:  # started after the ORM calls: its event loop makes this thread async
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{recording.url}/ingate/")
        page.fill("#id_username", "dana")
        page.fill("#id_password", "correct horse battery staple")
        page.click("button[type=submit]")
        page.wait_for_url(f"{recording.url}/ingate/")
        page.goto(f"{recording.url}/ingate/?org=acme")
        card = page.get_by_test_id("cache-card")
        expect(card).to_be_visible()
        expect(page.get_by_test_id("cache-hits")).to_have_text("2")
        expect(page.get_by_test_id("cache-hit-rate")).to_have_text("(66.7%)")
        expect(page.get_by_test_id("cache-saved")).to_have_text(saved)
        app_row = page.locator("table.breakdown", has_text="By app").locator("tbody tr").first
        expect(app_row.locator('[data-cache="hits"]')).to_have_text("2")
        expect(app_row.locator('[data-cache="saved"]')).to_have_text(saved)
        browser.close()
