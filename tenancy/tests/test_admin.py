"""The Django admin as staff use it: every page renders, writes are audited, keys show once, secrets never."""

import asyncio
import datetime
import re

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from evals import services as eval_services
from evals.models import EvalResult
from evals.transfer import clean_item
from observability import services as observability_services
from observability.models import DeadRecord, ObservabilitySettings, PriceOverride, RequestRecord
from prompts import services as prompt_services
from proxy.response_cache import cache_key
from proxy.response_cache.store import redis_key, store_for
from tenancy import cache as tenancy_cache
from tenancy import keys
from tenancy import limits as tenancy_limits
from tenancy import routes as tenancy_routes
from tenancy.audit import Actor
from tenancy.authentication import KeyRejected, key_lookup
from tenancy.guardrails import guardrail_policy_create
from tenancy.models import (
    APIKey,
    App,
    AuditLog,
    Budget,
    BudgetEvent,
    Membership,
    Organization,
    ProviderCredential,
    StorageExport,
    StorageExportRun,
    Team,
    TeamMembership,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tenancy.tests.factories import make_credential, stored_secret

PASSWORD = "correct horse battery staple"  # what UserFactory gives every user
KEY_PATTERN = re.compile(r"sk-ingate-[A-Za-z0-9]{52}(?![A-Za-z0-9])")
REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Users are created (and one signs in) in most tests here; the hashing algorithm is not under test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, world):
    client.force_login(world.staff)
    return client


@pytest.fixture
def every_model_populated(world):
    """`world` plus the objects it does not make, so every registered model has a row to open."""
    Group.objects.create(name="Operators")
    TeamMembership.objects.create(team=world.own.team, user=world.own.users["member"])
    make_credential(world.own.org)
    tenancy_routes.route_create(
        actor=Actor.system("test"), org=world.own.org, name="smart", targets=[{"provider": "openai", "model": "x"}]
    )
    budget = tenancy_limits.budget_create(actor=Actor.system("test"), org=world.own.org, amount_usd=10)
    tenancy_limits.rate_limit_create(
        actor=Actor.system("test"), org=world.own.org, scope="user", user_id="x", concurrent=1
    )
    BudgetEvent.objects.create(
        budget=budget,
        org=world.own.org,
        kind="threshold",
        threshold=50,
        period_start=timezone.now(),
        spend=5,
        amount_usd=10,
    )
    tenancy_cache.cache_settings_create(actor=Actor.system("test"), org=world.own.org, enabled=True)
    record = RequestRecord.objects.create(
        org=world.own.org, app=world.own.app, provider="openai", endpoint="chat", model="x"
    )
    observability_services.score_create(actor=Actor.system("test"), record=record, name="helpful", value=1)
    hook = WebhookEndpoint.objects.create(org=world.own.org, url="http://127.0.0.1:9/", secret_encrypted="x")
    sent = WebhookEvent.objects.create(id="evt_admin", org=world.own.org, type="webhook.test", payload={})
    WebhookDelivery.objects.create(endpoint=hook, event=sent, org=world.own.org)
    StorageExport.objects.create(org=world.own.org, endpoint_url="https://s3.example.com", bucket="acme-logs")
    StorageExportRun.objects.create(org=world.own.org, status="failed", error="AccessDenied")
    guardrail_policy_create(
        actor=Actor.system("test"), org=world.own.org, name="default", checks=[{"name": "pii", "kind": "pii"}]
    )
    RequestRecord.objects.create(org=world.own.org, app=world.own.app, provider="openai", endpoint="chat", model="x")
    ObservabilitySettings.objects.create(org=world.own.org)
    PriceOverride.objects.create(org=world.own.org, model="ft:acme", input_per_mtok=1, output_per_mtok=2)
    DeadRecord.objects.create(record_id="x-dead", org=world.own.org, stage="insert", payload="{}", error="DataError: x")
    system = Actor.system("test")
    prompt = prompt_services.prompt_create(actor=system, org=world.own.org, namespace="support", name="greeting")
    version = prompt_services.version_create(actor=system, prompt=prompt, template="Hello {{name}}")
    prompt_services.label_set(actor=system, prompt=prompt, name="production", version=version)
    dataset = eval_services.dataset_create(
        actor=system,
        org=world.own.org,
        name="capitals",
        items=[clean_item({"input": "Capital of France?", "expected": "Paris"})],
    )
    run = eval_services.run_create(
        actor=system,
        org=world.own.org,
        dataset_version=dataset.latest,
        queue=False,
        targets=[{"model": "gpt-4o-mini"}],
        evaluators=[{"kind": "exact_match"}],
    )
    EvalResult.objects.create(run=run, target=run.targets.get(), item=dataset.latest.items.get(), output="Paris")
    return world


