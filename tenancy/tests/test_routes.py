"""Routes (virtual models) as an org manages them: what is refused when saved, the API with nested targets and
its permissions, the admin, the plain-data loader the routing stage reads, and the cache invalidation it hears.
Pooled keys (several credentials of one provider) leave the plain proxy's choice of key alone."""

import dataclasses

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from proxy import invalidation
from tenancy import routes, selectors
from tenancy.audit import Actor
from tenancy.models import AuditLog, ProviderCredential, Route
from tenancy.tests.factories import make_credential

SYSTEM = Actor.system("test")
API = "/ingate/api/v1/routes/"


def target(provider="openai", model="gpt-4o", **extra):
    return {"provider": provider, "model": model, **extra}


def make_route(org, name="smart", targets=None, **fields):
    return routes.route_create(
        actor=SYSTEM,
        org=org,
        name=name,
        targets=[target(), target("anthropic", "claude-3-5-sonnet")] if targets is None else targets,
        **fields,
    )


def refusal(org, **kwargs) -> dict:
    with pytest.raises(ValidationError) as caught:
        make_route(org, **kwargs)
    return caught.value.message_dict


class Heard:
    """Invalidations this process hears (proxy.invalidation keeps weak references to bound methods)."""

    def __init__(self):
        self.messages = []
        invalidation.add_listener(self.hear)

    def hear(self, kind, value):
        self.messages.append((kind, value))


# --- what is refused when saved ------------------------------------------------------------------------


def test_a_target_naming_its_own_route_is_refused_as_a_loop(world):
    errors = refusal(world.own.org, name="smart", targets=[target(model="route:smart")])
    assert "loop" in errors["targets"][0] and "Target 1, model" in errors["targets"][0]


def test_routes_do_not_nest_a_target_cannot_name_another_route(world):
    make_route(world.own.org, name="fast")
    by_reference = refusal(world.own.org, name="smart", targets=[target(model="route:fast")])
    assert "Routes do not nest" in by_reference["targets"][0]
    as_provider = refusal(world.own.org, name="smart", targets=[target(provider="fast")])
    assert "'fast' is a route, not a provider" in as_provider["targets"][0]
    as_itself = refusal(world.own.org, name="smart", targets=[target(provider="smart")])
    assert "cannot target itself" in as_itself["targets"][0]


def test_a_route_may_shadow_a_real_model_its_targets_go_to_the_providers_as_is(world):
    route = make_route(world.own.org, name="gpt-4o", targets=[target("openai", "gpt-4o"), target("azure", "gpt-4o")])
    config = selectors.routes_for_org(world.own.org.pk)["gpt-4o"]
    assert route.pk and [(t.provider, t.model) for t in config.targets] == [("openai", "gpt-4o"), ("azure", "gpt-4o")]


def test_a_target_with_an_unknown_provider_is_refused_naming_the_known_ones(world):
    errors = refusal(world.own.org, targets=[target(provider="opnai")])
    assert "Unknown provider 'opnai'" in errors["targets"][0] and "anthropic" in errors["targets"][0]


def test_a_target_may_use_the_orgs_custom_provider_but_not_another_orgs(world):
    make_credential(world.own.org, "openai_compatible", name="vllm", base_url="http://10.0.0.5:8000/v1")
    make_route(world.own.org, targets=[target("vllm", "llama-3-70b")])
    errors = refusal(world.other.org, targets=[target("vllm", "llama-3-70b")])
    assert "Unknown provider 'vllm'" in errors["targets"][0]


def test_a_credential_of_another_org_or_provider_is_refused(world):
    theirs = make_credential(world.other.org, "openai")
    errors = refusal(world.own.org, targets=[target(credential=theirs)])
    assert "belongs to another organization" in errors["targets"][0]
    anthropic = make_credential(world.own.org, "anthropic", secret="sk-ant-1")
    errors = refusal(world.own.org, targets=[target("openai", credential=anthropic)])
    assert "is for anthropic, not openai" in errors["targets"][0]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"retry_on_statuses": [399]}, "retry_on_statuses"),
        ({"retry_on_statuses": [600]}, "retry_on_statuses"),
        ({"retry_on_statuses": ["400"]}, "retry_on_statuses"),
        ({"retry_on_statuses": [True]}, "retry_on_statuses"),
        ({"retry_on_statuses": 400}, "retry_on_statuses"),
        ({"retries_per_target": 6}, "retries_per_target"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"deadline_seconds": 0}, "deadline_seconds"),
        ({"deadline_seconds": float("nan")}, "deadline_seconds"),
        ({"deadline_seconds": 10, "first_byte_timeout_seconds": 10}, "first_byte_timeout_seconds"),
        ({"strategy": "round-robin"}, "strategy"),
        ({"name": "my route"}, "name"),
        ({"name": "route:smart"}, "name"),
    ],
)
def test_bad_route_settings_are_refused_on_their_field(world, fields, field):
    assert field in refusal(world.own.org, **fields)


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"weight": 0}, "weight"),
        ({"weight": 1001}, "weight"),
        ({"params": ["temperature", 0.2]}, "JSON object"),
        ({"params": {"model": "gpt-4o-mini"}}, "cannot override model"),
        ({"model": "gpt 4o"}, "no spaces"),
    ],
)
def test_bad_targets_are_refused_naming_the_target_and_field(world, bad, words):
    errors = refusal(world.own.org, targets=[target(), target(**bad)])
    assert errors["targets"][0].startswith("Target 2, ") and words in errors["targets"][0]


