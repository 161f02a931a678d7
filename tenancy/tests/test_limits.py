"""Budgets and rate limits as data: what is refused when saved (a scope must be the org's own), where periods begin
and end in the org's time zone, the API and its roles, the plain-data loader the limits stage reads, the cache
invalidation it hears, and the pages."""

import dataclasses
import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from proxy import invalidation
from tenancy import limits, selectors
from tenancy.audit import Actor
from tenancy.models import AuditLog, Budget, BudgetEvent, Organization
from tenancy.periods import EPOCH, FAR_FUTURE, period_bounds

SYSTEM = Actor.system("test")
UTC = datetime.UTC
PARIS = ZoneInfo("Europe/Paris")


def budget(org, **fields):
    return limits.budget_create(actor=SYSTEM, org=org, **{"amount_usd": Decimal("10"), **fields})


def refusal(make, org, **fields) -> dict:
    with pytest.raises(ValidationError) as caught:
        make(actor=SYSTEM, org=org, **fields)
    return caught.value.message_dict


class Heard:
    """Invalidations this process hears (proxy.invalidation keeps weak references to bound methods)."""

    def __init__(self):
        self.messages = []
        invalidation.add_listener(self.hear)

    def hear(self, kind, value):
        self.messages.append((kind, value))


# --- periods ---------------------------------------------------------------------------------------------


