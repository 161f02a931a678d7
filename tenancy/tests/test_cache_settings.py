"""Response cache settings as data: what is refused when saved, the API and its roles, purges that only ever reach
the caller's own org, the plain-data loader the cache stage reads, and the invalidation it hears."""

import asyncio
import dataclasses

import pytest
from django.core.exceptions import ValidationError

from proxy.response_cache import cache_key
from proxy.response_cache.store import redis_key, store_for
from tenancy import cache, selectors
from tenancy.audit import Actor
from tenancy.models import AuditLog, CacheSettings
from tenancy.tests.test_limits import Heard

SYSTEM = Actor.system("test")
API = "/ingate/api/v1/cache-settings/"
PURGE = "/ingate/api/v1/cache-purge/"


def settings_of(org, **fields):
    return cache.cache_settings_create(actor=SYSTEM, org=org, **fields)


def refusal(org, **fields) -> dict:
    with pytest.raises(ValidationError) as caught:
        settings_of(org, **fields)
    return caught.value.message_dict


# --- validation ------------------------------------------------------------------------------------------


def test_settings_default_to_off_for_a_day_up_to_1_mib_every_endpoint_and_sampling_only_when_asked(world):
    made = settings_of(world.own.org)
    assert made.enabled is False
    assert made.ttl_seconds == 86400 and made.max_entry_bytes == 1024 * 1024
    assert made.endpoints == [] and made.cache_positive_temperature == "when_asked"
    assert made.namespace_per_app is True and made.allow_files is False


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"ttl_seconds": 0}, "ttl_seconds", "greater than or equal to 1"),
        ({"ttl_seconds": 30 * 86400 + 1}, "ttl_seconds", "less than or equal to 2592000"),
        ({"max_entry_bytes": 16 * 1024 * 1024 + 1}, "max_entry_bytes", "less than or equal to"),
        ({"endpoints": ["chat.completions", "images"]}, "endpoints", "Not a cacheable endpoint: images"),
        ({"endpoints": "chat.completions"}, "endpoints", "as a list of names"),
        ({"cache_positive_temperature": "sometimes"}, "cache_positive_temperature", "not a valid choice"),
    ],
)
def test_bad_settings_are_refused_on_their_field(world, fields, field, words):
    assert words in " ".join(refusal(world.own.org, **fields)[field])


def test_endpoints_are_kept_once_and_sorted(world):
    made = settings_of(world.own.org, endpoints=["messages", "chat.completions", "messages"])
    assert made.endpoints == ["chat.completions", "messages"]


def test_an_org_has_one_default_and_each_app_one_row_of_its_own(world):
    settings_of(world.own.org)
    settings_of(world.own.org, app=world.own.app)
    assert "already has its default" in refusal(world.own.org)["app"][0]
    assert "app already has" in refusal(world.own.org, app=world.own.app)["app"][0]


def test_an_app_of_another_org_is_refused(world):
    assert "another organization" in refusal(world.own.org, app=world.other.app)["app"][0]


# --- the API ------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_api(world, client_for):
    return client_for(user=world.own.users["admin"])