def test_a_route_needs_targets_and_a_name_free_in_its_org(world):
    assert "at least one target" in refusal(world.own.org, targets=[])["targets"][0]
    assert "at most 20" in refusal(world.own.org, targets=[target()] * 21)["targets"][0]
    make_route(world.own.org, name="smart")
    assert "already has a route named 'smart'" in refusal(world.own.org, name="smart")["name"][0]
    make_route(world.other.org, name="smart")  # another org's names are its own


def test_opt_in_statuses_are_kept_once_and_sorted(world):
    route = make_route(world.own.org, retry_on_statuses=[401, 400, 401])
    assert Route.objects.get(pk=route.pk).retry_on_statuses == [400, 401]


# --- key pools ------------------------------------------------------------------------------------------


def test_a_builtin_provider_may_hold_extra_named_keys_but_not_another_providers_name(world):
    pooled = make_credential(world.own.org, "openai", name="openai-backup", secret="sk-backup")
    assert pooled.name == "openai-backup" and pooled.is_pooled
    assert not make_credential(world.own.org, "openai").is_pooled  # named after its provider by default
    with pytest.raises(ValidationError) as caught:
        make_credential(world.own.org, "openai", name="anthropic")
    assert "another provider's name" in caught.value.message_dict["name"][0]


def test_route_targets_pick_a_pooled_key_by_name(world, client_for):
    make_credential(world.own.org, "openai", name="openai-backup", secret="sk-backup-0002")
    admin = client_for(user=world.own.users["admin"])
    created = admin.post(
        API,
        {"org": world.own.org.pk, "name": "smart", "targets": [target(), target(credential="openai-backup")]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert [t["credential"] for t in created.json()["targets"]] == [None, "openai-backup"]
    (pooled,) = selectors.pooled_credentials_of(world.own.org.pk)
    assert (pooled["name"], pooled["provider"], pooled["secret"]) == ("openai-backup", "openai", "sk-backup-0002")


def test_pooled_keys_leave_the_key_of_a_plain_request_alone(gateway, gateway_key, fake):
    key, plaintext = gateway_key
    make_credential(key.org, "openai", name="openai-backup", secret="sk-backup-0002")
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {plaintext}"},
    )
    assert response.status_code == 200, response.text
    assert fake.last_request.headers["authorization"] == "Bearer sk-upstream-openai-0001"
    # A pooled key is no provider of its own: only routes reach it.
    named = httpx.post(
        gateway.url + "/p/openai-backup/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": []},
        headers={"authorization": f"Bearer {plaintext}"},
    )
    assert named.status_code == 400 and named.json()["error"]["code"] == "unknown_provider"


# --- the API -----------------------------------------------------------------------------------------------


@pytest.fixture
def admin_api(world, client_for):
    return client_for(user=world.own.users["admin"])