def test_a_day_begins_at_midnight_in_the_orgs_time_zone_not_utc():
    # 23:30 UTC on 31 January is already 1 February in Tokyo.
    start, end = period_bounds("day", "Asia/Tokyo", datetime.datetime(2025, 1, 31, 23, 30, tzinfo=UTC))
    assert start == datetime.datetime(2025, 2, 1, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert end - start == datetime.timedelta(days=1)
    assert start.astimezone(UTC) == datetime.datetime(2025, 1, 31, 15, 0, tzinfo=UTC)


def test_the_day_clocks_go_forward_is_23_hours_and_the_day_they_go_back_25():
    spring = period_bounds("day", "Europe/Paris", datetime.datetime(2025, 3, 30, 12, tzinfo=UTC))
    autumn = period_bounds("day", "Europe/Paris", datetime.datetime(2025, 10, 26, 12, tzinfo=UTC))
    assert spring[1].astimezone(UTC) - spring[0].astimezone(UTC) == datetime.timedelta(hours=23)
    assert autumn[1].astimezone(UTC) - autumn[0].astimezone(UTC) == datetime.timedelta(hours=25)
    assert spring[0].astimezone(UTC) == datetime.datetime(2025, 3, 29, 23, tzinfo=UTC)  # midnight, UTC+1
    assert spring[1].astimezone(UTC) == datetime.datetime(2025, 3, 30, 22, tzinfo=UTC)  # midnight, UTC+2


def test_a_midnight_that_does_not_exist_starts_the_day_when_the_clocks_jump():
    # Havana moved its clocks from 00:00 to 01:00 on 9 March 2025: the day begins at 05:00 UTC.
    start, end = period_bounds("day", "America/Havana", datetime.datetime(2025, 3, 9, 12, tzinfo=UTC))
    assert start.astimezone(UTC) == datetime.datetime(2025, 3, 9, 5, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime.datetime(2025, 3, 10, 4, tzinfo=UTC)


def test_a_week_runs_from_monday_to_monday():
    sunday_night = datetime.datetime(2025, 3, 2, 22, 30, tzinfo=UTC)  # Sunday in UTC, Sunday 23:30 in Paris
    start, end = period_bounds("week", "Europe/Paris", sunday_night)
    assert (start.date(), start.weekday(), end.date()) == (datetime.date(2025, 2, 24), 0, datetime.date(2025, 3, 3))
    # Half an hour later it is Monday in Paris: a new week.
    start, _ = period_bounds("week", "Europe/Paris", sunday_night + datetime.timedelta(minutes=30))
    assert start == datetime.datetime(2025, 3, 3, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("now", "first", "after"),
    [
        (datetime.datetime(2025, 1, 31, 23, 59, tzinfo=UTC), (2025, 1, 1), (2025, 2, 1)),
        (datetime.datetime(2024, 2, 29, 12, tzinfo=UTC), (2024, 2, 1), (2024, 3, 1)),
        (datetime.datetime(2025, 12, 31, 12, tzinfo=UTC), (2025, 12, 1), (2026, 1, 1)),
    ],
    ids=["january-31", "leap-february", "december"],
)
def test_a_month_runs_from_the_first_to_the_first_of_the_next(now, first, after):
    start, end = period_bounds("month", "UTC", now)
    assert start == datetime.datetime(*first, tzinfo=ZoneInfo("UTC"))
    assert end == datetime.datetime(*after, tzinfo=ZoneInfo("UTC"))


def test_the_last_evening_of_a_month_in_new_york_is_already_next_month_in_utc():
    now = datetime.datetime(2025, 2, 1, 3, tzinfo=UTC)  # 22:00 on 31 January in New York
    start, end = period_bounds("month", "America/New_York", now)
    assert (start.month, end.month) == (1, 2)
    assert start.astimezone(UTC) == datetime.datetime(2025, 1, 1, 5, tzinfo=UTC)


def test_a_total_budget_never_resets():
    assert period_bounds("total", "Europe/Paris", datetime.datetime(2030, 5, 5, tzinfo=UTC)) == (EPOCH, FAR_FUTURE)


def test_periods_refuse_unknown_zones_periods_and_naive_times():
    now = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="Mars/Olympus"):
        period_bounds("day", "Mars/Olympus", now)
    with pytest.raises(ValueError, match="fortnight"):
        period_bounds("fortnight", "UTC", now)
    with pytest.raises(ValueError, match="aware"):
        period_bounds("day", "UTC", datetime.datetime(2025, 1, 1))


# --- what is refused when saved ------------------------------------------------------------------------------


def test_a_budget_defaults_to_hard_monthly_fail_closed_with_alerts_at_50_80_100(world):
    made = budget(world.own.org)
    assert (made.scope, made.period, made.hard, made.fail_open, made.thresholds) == (
        "org",
        "month",
        True,
        False,
        [50, 80, 100],
    )
    limit = limits.rate_limit_create(actor=SYSTEM, org=world.own.org, requests_per_minute=60)
    assert (limit.fail_open, limit.count_cache_reads) == (True, False)
    assert AuditLog.objects.filter(object_type="tenancy.Budget", action="create", object_id=str(made.pk)).exists()


@pytest.mark.parametrize("scope", ["team", "app", "key"])
def test_a_scope_object_of_another_org_is_refused_on_its_field(world, scope):
    theirs = getattr(world.other, scope)
    assert refusal(limits.budget_create, world.own.org, amount_usd=1, scope=scope, **{scope: theirs}) == {
        scope: [f"This {scope} belongs to another organization."]
    }
    refused = refusal(limits.rate_limit_create, world.own.org, concurrent=2, scope=scope, **{scope: theirs})
    assert refused == {scope: [f"This {scope} belongs to another organization."]}
    assert not Budget.objects.exists()


def test_a_user_budget_in_another_orgs_app_is_refused(world):
    refused = refusal(limits.budget_create, world.own.org, amount_usd=1, scope="user", app=world.other.app)
    assert refused["app"] == ["This app belongs to another organization."]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"scope": "team"}, "team", "needs its team"),
        ({"scope": "key"}, "key", "needs its key"),
        ({"scope": "user"}, "user_id", "Name the end user"),
        ({"scope": "org", "user_id": "alice"}, "user_id", "Only a user-scoped"),
        ({"amount_usd": Decimal("0")}, "amount_usd", "greater than zero"),
        ({"amount_usd": Decimal("-5")}, "amount_usd", "greater than zero"),
        ({"thresholds": [0, 50]}, "thresholds", "from 1 to 100"),
        ({"thresholds": [50, 120]}, "thresholds", "from 1 to 100"),
        ({"thresholds": "50,80"}, "thresholds", "list of percentages"),
        ({"period": "fortnight"}, "period", "not a valid choice"),
    ],
)
def test_bad_budgets_are_refused_on_their_field(world, fields, field, words):
    refused = refusal(limits.budget_create, world.own.org, **{"amount_usd": Decimal("1"), **fields})
    assert field in refused and words in " ".join(refused[field]), refused


def test_a_field_of_another_scope_is_refused_rather_than_silently_ignored(world):
    refused = refusal(
        limits.budget_create, world.own.org, amount_usd=1, scope="app", app=world.own.app, key=world.own.key
    )
    assert refused == {"key": ["Leave key empty for scope app."]}


