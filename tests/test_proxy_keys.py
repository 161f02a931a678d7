"""Key swap: the gateway key is found wherever an SDK puts it, checked from a cache, and replaced by the
provider credential (the org's, else the instance's) or by the client's own provider key."""

import time

import anthropic
import httpx
import openai
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from proxy import invalidation
from tenancy import selectors, services
from tenancy.audit import Actor
from tenancy.models import APIKey
from tenancy.tests.factories import AppFactory, OrganizationFactory, make_credential, make_key
from tests.fake_provider import DEFAULT_TEXT

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
SYSTEM = Actor.system("test")


def chat(gateway, headers, path="/v1/chat/completions", body=CHAT, **kwargs):
    return httpx.post(gateway.url + path, json=body, headers=headers, **kwargs)


@pytest.mark.parametrize(
    "header, template",
    [
        ("authorization", "Bearer {}"),
        ("x-api-key", "{}"),
        ("api-key", "{}"),
        ("x-goog-api-key", "{}"),
        ("x-ingate-key", "{}"),
    ],
)
def test_gateway_key_is_found_in_every_sdks_key_header(gateway, gateway_key, fake, header, template):
    _, plaintext = gateway_key
    response = chat(gateway, {header: template.format(plaintext)})
    assert response.status_code == 200, response.text
    assert fake.last_request.headers["authorization"] == "Bearer sk-upstream-openai-0001"
    assert all(plaintext not in value for value in fake.last_request.headers.values())


def test_request_without_a_gateway_key_is_refused_before_reaching_the_provider(gateway, fake, transactional_db):
    response = chat(gateway, {})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "missing_gateway_key" and "X-Ingate-Key" in error["message"]
    assert fake.requests == []