def test_an_admin_creates_reads_changes_and_deletes_a_route_with_its_targets_in_one_request(world, admin_api):
    body = {
        "org": world.own.org.pk,
        "name": "smart",
        "strategy": "loadbalance",
        "targets": [
            target("openai", "gpt-4o", weight=3, params={"temperature": 0.2}),
            target("anthropic", "claude-3-5-sonnet-latest"),
        ],
        "retry_on_statuses": [400],
        "first_byte_timeout_seconds": 2.5,
    }
    created = admin_api.post(API, body, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["targets"] == [
        {"provider": "openai", "model": "gpt-4o", "credential": None, "weight": 3, "params": {"temperature": 0.2}},
        {"provider": "anthropic", "model": "claude-3-5-sonnet-latest", "credential": None, "weight": 1, "params": {}},
    ]
    assert (data["strategy"], data["retry_on_statuses"], data["max_attempts"]) == ("loadbalance", [400], 3)
    url = f"{API}{data['id']}/"
    assert admin_api.get(url).json()["targets"] == data["targets"]

    # Settings alone leave the targets; a new list replaces them, in its order.
    assert admin_api.patch(url, {"enabled": False}, format="json").json()["targets"] == data["targets"]
    swapped = admin_api.patch(url, {"targets": [target("groq", "llama-3.3-70b"), target()]}, format="json")
    assert swapped.status_code == 200, swapped.content
    assert [t["provider"] for t in swapped.json()["targets"]] == ["groq", "openai"]

    assert admin_api.delete(url).status_code == 204
    assert not Route.objects.filter(pk=data["id"]).exists()
    entries = AuditLog.objects.filter(object_type="tenancy.Route", object_id=str(data["id"]), via="api")
    assert sorted(entries.values_list("action", flat=True)) == ["create", "delete", "update", "update"]
    targets_change = entries.filter(action="update", changes__has_key="targets").get().changes["targets"]
    assert [t["provider"] for t in targets_change[1]] == ["groq", "openai"]


def test_bad_input_comes_back_as_field_errors_a_targets_under_its_position(world, admin_api):
    response = admin_api.post(
        API,
        {
            "org": world.own.org.pk,
            "name": "smart",
            "targets": [target(), target(provider="nosuch"), target(credential="missing"), target(weight=0)],
        },
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()["targets"]  # by position, as DRF reports a list's items
    assert set(errors) == {"3"} and "weight" in errors["3"]  # the fields' own checks come first
    response = admin_api.post(
        API,
        {
            "org": world.own.org.pk,
            "name": "smart",
            "targets": [target(), target("nosuch"), target(credential="missing")],
        },
        format="json",
    )
    errors = response.json()["targets"]
    assert set(errors) == {"1", "2"} and "Unknown provider 'nosuch'" in errors["1"]["provider"][0]
    assert "no provider credential named 'missing'" in errors["2"]["credential"][0]
    loop = admin_api.post(
        API, {"org": world.own.org.pk, "name": "smart", "targets": [target(model="route:smart")]}, format="json"
    )
    assert loop.status_code == 400 and "loop" in loop.json()["targets"]["0"]["model"][0]
    bad = admin_api.post(
        API,
        {"org": world.own.org.pk, "name": "x", "targets": [target()], "retry_on_statuses": [200], "max_attempts": 0},
        format="json",
    )
    assert bad.status_code == 400 and {"retry_on_statuses", "max_attempts"} <= set(bad.json())
    assert not Route.objects.exists()


def test_a_rename_onto_a_taken_name_is_a_field_error(world, admin_api):
    make_route(world.own.org, name="smart")
    other = make_route(world.own.org, name="fast")
    response = admin_api.patch(f"{API}{other.pk}/", {"name": "smart"}, format="json")
    assert response.status_code == 400 and "already has a route named" in response.json()["name"][0]


def test_another_orgs_credential_is_not_found_by_name(world, admin_api):
    make_credential(world.other.org, "openai", name="openai-backup", secret="sk-theirs")
    response = admin_api.post(
        API, {"org": world.own.org.pk, "name": "smart", "targets": [target(credential="openai-backup")]}, format="json"
    )
    assert response.status_code == 400
    assert (
        "Own Org has no provider credential named 'openai-backup'" in response.json()["targets"]["0"]["credential"][0]
    )


def test_a_viewer_reads_routes_but_cannot_write_them(world, client_for):
    route = make_route(world.own.org)
    viewer = client_for(user=world.own.users["viewer"])
    assert [r["name"] for r in viewer.get(API).json()["results"]] == ["smart"]
    assert (
        viewer.post(API, {"org": world.own.org.pk, "name": "x", "targets": [target()]}, format="json").status_code
        == 403
    )
    assert viewer.patch(f"{API}{route.pk}/", {"enabled": False}, format="json").status_code == 403
    assert viewer.delete(f"{API}{route.pk}/").status_code == 403
    assert Route.objects.get(pk=route.pk).enabled


def test_another_org_never_sees_a_route(world, client_for):
    route = make_route(world.own.org)
    outsider = client_for(user=world.other.users["owner"])
    assert outsider.get(API).json()["results"] == []
    assert outsider.get(f"{API}{route.pk}/").status_code == 404
    assert outsider.delete(f"{API}{route.pk}/").status_code == 404


def test_a_credential_a_route_uses_cannot_be_deleted_until_the_route_lets_go(world, admin_api):
    pooled = make_credential(world.own.org, "openai", name="openai-backup", secret="sk-backup")
    make_route(world.own.org, targets=[target(credential=pooled)])
    refused = admin_api.delete(f"/ingate/api/v1/provider-credentials/{pooled.pk}/")
    assert refused.status_code == 409 and "own-org/smart" in refused.json()["detail"]
    assert ProviderCredential.objects.filter(pk=pooled.pk).exists()
    world.own.org.delete()  # deleting the org takes its routes and credentials together
    assert not ProviderCredential.objects.filter(pk=pooled.pk).exists()


# --- the admin ----------------------------------------------------------------------------------------------


def _admin_form(org, name, targets):
    data = {
        "org": org.pk,
        "name": name,
        "strategy": "fallback",
        "enabled": "on",
        "retry_on_statuses": "[]",
        "retries_per_target": 0,
        "max_attempts": 3,
        "deadline_seconds": 60,
        "first_byte_timeout_seconds": "",
        "targets-TOTAL_FORMS": len(targets),
        "targets-INITIAL_FORMS": 0,
        "targets-MIN_NUM_FORMS": 0,
        "targets-MAX_NUM_FORMS": 20,
    }
    for i, t in enumerate(targets):
        data.update({f"targets-{i}-{k}": v for k, v in {"weight": 1, "params": "{}", "position": i, **t}.items()})
    return data


def test_staff_add_a_route_with_targets_in_the_admin_and_see_target_errors(world, client):
    client.force_login(world.staff)
    add = reverse("admin:tenancy_route_add")
    assert client.get(add).status_code == 200
    theirs = make_credential(world.other.org, "openai")
    refused = client.post(add, _admin_form(world.own.org, "smart", [target(credential=theirs.pk)]))
    assert refused.status_code == 200 and "This credential belongs to another organization." in refused.content.decode()
    loop = client.post(add, _admin_form(world.own.org, "smart", [target(model="route:smart")]))
    assert loop.status_code == 200 and "a loop" in loop.content.decode()
    assert not Route.objects.exists()

    saved = client.post(add, _admin_form(world.own.org, "smart", [target(), target("anthropic", "claude-3-5-haiku")]))
    assert saved.status_code == 302
    config = selectors.routes_for_org(world.own.org.pk)["smart"]
    assert [t.provider for t in config.targets] == ["openai", "anthropic"]
    entry = AuditLog.objects.get(object_type="tenancy.Route", action="create", via="admin")
    assert [t["model"] for t in entry.changes["after"]["targets"]] == ["gpt-4o", "claude-3-5-haiku"]


# --- what the routing stage reads --------------------------------------------------------------------------


def test_the_loader_returns_the_saved_routes_as_frozen_plain_data(world):
    pooled = make_credential(world.own.org, "openai", name="openai-backup", secret="sk-backup")
    make_route(
        world.own.org,
        name="smart",
        strategy="lowest-latency",
        targets=[target(params={"temperature": 0.1}), target(credential=pooled, weight=5)],
        retry_on_statuses=[401],
        retries_per_target=1,
        max_attempts=4,
        deadline_seconds=30,
        first_byte_timeout_seconds=1.5,
        drop_unsupported=True,
    )
    make_route(world.own.org, name="off", enabled=False)
    make_route(world.other.org, name="theirs")
    loaded = selectors.routes_for_org(world.own.org.pk)
    assert set(loaded) == {"smart"}  # disabled routes and other orgs' are not routed
    smart = loaded["smart"]
    assert smart == selectors.RouteConfig(
        name="smart",
        strategy="lowest-latency",
        targets=(
            selectors.RouteTargetConfig("openai", "gpt-4o", None, 1, smart.targets[0].params),
            selectors.RouteTargetConfig("openai", "gpt-4o", "openai-backup", 5, smart.targets[1].params),
        ),
        retry_on_statuses=frozenset({401}),
        retries_per_target=1,
        max_attempts=4,
        deadline_seconds=30.0,
        first_byte_timeout_seconds=1.5,
        drop_unsupported=True,
    )
    assert dict(smart.targets[0].params) == {"temperature": 0.1} and dict(smart.targets[1].params) == {}
    assert smart.move_on_statuses == {401, 429, 500, 502, 503, 504, 529}
    with pytest.raises(dataclasses.FrozenInstanceError):
        smart.name = "other"
    with pytest.raises(TypeError):
        smart.targets[0].params["temperature"] = 1  # a cached config cannot be changed by one request


def test_every_change_to_a_route_tells_the_gateways_once_committed(world, django_capture_on_commit_callbacks):
    heard = Heard()
    org = str(world.own.org.pk)
    with django_capture_on_commit_callbacks(execute=True):
        route = make_route(world.own.org)
    assert ("routes", org) in heard.messages
    heard.messages.clear()
    with django_capture_on_commit_callbacks(execute=False) as pending:
        routes.route_update(actor=SYSTEM, route=route, targets=[target("groq", "llama-3.3-70b")])
    assert heard.messages == []  # nothing is announced before the commit
    for callback in pending:
        callback()
    assert ("routes", org) in heard.messages
    heard.messages.clear()
    with django_capture_on_commit_callbacks(execute=True):
        route.targets.get().delete()  # a target changed alone (shell, admin inline) is announced too
    assert heard.messages == [("routes", org)]
    heard.messages.clear()
    with django_capture_on_commit_callbacks(execute=True):
        routes.route_delete(actor=SYSTEM, route=route)
    assert ("routes", org) in heard.messages


# --- the routes page ---------------------------------------------------------------------------------------


def _page_form(name, rows, route=None, **settings):
    data = {
        "name": name,
        "strategy": "fallback",
        "enabled": "on",
        "retry_on_statuses": "",
        "retries_per_target": 0,
        "max_attempts": 3,
        "deadline_seconds": 60,
        "first_byte_timeout_seconds": "",
        "t-TOTAL_FORMS": len(rows),
        "t-INITIAL_FORMS": 0,
        **settings,
    }
    if route is not None:
        data["route"] = route.pk
    for i, row in enumerate(rows):
        data.update({f"t-{i}-{k}": v for k, v in {"weight": 1, "credential": "", "params": "", **row}.items()})
    return data


def test_an_admin_creates_and_edits_a_route_on_the_routes_page(world, client):
    make_credential(world.own.org, "openai", name="openai-backup", secret="sk-backup")
    client.force_login(world.own.users["admin"])
    page = "/ingate/routes/?org=own-org"
    assert "No routes yet" in client.get(page).content.decode()
    rows = [target(), target(credential="openai-backup", params='{"temperature": 0.3}'), {"provider": "", "model": ""}]
    saved = client.post(page, _page_form("smart", rows, retry_on_statuses="400, 401"))
    assert saved.status_code == 302, saved.content.decode()[:3000]
    config = selectors.routes_for_org(world.own.org.pk)["smart"]
    assert [(t.credential, dict(t.params)) for t in config.targets] == [
        (None, {}),
        ("openai-backup", {"temperature": 0.3}),
    ]
    assert config.retry_on_statuses == {400, 401}
    listing = client.get(page).content.decode()
    assert 'data-route="smart"' in listing and "openai/gpt-4o" in listing and 'data-testid="health-smart"' in listing

    route = Route.objects.get(name="smart")
    edit = client.get(f"{page}&edit={route.pk}").content.decode()
    assert 'value="smart"' in edit and "openai-backup" in edit
    changed = client.post(page, _page_form("smart", [target("groq", "llama-3.3-70b")], route=route))
    assert changed.status_code == 302
    assert [t.provider for t in selectors.routes_for_org(world.own.org.pk)["smart"].targets] == ["groq"]
    assert AuditLog.objects.filter(object_type="tenancy.Route", via="web").count() == 2


def test_the_routes_page_shows_what_is_wrong_with_a_route(world, client):
    client.force_login(world.own.users["admin"])
    page = "/ingate/routes/?org=own-org"
    loop = client.post(page, _page_form("smart", [target(model="route:smart")]))
    assert loop.status_code == 400 and "a loop" in loop.content.decode()
    empty = client.post(page, _page_form("smart", [{"provider": "", "model": ""}]))
    assert "A route needs at least one target." in empty.content.decode()
    half = client.post(page, _page_form("smart", [{"provider": "openai", "model": ""}]))
    assert "Needed for a target." in half.content.decode()
    bad_json = client.post(page, _page_form("smart", [target(params="{temperature")]))
    assert "JSON object" in bad_json.content.decode()
    assert not Route.objects.exists()


def test_a_viewer_sees_the_routes_page_without_the_form_and_cannot_post(world, client):
    make_route(world.own.org)
    client.force_login(world.own.users["viewer"])
    page = "/ingate/routes/?org=own-org"
    shown = client.get(page).content.decode()
    assert 'data-route="smart"' in shown and 'data-testid="route-form"' not in shown
    client.post(page, _page_form("sneaky", [target()]))
    route = Route.objects.get()
    client.post(f"/ingate/routes/{route.pk}/delete/")
    assert list(Route.objects.values_list("name", flat=True)) == ["smart"]
    assert client.get("/ingate/routes/?org=other-org").status_code == 404
