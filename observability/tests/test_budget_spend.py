"""Budgets against recorded spend: each scope's spend in its current period (in the org's time zone) from the
records and rollups, the alerts that spend crosses (once per threshold and period), the reconciliation task, and
the budgets page that shows them."""

import datetime
import logging
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from observability import limits as spend
from observability import rollups, tasks
from observability.models import RecordRollup, RequestRecord
from tenancy import limits
from tenancy.audit import Actor
from tenancy.models import BudgetEvent
from tenancy.periods import period_bounds
from tenancy.selectors import limits_for_org

SYSTEM = Actor.system("test")
UTC = datetime.UTC
# A Wednesday afternoon in UTC; the records below are placed around it.
NOW = datetime.datetime(2025, 6, 18, 15, 30, tzinfo=UTC)


def record(tenant, cost, at=NOW - datetime.timedelta(minutes=5), **fields):
    """A stored record, and its rollups, as the record writer leaves them."""
    values = {
        "org": tenant.org,
        "team": tenant.team,
        "app": tenant.app,
        "key": tenant.key,
        "provider": "openai",
        "endpoint": "chat.completions",
        "model": "gpt-4o-mini",
        "status": 200,
        "usage_source": "reported",
        "cost_total": None if cost is None else Decimal(cost),
        "created_at": at,
        **fields,
    }
    made = RequestRecord.objects.create(**values)
    rollups.apply([made])
    return made


def budget(org, amount="10", **fields):
    return limits.budget_create(actor=SYSTEM, org=org, amount_usd=Decimal(amount), **fields)


def spent(org, now=NOW) -> dict:
    return spend.spend_by_budget(org.pk, now)


def test_each_scope_counts_only_its_own_requests(world):
    own, org = world.own, world.own.org
    second_app = type(own.app).objects.create(org=org, name="Batch", slug="batch")
    record(own, "1.00", user_id="alice")
    record(own, "2.00", user_id="bob", app=second_app, team=None, key=None)
    record(own, "4.00", user_id="alice", app=second_app, team=None, key=None)
    record(own, None, user_id="alice")  # unpriced: adds nothing (a hard budget refuses these up front)
    record(world.other, "100.00", user_id="alice")  # another org's
    budgets = {
        "org": budget(org),
        "team": budget(org, scope="team", team=own.team),
        "app": budget(org, scope="app", app=second_app),
        "key": budget(org, scope="key", key=own.key),
        "alice": budget(org, scope="user", user_id="alice"),
        "alice in app": budget(org, scope="user", user_id="alice", app=own.app),
    }
    found = spent(org)
    assert {name: found[b.pk] for name, b in budgets.items()} == {
        "org": Decimal("7"),
        "team": Decimal("1"),
        "app": Decimal("6"),
        "key": Decimal("1"),
        "alice": Decimal("5"),
        "alice in app": Decimal("1"),
    }


def test_an_apps_per_user_default_counts_each_user_on_their_own(world):
    own, org = world.own, world.own.org
    record(own, "1.50", user_id="alice")
    record(own, "0.50", user_id="alice")
    record(own, "3.00", user_id="bob")
    record(own, "9.00")  # no user named: no user's spend
    default = budget(org, scope="user", app=own.app)
    config = limits_for_org(org.pk).budgets[0]
    found = spend.budget_spend(org.pk, config, "UTC", NOW)
    assert found.by_user == {"alice": Decimal("2"), "bob": Decimal("3")}
    assert (found.top_user, found.total) == ("bob", Decimal("3"))
    assert spent(org)[default.pk] == Decimal("3")