def test_a_provider_key_alone_is_not_enough(gateway, fake, transactional_db):
    response = chat(gateway, {"authorization": "Bearer sk-proj-someone-elses-openai-key"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_gateway_key"
    assert fake.requests == []


def test_unknown_revoked_and_expired_keys_are_refused_with_the_reason(gateway, gateway_key, fake):
    key, plaintext = gateway_key
    assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200  # now cached

    wrong_secret = plaintext[:-4] + "abcd"
    assert (
        chat(gateway, {"authorization": f"Bearer {wrong_secret}"}).json()["error"]["message"] == "Unknown gateway key."
    )

    services.api_key_revoke(actor=SYSTEM, key=key)
    refused = chat(gateway, {"authorization": f"Bearer {plaintext}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "This gateway key has been revoked."

    _, expiring = make_key(app=key.app, expires_at=timezone.now() + timezone.timedelta(seconds=1))
    assert chat(gateway, {"authorization": f"Bearer {expiring}"}).status_code == 200
    time.sleep(1.1)
    assert (
        chat(gateway, {"authorization": f"Bearer {expiring}"}).json()["error"]["message"]
        == "This gateway key has expired."
    )
    assert len(fake.requests) == 2


def test_bad_key_on_an_anthropic_path_fails_once_without_retries(gateway, fake, transactional_db):
    # Claude Code and the SDK retry 401s unless told not to; default retries are on here.
    client = anthropic.Anthropic(api_key="sk-ingate-" + "x" * 52, base_url=gateway.url)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert len(gateway.wait_for_records(1)) == 1
    assert fake.requests == []


def test_key_without_proxy_scope_gets_a_permission_error(gateway, fake, transactional_db):
    _, plaintext = make_key(scopes=["logs:read"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0).models.list()
    assert "'proxy' scope" in caught.value.message


def test_deactivated_org_stops_its_keys_at_once(gateway, gateway_key, fake):
    key, plaintext = gateway_key
    assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200
    services.organization_update(actor=SYSTEM, org=key.org, is_active=False)
    refused = chat(gateway, {"authorization": f"Bearer {plaintext}"})
    assert refused.status_code == 401 and "deactivated" in refused.json()["error"]["message"]


def test_pass_through_forwards_the_clients_own_key_for_claude_code_oauth(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    # ANTHROPIC_CUSTOM_HEADERS="X-Ingate-Key: …" with a Claude subscription login.
    headers = {
        "x-ingate-key": plaintext,
        "authorization": "Bearer sk-ant-oat01-subscriber-token",
        "anthropic-beta": "oauth-2025-04-20,claude-code-20250219",
        "anthropic-version": "2023-06-01",
    }
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    response = chat(gateway, headers, path="/v1/messages?beta=true", body=body)
    assert response.status_code == 200
    upstream = fake.last_request
    assert upstream.headers["authorization"] == "Bearer sk-ant-oat01-subscriber-token"
    assert "x-api-key" not in upstream.headers  # the instance's Anthropic key was not added
    assert upstream.headers["anthropic-beta"] == "oauth-2025-04-20,claude-code-20250219"
    assert upstream.query == "beta=true"
    assert all(plaintext not in value for value in upstream.headers.values())
    (record,) = gateway.wait_for_records(1)
    assert record.passthrough and record.org_id is not None


def test_pass_through_works_with_no_credential_configured(gateway, gateway_key, fake, settings):
    _, plaintext = gateway_key
    settings.INGATE_PROVIDER_ENV = {**settings.INGATE_PROVIDER_ENV, "openai": {"base_url": fake.url, "api_key": ""}}
    client = openai.OpenAI(
        api_key="sk-proj-my-own",
        base_url=gateway.url + "/v1",
        max_retries=0,
        default_headers={"X-Ingate-Key": plaintext},
    )
    assert client.chat.completions.create(**CHAT).choices[0].message.content == DEFAULT_TEXT
    assert fake.last_request.headers["authorization"] == "Bearer sk-proj-my-own"


def test_missing_credential_says_which_one_to_configure(gateway, gateway_key, fake, settings):
    _, plaintext = gateway_key
    settings.INGATE_PROVIDER_ENV = {
        **settings.INGATE_PROVIDER_ENV,
        "openai": {"base_url": fake.url, "api_key": ""},
        "anthropic": {"base_url": fake.url, "api_key": ""},
    }
    with pytest.raises(openai.AuthenticationError) as caught:
        openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0).chat.completions.create(**CHAT)
    assert "No OpenAI credential is configured for organization 'acme'" in caught.value.message
    assert "OPENAI_API_KEY" in caught.value.message
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic.Anthropic(api_key=plaintext, base_url=gateway.url, max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert "ANTHROPIC_API_KEY" in caught.value.body["error"]["message"]
    assert fake.requests == []


def test_org_credential_wins_over_the_instance_one_and_changes_apply_at_once(gateway, gateway_key, fake):
    key, plaintext = gateway_key
    headers = {"authorization": f"Bearer {plaintext}"}
    assert chat(gateway, headers).status_code == 200
    assert fake.last_request.headers["authorization"] == "Bearer sk-upstream-openai-0001"

    credential = make_credential(key.org, "openai", secret="sk-acme-own-openai-key")
    chat(gateway, headers)
    assert fake.last_request.headers["authorization"] == "Bearer sk-acme-own-openai-key"

    services.provider_credential_update(actor=SYSTEM, credential=credential, secret="sk-acme-rotated-key")
    chat(gateway, headers)
    assert fake.last_request.headers["authorization"] == "Bearer sk-acme-rotated-key"


def test_stored_base_url_redirects_the_orgs_requests(gateway, gateway_key, fake):
    key, plaintext = gateway_key
    make_credential(key.org, "openai", secret="sk-acme", base_url=fake.url + "/eu-proxy/v1")
    assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200
    assert fake.last_request.path == "/eu-proxy/v1/chat/completions"  # the /v1 is not doubled


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/v1/chat/completions", {"x-ingate-provider": "groq"}),
        ("/p/groq/v1/chat/completions", {}),
        ("/p/groq/chat/completions", {}),
    ],
)
def test_named_openai_compatible_provider_by_header_or_path(gateway, gateway_key, fake, path, headers):
    _, plaintext = gateway_key
    response = chat(gateway, {"authorization": f"Bearer {plaintext}", **headers}, path=path)
    assert response.status_code == 200
    assert fake.last_request.path == "/groq/v1/chat/completions"
    assert fake.last_request.headers["authorization"] == "Bearer sk-upstream-groq-0001"
    (record,) = gateway.wait_for_records(1)
    assert (record.provider, record.endpoint) == ("groq", "chat.completions")


def test_openai_sdk_reaches_a_named_provider_through_its_base_url(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    client = openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/p/deepseek/v1", max_retries=0)
    assert client.chat.completions.create(**CHAT).choices[0].message.content == DEFAULT_TEXT
    assert fake.last_request.path == "/deepseek/v1/chat/completions"


def test_org_custom_provider_is_reachable_by_its_name_only_in_that_org(gateway, gateway_key, fake):
    key, plaintext = gateway_key
    make_credential(
        key.org,
        "openai_compatible",
        name="vllm",
        secret="sk-vllm-local",
        base_url=fake.url + "/vllm/v1",
        auth_style="x-api-key",
    )
    response = chat(gateway, {"authorization": f"Bearer {plaintext}", "x-ingate-provider": "vllm"})
    assert response.status_code == 200
    assert fake.last_request.path == "/vllm/v1/chat/completions"
    assert fake.last_request.headers["x-api-key"] == "sk-vllm-local"

    _, outsider = make_key(app=AppFactory(org=OrganizationFactory(slug="globex")))
    refused = chat(gateway, {"authorization": f"Bearer {outsider}", "x-ingate-provider": "vllm"})
    assert refused.status_code == 400
    message = refused.json()["error"]["message"]
    assert message.startswith("Unknown provider 'vllm'. Known providers: anthropic, azure, cerebras")
    assert "groq" in message


def test_unknown_provider_lists_the_known_ones_including_the_orgs(gateway, gateway_key, fake):
    key, plaintext = gateway_key
    make_credential(key.org, "openai_compatible", name="inhouse", secret="s", base_url=fake.url)
    response = chat(gateway, {"authorization": f"Bearer {plaintext}"}, path="/p/nosuch/v1/chat/completions")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_provider"
    assert "openai" in error["message"] and "for organization 'acme': inhouse" in error["message"]


def test_keys_are_read_from_the_database_once_then_served_from_cache(gateway, gateway_key, fake, monkeypatch):
    _, plaintext = gateway_key
    loads = []
    original = selectors.gateway_key_by_prefix
    monkeypatch.setattr(selectors, "gateway_key_by_prefix", lambda prefix: loads.append(prefix) or original(prefix))
    for _ in range(5):
        assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200
    unknown = "sk-ingate-" + "Q" * 52
    for _ in range(3):
        assert chat(gateway, {"authorization": f"Bearer {unknown}"}).status_code == 401
    assert loads == [plaintext[10:22], "Q" * 12]  # one read each, the unknown one cached as unknown too


def test_a_key_created_after_being_tried_works_at_once(gateway, gateway_key, fake, monkeypatch):
    """Creating a key drops a cached 'unknown' for its prefix."""
    from tenancy import keys

    key, _ = gateway_key
    fresh = keys.generate()
    assert chat(gateway, {"authorization": f"Bearer {fresh.plaintext}"}).status_code == 401
    monkeypatch.setattr(keys, "generate", lambda: fresh)
    make_key(app=key.app)
    assert chat(gateway, {"authorization": f"Bearer {fresh.plaintext}"}).status_code == 200


def test_other_processes_see_a_revocation_within_the_cache_ttl_without_redis(gateway, gateway_key, fake, settings):
    settings.INGATE_KEY_CACHE_TTL = 0.3
    key, plaintext = gateway_key
    assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200
    # As another process would: the row changes but this process hears nothing.
    APIKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200  # still cached
    time.sleep(0.35)
    assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 401


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (set in CI)")
def test_revocation_in_another_process_reaches_this_one_through_redis(gateway, gateway_key, fake):
    import redis

    key, plaintext = gateway_key
    assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200
    APIKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())  # no local signal
    redis.Redis.from_url(django_settings.REDIS_URL).publish(
        invalidation.channel(django_settings.REDIS_URL), f"key:{key.prefix}"
    )
    deadline = time.monotonic() + 2
    while chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200:
        assert time.monotonic() < deadline, "revocation did not arrive through Redis"
        time.sleep(0.02)


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (set in CI)")
def test_an_instance_on_another_redis_database_does_not_invalidate_this_ones_keys(gateway, gateway_key, fake):
    """Redis pub/sub ignores database numbers: another Ingate sharing the server must not be heard."""
    import redis
    from redis.connection import parse_url

    key, plaintext = gateway_key
    assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200
    APIKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())  # no local signal
    ours = parse_url(django_settings.REDIS_URL).get("db", 0)
    other = django_settings.REDIS_URL.rsplit("/", 1)[0] + f"/{(ours + 1) % 16}"
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.publish(invalidation.channel(other), f"key:{key.prefix}")
    time.sleep(0.3)
    assert chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200  # still cached
    client.publish(invalidation.channel(django_settings.REDIS_URL), f"key:{key.prefix}")
    deadline = time.monotonic() + 2
    while chat(gateway, {"authorization": f"Bearer {plaintext}"}).status_code == 200:
        assert time.monotonic() < deadline, "revocation did not arrive through Redis"
        time.sleep(0.02)


def test_use_of_a_key_is_stamped_off_the_request_path(gateway, gateway_key, fake):
    key, plaintext = gateway_key
    assert key.last_used_at is None
    chat(gateway, {"authorization": f"Bearer {plaintext}"})
    deadline = time.monotonic() + 3
    while APIKey.objects.get(pk=key.pk).last_used_at is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