def test_an_admin_creates_reads_changes_and_deletes_cache_settings(world, admin_api):
    created = admin_api.post(
        API,
        {"org": world.own.org.pk, "enabled": True, "ttl_seconds": 3600, "endpoints": ["messages"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["app"] is None and body["cache_positive_temperature"] == "when_asked"
    url = f"{API}{body['id']}/"
    assert admin_api.get(url).json()["endpoints"] == ["messages"]
    changed = admin_api.patch(url, {"cache_positive_temperature": "always", "endpoints": []}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["cache_positive_temperature"] == "always" and changed.json()["endpoints"] == []
    assert admin_api.delete(url).status_code == 204
    assert not CacheSettings.objects.exists()
    actions = AuditLog.objects.filter(object_type="tenancy.CacheSettings", via="api").values_list("action", flat=True)
    assert sorted(actions) == ["create", "delete", "update"]


def test_bad_settings_come_back_as_field_errors_from_the_api(world, admin_api):
    other_app = admin_api.post(API, {"org": world.own.org.pk, "app": world.other.app.pk}, format="json")
    assert other_app.status_code == 400 and "app" in other_app.json()
    unknown = admin_api.post(API, {"org": world.own.org.pk, "endpoints": ["images"]}, format="json")
    assert unknown.status_code == 400 and "Not a cacheable endpoint" in unknown.json()["endpoints"][0]
    long = admin_api.post(API, {"org": world.own.org.pk, "ttl_seconds": 10**9}, format="json")
    assert long.status_code == 400 and "ttl_seconds" in long.json()
    assert admin_api.post(API, {"org": world.own.org.pk}, format="json").status_code == 201
    twice = admin_api.post(API, {"org": world.own.org.pk}, format="json")
    assert twice.status_code == 400 and "already has its default" in twice.json()["app"][0]


def test_the_app_of_existing_settings_cannot_be_changed(world, admin_api):
    made = settings_of(world.own.org)
    moved = admin_api.patch(f"{API}{made.pk}/", {"app": world.own.app.pk, "enabled": True}, format="json")
    assert moved.status_code == 200 and moved.json()["app"] is None and moved.json()["enabled"] is True


def test_a_viewer_reads_cache_settings_but_cannot_change_them_and_another_org_sees_nothing(world, client_for):
    made = settings_of(world.own.org)
    viewer = client_for(user=world.own.users["viewer"])
    assert [row["id"] for row in viewer.get(API).json()["results"]] == [made.pk]
    assert viewer.patch(f"{API}{made.pk}/", {"enabled": True}, format="json").status_code == 403
    assert viewer.post(API, {"org": world.own.org.pk, "app": world.own.app.pk}, format="json").status_code == 403
    outsider = client_for(user=world.other.users["owner"])
    assert outsider.get(f"{API}{made.pk}/").status_code == 404
    assert outsider.get(API).json()["results"] == []


# --- purges ---------------------------------------------------------------------------------------------------


def _digest(org_id: int, n: int) -> str:
    return cache_key(org_id, "", "openai", "chat.completions", "gpt-4o-mini", {"messages": [{"content": str(n)}]})


@pytest.fixture
def kept(world, settings):
    """A gateway's in-process store holding two answers of each org, one in an app namespace and one in none."""
    settings.REDIS_URL = ""
    store = store_for("", memory_bytes=1024 * 1024)
    keys = {}
    for side in ("own", "other"):
        org_id = getattr(world, side).org.pk
        keys[side] = [redis_key(org_id, "app:1", _digest(org_id, 1)), redis_key(org_id, "", _digest(org_id, 2))]

    async def fill():
        for entry in keys["own"] + keys["other"]:
            await store.put(entry, b'{"answer": 42}', 60)

    asyncio.run(fill())

    def present():
        async def look():
            return {side: [await store.get(k) is not None for k in keys[side]] for side in keys}

        return asyncio.run(look())

    return store, present


def test_an_admin_purges_their_orgs_cache_and_the_audit_log_says_how_much(world, admin_api, kept):
    _, present = kept
    answer = admin_api.post(PURGE, {"org": world.own.org.pk}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"org": world.own.org.pk, "namespace": None, "key": None, "dropped": 2}
    assert present() == {"own": [False, False], "other": [True, True]}
    entry = AuditLog.objects.get(action="cache_purge")
    assert entry.org == world.own.org and entry.via == "api" and entry.changes["dropped"] == 2


def test_a_purge_narrows_to_a_namespace_or_one_entry(world, admin_api, kept):
    _, present = kept
    org = world.own.org.pk
    one = admin_api.post(PURGE, {"org": org, "key": _digest(org, 2)}, format="json")
    assert one.json()["dropped"] == 1
    assert present()["own"] == [True, False]
    namespace = admin_api.post(PURGE, {"org": org, "namespace": "app:1"}, format="json")
    assert namespace.json()["dropped"] == 1
    assert present() == {"own": [False, False], "other": [True, True]}


def test_nobody_purges_another_orgs_cache(world, client_for, kept):
    _, present = kept
    other = world.other.org.pk
    for who in ("owner", "admin"):
        refused = client_for(user=world.own.users[who]).post(PURGE, {"org": other}, format="json")
        assert refused.status_code == 400 and "org" in refused.json()  # not an org they may choose
    viewer = client_for(user=world.own.users["viewer"]).post(PURGE, {"org": world.own.org.pk}, format="json")
    assert viewer.status_code == 403
    assert present() == {"own": [True, True], "other": [True, True]}
    assert not AuditLog.objects.filter(action="cache_purge").exists()


def test_a_purge_with_a_malformed_key_is_a_field_error(world, admin_api, kept):
    refused = admin_api.post(PURGE, {"org": world.own.org.pk, "key": "ingate:cache:*"}, format="json")
    assert refused.status_code == 400 and "64 lowercase hex digits" in refused.json()["key"][0]


def test_a_purge_while_redis_is_down_is_a_503_that_says_so(world, admin_api, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/3"
    answer = admin_api.post(PURGE, {"org": world.own.org.pk}, format="json")
    assert answer.status_code == 503 and "did not answer the purge" in answer.json()["detail"]


# --- what the cache stage reads ---------------------------------------------------------------------------------


def test_the_loader_gives_the_orgs_default_and_an_apps_own_settings_as_frozen_plain_data(
    world, django_assert_max_num_queries
):
    org = world.own.org
    settings_of(org, enabled=True, ttl_seconds=600, endpoints=["messages"])
    settings_of(org, app=world.own.app, enabled=True, cache_positive_temperature="never", namespace_per_app=False)
    settings_of(world.other.org, enabled=True, ttl_seconds=5)
    with django_assert_max_num_queries(1):
        loaded = selectors.cache_settings_for_org(org.pk)
    assert loaded.org_id == org.pk and not loaded.empty
    default = loaded.for_app(None)
    assert default.ttl_seconds == 600 and default.endpoints == frozenset({"messages"})
    assert default.covers("messages") and not default.covers("chat.completions")
    own = loaded.for_app(world.own.app.pk)
    assert own.cache_positive_temperature == "never" and own.namespace_per_app is False
    assert own.ttl_seconds == 86400 and own.covers("chat.completions")  # the app's row replaces the default whole
    assert loaded.for_app(world.own.app.pk + 1000) == default  # an app without a row of its own
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.ttl_seconds = 1
    with pytest.raises(TypeError):
        loaded.apps[1] = default


def test_a_disabled_default_or_app_row_turns_the_cache_off_for_those_requests(world):
    org = world.own.org
    settings_of(org, enabled=False)
    settings_of(org, app=world.own.app, enabled=True)
    loaded = selectors.cache_settings_for_org(org.pk)
    assert loaded.for_app(None) is None
    assert loaded.for_app(world.own.app.pk) is not None and not loaded.empty
    off = cache.cache_settings_update(
        actor=SYSTEM, settings=CacheSettings.objects.get(app=world.own.app), enabled=False
    )
    assert off.enabled is False and selectors.cache_settings_for_org(org.pk).empty
    assert selectors.cache_settings_for_org(world.other.org.pk).empty  # no settings: nothing is cached


def test_every_change_to_cache_settings_tells_the_gateways_once_committed(world, django_capture_on_commit_callbacks):
    heard = Heard()
    org = str(world.own.org.pk)
    with django_capture_on_commit_callbacks(execute=False) as pending:
        made = settings_of(world.own.org)
    assert heard.messages == []
    for callback in pending:
        callback()
    assert heard.messages == [("cache", org)]
    heard.messages.clear()
    with django_capture_on_commit_callbacks(execute=True):
        cache.cache_settings_update(actor=SYSTEM, settings=made, enabled=True)
        cache.cache_settings_delete(actor=SYSTEM, settings=made)
    assert heard.messages == [("cache", org)] * 2