def test_spend_is_counted_from_the_start_of_the_period_in_the_orgs_time_zone(world):
    own, org = world.own, world.own.org
    org.timezone = "Asia/Tokyo"  # UTC+9
    org.save()
    # NOW is 00:30 on Thursday 19 June in Tokyo: the day began at 15:00 UTC on the 18th.
    record(own, "1", at=datetime.datetime(2025, 6, 18, 15, 10, tzinfo=UTC))  # 00:10 today in Tokyo
    record(own, "2", at=datetime.datetime(2025, 6, 18, 14, 50, tzinfo=UTC))  # 23:50 yesterday, same day in UTC
    record(own, "4", at=datetime.datetime(2025, 6, 16, 12, 0, tzinfo=UTC))  # Monday evening: this week
    record(own, "8", at=datetime.datetime(2025, 5, 31, 12, 0, tzinfo=UTC))  # 21:00 on 31 May: last month
    day, week, month, total = (budget(org, period=p) for p in ("day", "week", "month", "total"))
    found = spent(org)
    assert [found[b.pk] for b in (day, week, month, total)] == [Decimal("1"), Decimal("7"), Decimal("7"), Decimal("15")]


def test_a_zone_off_the_hour_counts_the_partial_hour_from_the_records(world):
    own, org = world.own, world.own.org
    org.timezone = "Asia/Kolkata"  # UTC+5:30: the day began at 18:30 UTC, in the middle of an hourly rollup
    org.save()
    record(own, "1", at=datetime.datetime(2025, 6, 17, 18, 10, tzinfo=UTC))  # yesterday in Kolkata
    record(own, "2", at=datetime.datetime(2025, 6, 17, 18, 40, tzinfo=UTC))  # today, same UTC hour
    record(own, "4", at=datetime.datetime(2025, 6, 18, 9, 0, tzinfo=UTC))
    day = budget(org, period="day")
    assert spent(org)[day.pk] == Decimal("6")


def test_whole_hours_come_from_the_rollups_so_spend_survives_retention(world):
    own, org = world.own, world.own.org
    record(own, "3", at=datetime.datetime(2025, 6, 2, 10, 0, tzinfo=UTC))
    record(own, "1", at=datetime.datetime(2025, 6, 18, 15, 10, tzinfo=UTC))
    month = budget(org, period="month")
    RequestRecord.objects.filter(created_at__lt=datetime.datetime(2025, 6, 3, tzinfo=UTC)).delete()  # retention
    assert RecordRollup.objects.filter(org=org, dimension="all").count() == 2
    assert spent(org)[month.pk] == Decimal("4")


def test_a_threshold_alert_is_recorded_once_per_period(world):
    own, org = world.own, world.own.org
    soft = budget(org, amount="10", period="day", hard=False)
    record(own, "5.00", at=NOW - datetime.timedelta(hours=2))
    spend.reconcile_org(org.pk, NOW)
    assert list(BudgetEvent.objects.values_list("threshold", "kind", "spend")) == [(50, "threshold", Decimal("5"))]
    spend.reconcile_org(org.pk, NOW)  # nothing new crossed: nothing new recorded
    assert BudgetEvent.objects.count() == 1
    record(own, "6.00", at=NOW - datetime.timedelta(hours=1))
    spend.reconcile_org(org.pk, NOW)
    events = sorted(BudgetEvent.objects.values_list("threshold", "kind"))
    assert events == [(50, "threshold"), (80, "threshold"), (100, "reached")]
    assert set(BudgetEvent.objects.values_list("budget_id", "delivered_at")) == {(soft.pk, None)}
    # The next day is a new period: the same thresholds alert again once crossed again.
    tomorrow = NOW + datetime.timedelta(days=1)
    record(own, "5.00", at=tomorrow - datetime.timedelta(minutes=1))
    spend.reconcile_org(org.pk, tomorrow)
    assert BudgetEvent.objects.filter(threshold=50).count() == 2
    starts = set(BudgetEvent.objects.values_list("period_start", flat=True))
    assert starts == {datetime.datetime(2025, 6, 18, tzinfo=UTC), datetime.datetime(2025, 6, 19, tzinfo=UTC)}


