"""The overview's charts span the whole window (an hour or day with no traffic is an empty bucket, not a
missing one), money never turns to scientific notation, and at 1,280 px nothing overlaps (headless Chromium)."""

import datetime
import shutil
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability import rollups, selectors
from observability.models import RequestRecord
from tenancy.models import Role
from tenancy.tests.factories import AppFactory, MembershipFactory, OrganizationFactory, UserFactory, make_key

UTC = datetime.UTC


def record(org, app, key, at, **fields):
    values = {
        "org": org,
        "app": app,
        "key": key,
        "provider": "openai",
        "endpoint": "chat.completions",
        "model": "gpt-4o-mini",
        "status": 200,
        "input_tokens": 40,
        "output_tokens": 10,
        "total_tokens": 50,
        "cost_total": Decimal("0.0000036"),
        "usage_source": "reported",
        "total_ms": 420.0,
        "created_at": at,
    }
    values.update(fields)
    made = RequestRecord.objects.create(**values)
    rollups.apply([made])
    return made


def test_bucket_starts_cover_every_hour_and_every_utc_day_of_the_window():
    until = datetime.datetime(2026, 3, 10, 14, 25, tzinfo=UTC)
    hours = selectors.bucket_starts(until - datetime.timedelta(hours=24), until, "hour")
    assert hours[0] == datetime.datetime(2026, 3, 9, 14, tzinfo=UTC) and hours[-1] == datetime.datetime(
        2026, 3, 10, 14, tzinfo=UTC
    )
    assert all(b - a == datetime.timedelta(hours=1) for a, b in zip(hours, hours[1:], strict=False))
    days = selectors.bucket_starts(until - datetime.timedelta(days=7), until, "day")
    assert [d.day for d in days] == [3, 4, 5, 6, 7, 8, 9, 10] and all(d.hour == 0 for d in days)
    assert len(selectors.bucket_starts(until - datetime.timedelta(days=30), until, "day")) == 31


def test_a_sparse_week_is_a_full_week_of_daily_points_with_empty_days_at_zero(world):
    now = datetime.datetime(2026, 3, 10, 14, 25, tzinfo=UTC)
    tenant = world.own
    record(tenant.org, tenant.app, tenant.key, now - datetime.timedelta(days=5, hours=1))
    record(
        tenant.org, tenant.app, tenant.key, now - datetime.timedelta(minutes=3), status=500, outcome="upstream_error"
    )
    since = (now - datetime.timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    points = selectors.rollup_series(tenant.org.pk, since, "day", until=now)
    assert len(points) == 8
    assert [p["at"] for p in points] == selectors.bucket_starts(since, now, "day")
    assert sum(p["requests"] for p in points) == 2 and sum(1 for p in points if p["requests"]) == 2
    assert points[-1]["errors"] == 1
    empty = next(p for p in points if not p["requests"])
    assert (empty["cost"], empty["p50_ms"], empty["input_tokens"]) == (Decimal(0), None, 0)


def test_a_quiet_day_still_charts_every_hour(world):
    tenant = world.own
    record(tenant.org, tenant.app, tenant.key, timezone.now() - datetime.timedelta(minutes=10))
    client = Client()
    client.force_login(tenant.users["viewer"])
    reply = client.get("/ingate/", {"org": "own-org", "window": "24h"})
    labels = [" ".join(label) if isinstance(label, list) else label for label in reply.context["chart"]["labels"]]
    assert len(labels) == 25 and len(set(labels)) == 25  # 24 hours plus the one the window starts in
    assert sum(reply.context["chart"]["requests"]) == 1


# --- in the browser ------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def busy_week(transactional_db):
    """An org with a week of traffic: several apps, keys, models and users, a failed and an unpriced request,
    and Ingate's own playground and eval calls. Made before the browser starts (Playwright's sync API leaves
    the thread unable to use the ORM)."""
    org = OrganizationFactory(slug="acme", name="Acme Corporation International")
    MembershipFactory(org=org, role=Role.MEMBER, user=UserFactory(username="dana"))
    now = timezone.now()
    apps = [AppFactory(org=org, slug=f"service-{n}") for n in range(3)]
    keys = [make_key(app=app, name=f"{app.slug} production key")[0] for app in apps]
    # Names as long as real ones get: fine-tune ids, path-like model names, hashed user ids (no hyphen to break at).
    models = [
        "gpt-4o-mini",
        "ft:gpt-4o-mini-2024-07-18:acme-corporation:support-bot:9XyZabcd",
        "accounts/fireworks/models/llama-v3p1-405b-instruct",
        "gemini-2.5-flash",
        "a-fine-tuned-model-with-a-long-name",
    ]
    users = ["dana@example.com", "5f1c2a9e8b7d4c3a2f1e0d9c8b7a6f5e4d3c2b1a", "ops", "user-3@example.com"]
    for n in range(84):
        at = now - datetime.timedelta(hours=2 * n, minutes=7)
        if (now - at).days in (2, 4):
            continue  # two quiet days: still two buckets on the chart
        record(
            org,
            apps[n % 3],
            keys[n % 3],
            at,
            model=models[n % 5],
            user_id=users[n % 4],
            cost_total=None if models[n % 5].startswith("a-fine") else Decimal("0.0000036") * (n + 1),
            status=429 if n % 11 == 0 else 200,
            outcome="upstream_error" if n % 11 == 0 else "ok",
        )
    for client in ("ingate-playground", "ingate-evals", "ingate-evals-judge"):
        record(org, None, None, now - datetime.timedelta(days=3), client=client)
    return org


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)")
def test_the_week_overview_fits_1280_pixels_with_a_bar_per_day(live_server, busy_week, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{live_server.url}/ingate/")
        page.fill("#id_username", "dana")
        page.fill("#id_password", "correct horse battery staple")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/ingate/")
        page.goto(f"{live_server.url}/ingate/?org=acme&window=7d")
        page.wait_for_function("() => window.ingateCharts && window.ingateCharts['chart-cost']")
        page.screenshot(path=str(tmp_path / "overview-7d.png"), full_page=True)
        boxes = page.evaluate("""() => [...document.querySelectorAll('.card, .charts figure, table.breakdown')]
            .map(e => { const r = e.getBoundingClientRect(); return [e.className || e.tagName, r.left, r.top, r.right, r.bottom]; })""")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        labels = page.evaluate("() => window.ingateCharts['chart-requests'].data.labels")
        ticks = page.evaluate("() => window.ingateCharts['chart-cost'].scales.y.ticks.map(t => t.label)")
        tooltip = page.evaluate("""() => { const c = window.ingateCharts['chart-cost'];
            return c.options.plugins.tooltip.callbacks.label({parsed: {y: 0.0000036}}); }""")
        browser.close()
    print("screenshot:", tmp_path / "overview-7d.png")
    assert width <= 1280
    for i, (name, left, top, right, bottom) in enumerate(boxes):
        assert right <= 1280, (name, right)
        for other, l2, t2, r2, b2 in boxes[i + 1 :]:
            overlap = min(right, r2) - max(left, l2) > 0.5 and min(bottom, b2) - max(top, t2) > 0.5
            assert not overlap, (name, other)
    assert len(labels) in (7, 8) and all(labels) and len(set(labels)) == len(labels)
    assert ticks and not any("e-" in t or "E" in t for t in ticks) and all(t.startswith("$") for t in ticks), ticks
    assert tooltip == "USD: $0.0000036"