def test_thresholds_are_kept_once_and_sorted(world):
    assert budget(world.own.org, thresholds=[100, 50, 80, 50]).thresholds == [50, 80, 100]


def test_a_rate_limit_needs_at_least_one_limit(world):
    refused = refusal(limits.rate_limit_create, world.own.org)
    assert "Set at least one" in refused["requests_per_minute"][0]


def test_an_org_time_zone_must_be_an_iana_name(world, client_for):
    api = client_for(user=world.own.users["owner"])
    bad = api.patch(f"/ingate/api/v1/organizations/{world.own.org.pk}/", {"timezone": "Paris"}, format="json")
    assert bad.status_code == 400 and "IANA" in str(bad.json()["timezone"])
    good = api.patch(f"/ingate/api/v1/organizations/{world.own.org.pk}/", {"timezone": "Europe/Paris"}, format="json")
    assert good.status_code == 200 and good.json()["timezone"] == "Europe/Paris"
    assert Organization.objects.get(pk=world.own.org.pk).timezone == "Europe/Paris"


def test_changing_a_scope_clears_the_fields_the_new_scope_does_not_use(world):
    made = budget(world.own.org, scope="app", app=world.own.app)
    changed = limits.budget_update(actor=SYSTEM, budget=made, scope="team", team=world.own.team)
    assert (changed.team_id, changed.app_id) == (world.own.team.pk, None)
    entry = AuditLog.objects.get(object_type="tenancy.Budget", action="update", object_id=str(made.pk))
    assert entry.changes["scope"] == ["app", "team"]


# --- the API --------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_api(world, client_for):
    return client_for(user=world.own.users["admin"])