def _url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _raw_row(table, pk):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()


def _form_errors(response):
    context = getattr(response, "context", None) or {}
    form = context.get("adminform").form if context.get("adminform") else None
    return form.errors if form is not None else response.content[:2000]


def _post_ok(client, url, data):
    response = client.post(url, data)
    assert response.status_code == 302, _form_errors(response)
    return response


def _admin_audit(obj, action):
    return AuditLog.objects.get(object_type=obj._meta.label, object_id=str(obj.pk), action=action)


# --- every registered model renders ---------------------------------------------------------------


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_every_admin_page_of_a_registered_model_renders_for_staff(staff_client, every_model_populated, model):
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"Add a {model._meta.label} to every_model_populated so its change page is exercised."

    changelist = staff_client.get(_url(model, "changelist"))
    assert changelist.status_code == 200
    assert changelist.context["cl"].result_count >= 1

    request = RequestFactory().get("/")
    request.user = every_model_populated.staff
    add = staff_client.get(_url(model, "add"))
    assert add.status_code == (200 if admin.site._registry[model].has_add_permission(request) else 403)

    assert staff_client.get(_url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_every_changelist_can_be_searched_and_filtered(staff_client, every_model_populated, model):
    url = _url(model, "changelist")
    assert staff_client.get(url, {"q": "x"}).status_code == 200

    cl = staff_client.get(url).context["cl"]
    for spec in cl.filter_specs:
        # The first choice is "All"; the next one is a real filter value.
        choice = list(spec.choices(cl))[1]
        filtered = staff_client.get(url + choice["query_string"])
        # An invalid lookup makes the admin redirect to ?e=1 instead of rendering.
        assert filtered.status_code == 200, f"{spec.title}: {choice['query_string']}"


# --- creating objects through admin forms ---------------------------------------------------------


def _org_form(world):
    data = {"name": "Acme Labs", "slug": "acme-labs", "is_active": "on", "timezone": "UTC"}
    return data, Organization, {"slug": "acme-labs"}


def _team_form(world):
    data = {"org": world.own.org.pk, "name": "Research", "slug": "research"}
    return data, Team, {"org": world.own.org, "slug": "research"}


def _app_form(world):
    data = {"org": world.own.org.pk, "team": world.own.team.pk, "name": "Chatbot", "slug": "chatbot", "description": ""}
    return data, App, {"org": world.own.org, "slug": "chatbot", "team": world.own.team}


def _membership_form(world):
    data = {"org": world.own.org.pk, "user": world.outsider.pk, "role": "admin"}
    return data, Membership, {"org": world.own.org, "user": world.outsider, "role": "admin"}


@pytest.mark.parametrize(
    "form", [_org_form, _team_form, _app_form, _membership_form], ids=["organization", "team", "app", "membership"]
)
def test_staff_create_objects_in_admin_and_each_creation_is_audited(staff_client, world, form):
    data, model, lookup = form(world)

    _post_ok(staff_client, _url(model, "add"), data)

    created = model.objects.get(**lookup)
    entry = _admin_audit(created, "create")
    assert entry.via == "admin"
    assert entry.actor_user == world.staff
    assert entry.actor == "staff"
    assert entry.changes["after"]["id"] == created.pk


def test_a_form_error_in_admin_is_shown_and_nothing_is_created_or_audited(staff_client, world):
    audit_rows = AuditLog.objects.count()
    data = {
        "org": world.own.org.pk,
        "team": world.other.team.pk,
        "name": "Crossed",
        "slug": "crossed",
        "description": "",
    }

    response = staff_client.post(_url(App, "add"), data)

    assert response.status_code == 200
    assert "The team belongs to another organization." in response.context["adminform"].form.errors["team"]
    assert not App.objects.filter(slug="crossed").exists()
    assert AuditLog.objects.count() == audit_rows


# --- gateway keys ---------------------------------------------------------------------------------


def _create_key_in_admin(client, app, name="CI key"):
    data = {"app": app.pk, "name": name, "scopes": ["proxy", "logs:read"], "expires_at_0": "", "expires_at_1": ""}
    response = client.post(_url(APIKey, "add"), data)
    assert response.status_code == 200, _form_errors(response)
    return response, APIKey.objects.get(name=name)


def test_a_key_created_in_admin_is_shown_once_and_works(staff_client, world):
    response, key = _create_key_in_admin(staff_client, world.own.app)

    html = response.content.decode()
    shown = KEY_PATTERN.findall(html)
    assert len(shown) == 1
    plaintext = shown[0]
    assert html.count(plaintext) == 1
    assert key_lookup(plaintext).pk == key.pk
    assert key.org == world.own.org
    assert key.scopes == ["proxy", "logs:read"]
    assert key.created_by == world.staff
    # The key travels in this response body only, not in a cookie (session, messages) for a later page.
    assert all(plaintext not in morsel.value for morsel in response.cookies.values())

    entry = _admin_audit(key, "key_create")
    assert entry.via == "admin"
    assert entry.actor_user == world.staff


def test_a_key_created_in_admin_never_appears_again(staff_client, world):
    response, key = _create_key_in_admin(staff_client, world.own.app)
    plaintext = KEY_PATTERN.search(response.content.decode()).group()
    secret_part = plaintext[len(keys.KEY_MARKER) + keys.PREFIX_LENGTH :]

    for page in (_url(APIKey, "change", key.pk), _url(APIKey, "changelist"), _url(AuditLog, "changelist")):
        html = staff_client.get(page).content.decode()
        assert plaintext not in html, page
        assert secret_part not in html, page
    assert KEY_PATTERN.search(staff_client.get(_url(APIKey, "change", key.pk)).content.decode()) is None

    row = _raw_row("tenancy_apikey", key.pk)
    assert not any(secret_part in str(value) for value in row)
    assert key.prefix == plaintext[len(keys.KEY_MARKER) : len(keys.KEY_MARKER) + keys.PREFIX_LENGTH]
    assert key.digest == keys.digest(plaintext)

    logged = [str(e.changes) for e in AuditLog.objects.all()] + [
        e.change_message + e.object_repr for e in LogEntry.objects.all()
    ]
    assert not any(secret_part in text for text in logged)


def test_a_key_with_an_expiry_in_the_past_is_refused_with_a_form_error(staff_client, world):
    past = timezone.localtime() - datetime.timedelta(days=1)
    data = {
        "app": world.own.app.pk,
        "name": "Already expired",
        "scopes": ["proxy"],
        "expires_at_0": past.strftime("%Y-%m-%d"),
        "expires_at_1": past.strftime("%H:%M:%S"),
    }

    response = staff_client.post(_url(APIKey, "add"), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["expires_at"] == ["The expiry must be in the future."]
    assert not APIKey.objects.filter(name="Already expired").exists()


def test_editing_a_key_in_admin_keeps_it_working_and_audits_the_change(staff_client, world):
    url = _url(APIKey, "change", world.own.key.pk)
    data = {"name": "Renamed key", "scopes": ["proxy"], "expires_at_0": "", "expires_at_1": ""}

    _post_ok(staff_client, url, data)

    assert key_lookup(world.own.plaintext).name == "Renamed key"
    entry = _admin_audit(world.own.key, "update")
    assert entry.changes["name"] == ["own key", "Renamed key"]
    assert entry.via == "admin"


def test_the_revoke_action_revokes_only_the_selected_keys(staff_client, world):
    response = staff_client.post(
        _url(APIKey, "changelist"), {"action": "revoke_keys", "_selected_action": [world.own.key.pk]}, follow=True
    )

    assert response.status_code == 200
    assert "Revoked 1 key(s)." in response.content.decode()
    world.own.key.refresh_from_db()
    assert world.own.key.revoked_at is not None
    with pytest.raises(KeyRejected, match="revoked"):
        key_lookup(world.own.plaintext)
    assert key_lookup(world.other.plaintext).pk == world.other.key.pk
    entry = _admin_audit(world.own.key, "key_revoke")
    assert entry.via == "admin"
    assert entry.actor_user == world.staff
    assert not AuditLog.objects.filter(action="key_revoke", object_id=str(world.other.key.pk)).exists()


# --- provider credentials -------------------------------------------------------------------------

UPSTREAM_SECRET = "sk-proj-Upstream0123456789abcdefXYZ"


def _credential_form(org, secret, **overrides):
    return {
        "org": org.pk,
        "provider": "openai",
        "name": "openai",
        "base_url": "",
        "api_version": "",
        "auth_style": "",
        "secret": secret,
        **overrides,
    }


def _secret_input(html):
    match = re.search(r'<input[^>]*name="secret"[^>]*>', html)
    assert match, "the change form has no secret field"
    return match.group()


def test_a_provider_secret_entered_in_admin_is_stored_encrypted(staff_client, world):
    _post_ok(staff_client, _url(ProviderCredential, "add"), _credential_form(world.own.org, UPSTREAM_SECRET))

    credential = ProviderCredential.objects.get(org=world.own.org, name="openai")
    row = _raw_row("tenancy_providercredential", credential.pk)
    assert not any(UPSTREAM_SECRET in str(value) for value in row)
    assert credential.secret_encrypted
    assert stored_secret(credential) == UPSTREAM_SECRET
    entry = _admin_audit(credential, "create")
    assert entry.via == "admin"
    assert entry.actor_user == world.staff
    assert UPSTREAM_SECRET not in str(entry.changes)
    assert credential.secret_encrypted not in str(entry.changes)


def test_the_credential_change_page_shows_only_the_hint(staff_client, world):
    credential = make_credential(world.own.org, secret=UPSTREAM_SECRET)

    html = staff_client.get(_url(ProviderCredential, "change", credential.pk)).content.decode()

    assert UPSTREAM_SECRET not in html
    assert credential.secret_encrypted not in html
    field = _secret_input(html)
    assert 'type="password"' in field
    assert "value=" not in field
    assert credential.secret_hint in html
    assert credential.secret_hint in staff_client.get(_url(ProviderCredential, "changelist")).content.decode()


def test_saving_a_credential_with_the_secret_left_blank_keeps_the_stored_secret(staff_client, world):
    credential = make_credential(world.own.org, secret=UPSTREAM_SECRET)
    url = _url(ProviderCredential, "change", credential.pk)

    _post_ok(staff_client, url, _credential_form(world.own.org, "", base_url="https://llm-proxy.example.com/v1"))

    credential.refresh_from_db()
    assert credential.base_url == "https://llm-proxy.example.com/v1"
    assert stored_secret(credential) == UPSTREAM_SECRET


def test_entering_a_new_secret_in_admin_replaces_the_stored_one(staff_client, world):
    credential = make_credential(world.own.org, secret=UPSTREAM_SECRET)
    old_hint = credential.secret_hint
    url = _url(ProviderCredential, "change", credential.pk)

    _post_ok(staff_client, url, _credential_form(world.own.org, "sk-proj-Rotated9876543210zyxwvu"))

    credential.refresh_from_db()
    assert stored_secret(credential) == "sk-proj-Rotated9876543210zyxwvu"
    assert credential.secret_hint != old_hint
    html = staff_client.get(url).content.decode()
    assert "sk-proj-Rotated9876543210zyxwvu" not in html
    assert credential.secret_hint in html


def test_a_credential_form_sent_back_with_an_error_does_not_echo_the_secret(staff_client, world):
    data = _credential_form(world.own.org, UPSTREAM_SECRET, provider="azure", name="azure")

    response = staff_client.post(_url(ProviderCredential, "add"), data)

    assert response.status_code == 200
    assert "Azure OpenAI needs your resource endpoint" in str(response.context["adminform"].form.errors["base_url"])
    html = response.content.decode()
    assert UPSTREAM_SECRET not in html
    assert "value=" not in _secret_input(html)


def test_an_openai_credential_without_a_secret_is_refused_with_a_form_error(staff_client, world):
    response = staff_client.post(_url(ProviderCredential, "add"), _credential_form(world.own.org, ""))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["secret"] == ["This provider needs an API key."]
    assert not ProviderCredential.objects.exists()


# --- deleting -------------------------------------------------------------------------------------


def test_deleting_an_app_in_admin_records_what_it_was(staff_client, world):
    app = world.own.app

    _post_ok(staff_client, _url(App, "delete", app.pk), {"post": "yes"})

    assert not App.objects.filter(pk=app.pk).exists()
    entry = _admin_audit(app, "delete")
    assert entry.via == "admin"
    assert entry.actor_user == world.staff
    assert entry.org == world.own.org
    before = entry.changes["before"]
    assert before["name"] == app.name
    assert before["slug"] == "own-app"
    assert before["org_id"] == world.own.org.pk
    assert before["team_id"] == world.own.team.pk


# --- the audit log cannot be changed --------------------------------------------------------------


def test_the_audit_log_admin_has_no_add_page(staff_client, world):
    assert staff_client.get(_url(AuditLog, "add")).status_code == 403
    assert staff_client.post(_url(AuditLog, "add"), {"actor": "forged", "action": "create"}).status_code == 403
    assert not AuditLog.objects.filter(actor="forged").exists()


def test_an_audit_entry_is_read_only_in_admin(staff_client, world):
    entry = AuditLog.objects.order_by("pk").first()
    url = _url(AuditLog, "change", entry.pk)

    page = staff_client.get(url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert entry.actor in page.content.decode()

    assert staff_client.post(url, {"actor": "forged", "action": "delete"}).status_code == 403
    assert AuditLog.objects.get(pk=entry.pk).actor == entry.actor


def test_an_audit_entry_cannot_be_deleted_in_admin(staff_client, world):
    entry = AuditLog.objects.order_by("pk").first()
    count = AuditLog.objects.count()

    assert staff_client.get(_url(AuditLog, "delete", entry.pk)).status_code == 403
    assert staff_client.post(_url(AuditLog, "delete", entry.pk), {"post": "yes"}).status_code == 403
    staff_client.post(
        _url(AuditLog, "changelist"), {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"}
    )

    assert AuditLog.objects.count() == count


def test_the_audit_log_is_append_only_in_the_orm(world):
    entries = AuditLog.objects.filter(org=world.own.org)
    assert entries.exists()

    with pytest.raises(PermissionError):
        entries.delete()
    with pytest.raises(PermissionError):
        entries.update(actor="forged")
    entry = entries.first()
    entry.actor = "forged"
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    assert not AuditLog.objects.filter(actor="forged").exists()


# --- who gets in ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["own admin", "anonymous"])
def test_non_staff_are_sent_to_the_admin_login(client, world, who):
    if who == "own admin":
        client.force_login(world.own.users["admin"])

    response = client.get("/admin/tenancy/organization/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/tenancy/organization/"


def test_signing_in_to_admin_is_audited(client, world):
    response = client.post("/admin/login/", {"username": "staff", "password": PASSWORD, "next": "/admin/"})

    assert response.status_code == 302
    entry = AuditLog.objects.get(action="login", actor_user=world.staff)
    assert entry.via == "admin"
    assert entry.ip == "127.0.0.1"


def test_a_failed_admin_sign_in_is_audited_without_the_password(client, world):
    wrong = "Wr0ng-Passw0rd-Guess"

    response = client.post("/admin/login/", {"username": "own-admin", "password": wrong, "next": "/admin/"})

    assert response.status_code == 200
    assert "Please enter the correct username and password" in response.content.decode()
    entry = AuditLog.objects.get(action="login_failed")
    assert entry.object_repr == "own-admin"
    assert entry.changes["username"] == "own-admin"
    assert entry.via == "admin"
    assert entry.actor_user is None
    assert not any(wrong in str(value) for value in _raw_row("tenancy_auditlog", entry.pk))


def test_the_last_owner_of_an_org_cannot_be_deleted_in_admin(staff_client, world):
    owner = Membership.objects.get(org=world.own.org, role="owner")
    response = staff_client.post(f"/admin/tenancy/membership/{owner.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Membership.objects.filter(pk=owner.pk).exists()


def test_deleting_a_membership_in_admin_also_removes_the_users_team_memberships(staff_client, world):
    member = world.own.users["member"]
    TeamMembership.objects.create(team=world.own.team, user=member)
    membership = Membership.objects.get(org=world.own.org, user=member)
    response = staff_client.post(f"/admin/tenancy/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not TeamMembership.objects.filter(user=member, team=world.own.team).exists()


@pytest.mark.parametrize("model,attr", [("team", "team"), ("app", "app")])
def test_an_existing_team_or_app_cannot_be_moved_to_another_org_in_admin(staff_client, world, model, attr):
    obj = getattr(world.own, attr)
    page = staff_client.get(f"/admin/tenancy/{model}/{obj.pk}/change/")
    assert page.status_code == 200
    assert 'name="org"' not in page.content.decode()


def test_a_budget_for_another_orgs_app_is_refused_in_admin_and_nothing_is_saved(staff_client, world):
    data = {
        "org": world.own.org.pk,
        "name": "",
        "scope": "app",
        "app": world.other.app.pk,
        "user_id": "",
        "amount_usd": "10",
        "period": "month",
        "hard": "on",
        "thresholds": "[50, 80, 100]",
        "enabled": "on",
    }
    refused = staff_client.post(_url(Budget, "add"), data)
    assert refused.status_code == 200
    assert _form_errors(refused)["app"] == ["This app belongs to another organization."]
    assert not Budget.objects.exists()
    _post_ok(staff_client, _url(Budget, "add"), {**data, "app": world.own.app.pk})
    assert _admin_audit(Budget.objects.get(), "create").via == "admin"


def test_staff_purge_an_orgs_response_cache_from_the_admin_and_only_that_org(staff_client, world, settings):
    settings.REDIS_URL = ""
    store = store_for("", memory_bytes=1024 * 1024)
    own, other = world.own.org.pk, world.other.org.pk
    entries = [
        redis_key(org, "", cache_key(org, "", "openai", "embeddings", "m", {"input": "x"})) for org in (own, other)
    ]

    async def fill_then_look(fill):
        if fill:
            for entry in entries:
                await store.put(entry, b'{"data": []}', 60)
        return [await store.get(entry) is not None for entry in entries]

    assert asyncio.run(fill_then_look(True)) == [True, True]
    answer = staff_client.post(
        _url(Organization, "changelist"), {"action": "purge_cache", "_selected_action": [own]}, follow=True
    )
    assert "Dropped 1 cached answer(s)" in answer.content.decode()
    assert asyncio.run(fill_then_look(False)) == [False, True]
    assert AuditLog.objects.get(action="cache_purge").org_id == own