def test_an_apps_per_user_default_alerts_for_each_user(world):
    own, org = world.own, world.own.org
    budget(org, amount="2", scope="user", app=own.app, thresholds=[100])
    record(own, "2.50", user_id="alice")
    record(own, "1.00", user_id="bob")
    record(own, "2.00", user_id="carol")
    spend.reconcile_org(org.pk, NOW)
    assert sorted(BudgetEvent.objects.values_list("user_id", "kind")) == [("alice", "reached"), ("carol", "reached")]


def test_the_periodic_task_reconciles_every_org_and_disabled_budgets_stay_quiet(world, settings):
    record(world.own, "9", at=timezone.now())
    record(world.other, "9", at=timezone.now())
    budget(world.own.org, amount="10")
    budget(world.other.org, amount="10", enabled=False)
    result = tasks.reconcile_budgets.apply().get()  # run here, as a worker would run it for beat
    assert result["budgets"] == 1 and result["events"] == 2  # 50 % and 80 % of the own org's budget
    assert set(BudgetEvent.objects.values_list("org_id", flat=True)) == {world.own.org.pk}
    assert "budgets-reconcile" in settings.CELERY_BEAT_SCHEDULE


def test_drift_against_the_limits_counter_is_logged_when_the_counter_is_known(world, monkeypatch, caplog):
    made = budget(world.own.org)
    record(world.own, "1.00")
    assert spend.reconcile_org(world.own.org.pk, NOW).drifted == []  # no engine: nothing to compare with
    monkeypatch.setattr(spend, "counter_spend", lambda org_id, tz_name, budget, user_id="": Decimal("1.50"))
    with caplog.at_level(logging.WARNING, logger="observability.limits"):
        done = spend.reconcile_org(world.own.org.pk, NOW)
    assert done.drifted == [(made.pk, "", Decimal("0.50"))]
    assert "drift $0.50" in caplog.text


# --- the budgets page ------------------------------------------------------------------------------------------


@pytest.fixture
def page(world):
    client = Client()
    client.force_login(world.own.users["viewer"])
    return client


def test_the_budgets_page_shows_spend_reserved_a_coloured_bar_the_reset_and_alerts(world, page):
    own, org, now = world.own, world.own.org, timezone.now()
    org.timezone = "Europe/Paris"
    org.save()
    made = budget(org, amount="10", period="total", name="Lifetime")
    monthly = budget(org, amount="100", period="month", name="Monthly")
    record(own, "8.50", at=now - datetime.timedelta(days=400))  # long ago: only the total budget counts it
    spend.reconcile_org(org.pk)
    html = page.get(f"/ingate/budgets/?org={org.slug}").content.decode()
    assert f'data-testid="spend-{made.pk}">$8.50<' in html and f'data-testid="spend-{monthly.pk}">$0<' in html
    assert f'data-testid="reserved-{made.pk}">$0<' in html
    assert f'data-testid="bar-{made.pk}" data-level="warn"' in html and "width: 85.0%" in html
    assert f'data-testid="bar-{monthly.pk}" data-level="ok"' in html
    resets = period_bounds("month", "Europe/Paris", now)[1]
    assert f"{resets:%Y-%m-%d} 00:00 Europe/Paris" in html  # the next month's midnight in the org's zone
    alerts = html.split(f'data-testid="events-{made.pk}">')[1].split("</td>")[0]
    assert "80 %" in alerts and "50 %" in alerts and "100 %" not in alerts  # the alerts it recorded


def test_a_budget_past_its_amount_shows_a_full_red_bar(world, page):
    made = budget(world.own.org, amount="1", period="total")
    record(world.own, "1.25", at=timezone.now())
    html = page.get(f"/ingate/budgets/?org={world.own.org.slug}").content.decode()
    assert f'data-testid="bar-{made.pk}" data-level="over"' in html and "width: 100.0%" in html
    assert "125.0 %" in html and ">never<" in html