def test_an_admin_creates_reads_changes_and_deletes_a_budget(world, admin_api):
    created = admin_api.post(
        "/ingate/api/v1/budgets/",
        {"org": world.own.org.pk, "scope": "app", "app": world.own.app.pk, "amount_usd": "25.50", "period": "day"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["thresholds"] == [50, 80, 100] and body["hard"] is True and body["fail_open"] is False
    assert body["applies_to"] == f"app {world.own.app.slug}"
    url = f"/ingate/api/v1/budgets/{body['id']}/"
    assert admin_api.get(url).json()["amount_usd"] == "25.500000"
    changed = admin_api.patch(url, {"hard": False, "thresholds": [90]}, format="json")
    assert changed.status_code == 200 and changed.json()["hard"] is False and changed.json()["thresholds"] == [90]
    assert admin_api.delete(url).status_code == 204
    assert not Budget.objects.exists()
    actions = AuditLog.objects.filter(object_type="tenancy.Budget", via="api").values_list("action", flat=True)
    assert sorted(actions) == ["create", "delete", "update"]


def test_bad_budgets_come_back_as_field_errors_from_the_api(world, admin_api):
    other_app = admin_api.post(
        "/ingate/api/v1/budgets/",
        {"org": world.own.org.pk, "scope": "app", "app": world.other.app.pk, "amount_usd": "5"},
        format="json",
    )
    assert other_app.status_code == 400 and "app" in other_app.json()  # not one of the choices the caller sees
    missing = admin_api.post(
        "/ingate/api/v1/budgets/", {"org": world.own.org.pk, "scope": "team", "amount_usd": "5"}, format="json"
    )
    assert missing.status_code == 400 and "needs its team" in missing.json()["team"][0]
    zero = admin_api.post("/ingate/api/v1/budgets/", {"org": world.own.org.pk, "amount_usd": "0"}, format="json")
    assert zero.status_code == 400 and "greater than zero" in zero.json()["amount_usd"][0]
    over = admin_api.post(
        "/ingate/api/v1/budgets/", {"org": world.own.org.pk, "amount_usd": "5", "thresholds": [150]}, format="json"
    )
    assert over.status_code == 400 and "thresholds" in over.json()


def test_a_rate_limit_is_managed_through_the_api(world, admin_api):
    created = admin_api.post(
        "/ingate/api/v1/rate-limits/",
        {"org": world.own.org.pk, "scope": "user", "app": world.own.app.pk, "requests_per_minute": 30},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["applies_to"] == f"each user in app {world.own.app.slug} (default)"
    url = f"/ingate/api/v1/rate-limits/{created.json()['id']}/"
    emptied = admin_api.patch(url, {"requests_per_minute": None}, format="json")
    assert emptied.status_code == 400 and "at least one" in emptied.json()["requests_per_minute"][0]
    changed = admin_api.patch(url, {"tokens_per_minute": 50000, "count_cache_reads": True}, format="json")
    assert changed.status_code == 200 and changed.json()["tokens_per_minute"] == 50000
    assert admin_api.delete(url).status_code == 204


def test_a_viewer_reads_budgets_and_alerts_but_cannot_write_them(world, client_for):
    made = budget(world.own.org)
    BudgetEvent.objects.create(
        budget=made,
        org=world.own.org,
        kind="threshold",
        threshold=50,
        period_start=datetime.datetime(2025, 1, 1, tzinfo=UTC),
        spend=Decimal("5"),
        amount_usd=made.amount_usd,
    )
    viewer = client_for(user=world.own.users["viewer"])
    assert [b["id"] for b in viewer.get("/ingate/api/v1/budgets/").json()["results"]] == [made.pk]
    assert [e["threshold"] for e in viewer.get("/ingate/api/v1/budget-events/").json()["results"]] == [50]
    refused = viewer.patch(f"/ingate/api/v1/budgets/{made.pk}/", {"hard": False}, format="json")
    assert refused.status_code == 403
    assert viewer.post("/ingate/api/v1/budget-events/", {}, format="json").status_code == 405
    outsider = client_for(user=world.other.users["owner"])
    assert outsider.get(f"/ingate/api/v1/budgets/{made.pk}/").status_code == 404
    assert outsider.get("/ingate/api/v1/budget-events/").json()["results"] == []


# --- what the limits stage reads ----------------------------------------------------------------------------


def test_the_loader_returns_enabled_budgets_and_limits_as_frozen_plain_data(world, django_assert_max_num_queries):
    org = world.own.org
    org.timezone = "Europe/Paris"
    org.save()
    team = budget(org, scope="team", team=world.own.team, amount_usd=Decimal("5"), period="week", hard=False)
    budget(org, enabled=False)
    budget(world.other.org)
    limit = limits.rate_limit_create(actor=SYSTEM, org=org, scope="key", key=world.own.key, concurrent=3)
    with django_assert_max_num_queries(3):
        loaded = selectors.limits_for_org(org.pk)
    assert loaded.timezone == "Europe/Paris" and not loaded.empty
    assert loaded.budgets == (
        selectors.BudgetConfig(
            id=team.pk,
            name="",
            scope=selectors.ScopeConfig("team", world.own.team.pk),
            amount_usd=Decimal("5"),
            period="week",
            hard=False,
            thresholds=(50, 80, 100),
            fail_open=False,
        ),
    )
    assert loaded.rate_limits == (
        selectors.RateLimitConfig(
            id=limit.pk,
            name="",
            scope=selectors.ScopeConfig("key", world.own.key.pk),
            requests_per_minute=None,
            tokens_per_minute=None,
            concurrent=3,
            count_cache_reads=False,
            fail_open=True,
        ),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.budgets[0].hard = True
    assert selectors.limits_for_org(world.other.org.pk).rate_limits == ()
    assert selectors.limits_for_org(10**9).empty


def test_every_budget_that_applies_to_a_request_is_found_and_an_apps_user_default_yields_to_its_own_entry(world):
    org, app, other_app = world.own.org, world.own.app, None
    other_app = type(app).objects.create(org=org, name="Second", slug="second")
    whole = budget(org)
    per_app = budget(org, scope="app", app=app)
    default = budget(org, scope="user", app=app)
    alice_here = budget(org, scope="user", app=app, user_id="alice")
    bob_anywhere = budget(org, scope="user", user_id="bob")
    loaded = selectors.limits_for_org(org.pk)

    def found(app_id, user_id):
        request = {"team_id": world.own.team.pk, "app_id": app_id, "key_id": world.own.key.pk, "user_id": user_id}
        return {b.id for b in loaded.budgets_for(**request)}

    assert found(app.pk, "carol") == {whole.pk, per_app.pk, default.pk}  # carol gets the app's default
    assert found(app.pk, "alice") == {whole.pk, per_app.pk, alice_here.pk}  # alice's own entry replaces it
    assert found(app.pk, "bob") == {whole.pk, per_app.pk, default.pk, bob_anywhere.pk}  # both apply to bob
    assert found(app.pk, "") == {whole.pk, per_app.pk}  # no user named: no user budget
    assert found(other_app.pk, "alice") == {whole.pk}


def test_every_change_to_a_budget_or_rate_limit_tells_the_gateways_once_committed(
    world, django_capture_on_commit_callbacks
):
    heard = Heard()
    org = str(world.own.org.pk)
    with django_capture_on_commit_callbacks(execute=False) as pending:
        made = budget(world.own.org)
    assert heard.messages == []  # nothing is announced before the commit
    for callback in pending:
        callback()
    assert heard.messages == [("limits", org)]
    heard.messages.clear()
    with django_capture_on_commit_callbacks(execute=True):
        limits.budget_update(actor=SYSTEM, budget=made, amount_usd=Decimal("20"))
        limit = limits.rate_limit_create(actor=SYSTEM, org=world.own.org, requests_per_minute=5)
        limits.rate_limit_delete(actor=SYSTEM, rate_limit=limit)
        limits.budget_delete(actor=SYSTEM, budget=made)
    assert heard.messages == [("limits", org)] * 4
    heard.messages.clear()
    with django_capture_on_commit_callbacks(execute=True):
        world.own.org.timezone = "Asia/Tokyo"
        world.own.org.save()  # periods move with the time zone
    assert ("limits", org) in heard.messages


# --- the pages ---------------------------------------------------------------------------------------------------


def _budget_form(**fields):
    return {
        "name": "",
        "scope": "org",
        "user_id": "",
        "enabled": "on",
        "amount_usd": "10",
        "period": "month",
        "hard": "on",
        "thresholds": "50, 80, 100",
        **fields,
    }


def test_an_admin_creates_and_edits_a_budget_on_the_budgets_page(world, client):
    client.force_login(world.own.users["admin"])
    page = f"/ingate/budgets/?org={world.own.org.slug}"
    assert b"No budgets yet" in client.get(page).content
    saved = client.post(page, _budget_form(name="Team cap", scope="team", team=world.own.team.pk, thresholds="75"))
    assert saved.status_code == 302
    made = Budget.objects.get()
    assert (made.name, made.team_id, made.thresholds) == ("Team cap", world.own.team.pk, [75])
    edit = client.get(f"{page}&edit={made.pk}")
    assert b'value="Team cap"' in edit.content and b'value="75"' in edit.content
    client.post(page, _budget_form(pk=made.pk, name="Team cap", scope="team", team=world.own.team.pk, hard=""))
    assert Budget.objects.get().hard is False
    assert AuditLog.objects.filter(object_type="tenancy.Budget", via="web").count() == 2


def test_the_budgets_page_shows_what_is_wrong_with_a_budget(world, client):
    client.force_login(world.own.users["owner"])
    page = f"/ingate/budgets/?org={world.own.org.slug}"
    refused = client.post(page, _budget_form(scope="key", thresholds="50, lots"))
    assert refused.status_code == 400
    assert b"whole numbers separated by commas" in refused.content
    refused = client.post(page, _budget_form(scope="key"))
    assert b"needs its key" in refused.content
    assert not Budget.objects.exists()


def test_a_viewer_sees_budgets_and_rate_limits_without_the_form_and_cannot_post(world, client):
    budget(world.own.org, name="Monthly cap")
    limits.rate_limit_create(actor=SYSTEM, org=world.own.org, name="Gentle", requests_per_minute=10)
    client.force_login(world.own.users["viewer"])
    shown = client.get(f"/ingate/budgets/?org={world.own.org.slug}")
    assert b"Monthly cap" in shown.content and b'data-testid="limit-form"' not in shown.content
    limits_page = client.get(f"/ingate/rate-limits/?org={world.own.org.slug}")
    assert b"Gentle" in limits_page.content and b'data-testid="limit-form"' not in limits_page.content
    client.post(f"/ingate/budgets/?org={world.own.org.slug}", _budget_form(name="sneaky"))
    assert not Budget.objects.filter(name="sneaky").exists()


def test_an_admin_creates_a_rate_limit_for_each_user_of_an_app_on_its_page(world, client):
    client.force_login(world.own.users["admin"])
    page = f"/ingate/rate-limits/?org={world.own.org.slug}"
    form = {"scope": "user", "app": world.own.app.pk, "user_id": "", "enabled": "on", "concurrent": "2"}
    assert client.post(page, {**form, "fail_open": "on"}).status_code == 302
    shown = client.get(page).content.decode()
    assert f"each user in app {world.own.app.slug} (default)" in shown
