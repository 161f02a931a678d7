"""The response cache through the running gateway with the official SDKs: a repeated request is a HIT with the same
answer and no upstream call, streams and whole answers answer each other in the right format, two orgs never share
an entry, the per-request controls work, and a hit's record costs nothing and names what it saved."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest
import redis
from google import genai

from proxy.response_cache.store import PREFIX
from tenancy.audit import Actor
from tenancy.cache import cache_settings_create
from tenancy.models import Role
from tenancy.tests.factories import AppFactory, MembershipFactory, OrganizationFactory, UserFactory, make_key
from tests.fake_provider.options import DEFAULT_TEXT
from tests.test_routing import ANTHROPIC_TOOL_USE, OPENAI_TOOL_CALLS, WEATHER

PURGE = "/ingate/api/v1/cache-purge/"

CHAT = {"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": "what is 2 + 2?"}]}
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "what is 2 + 2?"}]}


@pytest.fixture(autouse=True)
def no_entries_left(settings):
    """With Redis, entries outlive a test and org ids repeat in a fresh test database: drop the cache's keys so an
    earlier run's entries never answer this one's requests (the in-process store is new with each test)."""
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        for found in client.scan_iter(match=f"{PREFIX}*", count=1000):
            client.unlink(found)
        client.close()


@pytest.fixture
def key(gateway_key):
    return gateway_key[0]


@pytest.fixture
def cached(key):
    return cache_settings_create(actor=Actor.system("test"), org=key.org, enabled=True)


def oai(gateway, plaintext) -> openai.OpenAI:
    return openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0)


def test_a_repeated_request_is_a_hit_with_the_same_answer_and_no_upstream_call(gateway, gateway_key, fake, cached):
    client = oai(gateway, gateway_key[1])
    first = client.chat.completions.with_raw_response.create(**CHAT)
    second = client.chat.completions.with_raw_response.create(**{**CHAT, "user": "someone-else"})
    assert first.headers["x-ingate-cache"] == "MISS" and second.headers["x-ingate-cache"] == "HIT"
    assert int(second.headers["age"]) >= 0
    assert second.parse().model_dump() == first.parse().model_dump()
    assert len(fake.requests) == 1
    records = gateway.wait_for_records(2)
    assert records[1].cache_hit and records[1].cache_source == records[0].request_id
    assert records[1].usage == records[0].usage


def test_a_stream_is_answered_from_a_whole_answer_and_the_reverse(gateway, gateway_key, fake, cached):
    client = oai(gateway, gateway_key[1])
    whole = client.chat.completions.create(**CHAT)
    stream = client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    plain = list(client.chat.completions.create(**CHAT, stream=True))
    assert all(c.usage is None for c in plain)  # usage only for a client that asks for it
    assert len(fake.requests) == 1

    other = {**CHAT, "messages": [{"role": "user", "content": "and 3 + 3?"}]}
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(**other, stream=True) if c.choices
    )
    again = client.chat.completions.with_raw_response.create(**other)
    assert again.headers["x-ingate-cache"] == "HIT" and again.parse().choices[0].message.content == streamed
    assert len(fake.requests) == 2


def test_anthropic_messages_replay_as_an_anthropic_stream(gateway, gateway_key, fake, cached):
    # No temperature: Anthropic's default (1.0) is above 0, so the client asks for the cache itself.
    client = anthropic.Anthropic(
        api_key=gateway_key[1], base_url=gateway.url, max_retries=0, default_headers={"x-ingate-cache": "on"}
    )
    first = client.messages.create(**MESSAGE)
    with client.messages.stream(**MESSAGE) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == first.content[0].text == DEFAULT_TEXT
    assert final.usage.output_tokens == first.usage.output_tokens and final.stop_reason == first.stop_reason
    assert len(fake.requests) == 1


def test_two_orgs_sending_the_same_body_never_share_an_entry(gateway, gateway_key, fake, cached):
    other_org = OrganizationFactory(slug="other", name="Other")
    cache_settings_create(actor=Actor.system("test"), org=other_org, enabled=True)
    _, other_key = make_key(app=AppFactory(org=other_org, slug="other-app"))
    oai(gateway, gateway_key[1]).chat.completions.create(**CHAT)
    theirs = oai(gateway, other_key).chat.completions.with_raw_response.create(**CHAT)
    assert theirs.headers["x-ingate-cache"] == "MISS"  # no header reveals the other org's entry
    assert len(fake.requests) == 2


def test_per_request_controls(gateway, gateway_key, fake, cached):
    auth = {"authorization": f"Bearer {gateway_key[1]}"}
    url = gateway.url + "/v1/chat/completions"
    assert httpx.post(url, json=CHAT, headers={**auth, "cache-control": "no-store"}).headers["x-ingate-cache"] == "MISS"
    assert httpx.post(url, json=CHAT, headers=auth).headers["x-ingate-cache"] == "MISS"  # nothing was stored
    assert httpx.post(url, json=CHAT, headers=auth).headers["x-ingate-cache"] == "HIT"
    refreshed = httpx.post(url, json=CHAT, headers={**auth, "cache-control": "no-cache"})
    assert refreshed.headers["x-ingate-cache"] == "REFRESH"
    assert httpx.post(url, json=CHAT, headers={**auth, "x-ingate-cache": "off"}).headers["x-ingate-cache"] == "BYPASS"
    namespaced = httpx.post(url, json=CHAT, headers={**auth, "x-ingate-cache-namespace": "tests"})
    assert namespaced.headers["x-ingate-cache"] == "MISS"
    time.sleep(1.1)
    aged = httpx.post(url, json=CHAT, headers={**auth, "cache-control": "max-age=1"})
    assert aged.headers["x-ingate-cache"] == "MISS"  # the entry is older than the client accepts
    bad = httpx.post(url, json=CHAT, headers={**auth, "x-ingate-cache": "sometimes"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cache_header"


def test_a_positive_temperature_is_cached_only_when_the_client_asks(gateway, gateway_key, fake, cached):
    auth = {"authorization": f"Bearer {gateway_key[1]}"}
    url = gateway.url + "/v1/chat/completions"
    warm = {**CHAT, "temperature": 0.7}
    assert httpx.post(url, json=warm, headers=auth).headers["x-ingate-cache"] == "BYPASS"
    helicone = {**auth, "helicone-cache-enabled": "true"}
    assert httpx.post(url, json=warm, headers=helicone).headers["x-ingate-cache"] == "MISS"
    assert httpx.post(url, json=warm, headers=helicone).headers["x-ingate-cache"] == "HIT"


def test_errors_and_broken_streams_are_never_cached(gateway, gateway_key, fake, cached):
    auth = {"authorization": f"Bearer {gateway_key[1]}"}
    url = gateway.url + "/v1/chat/completions"
    assert httpx.post(url, json=CHAT, headers={**auth, "x-fake-status": "500"}).status_code == 500
    assert httpx.post(url, json=CHAT, headers=auth).headers["x-ingate-cache"] == "MISS"
    cut = {**CHAT, "messages": [{"role": "user", "content": "a cut stream"}], "stream": True}
    with httpx.stream("POST", url, json=cut, headers={**auth, "x-fake-cut-after": "2"}) as response:
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()
    assert httpx.post(url, json=cut, headers=auth).headers["x-ingate-cache"] == "MISS"


def test_without_the_cache_enabled_nothing_is_cached(gateway, gateway_key, fake):
    client = oai(gateway, gateway_key[1])
    client.chat.completions.create(**CHAT)
    second = client.chat.completions.with_raw_response.create(**CHAT)
    assert "x-ingate-cache" not in second.headers and len(fake.requests) == 2


def test_a_namespace_header_cannot_reach_another_apps_entries(gateway, gateway_key, fake, cached):
    key = gateway_key[0]
    _, other_app_key = make_key(app=AppFactory(org=key.org, slug="second-app"))
    oai(gateway, gateway_key[1]).chat.completions.create(**CHAT)
    probe = oai(gateway, other_app_key).chat.completions.with_raw_response.create(
        **CHAT, extra_headers={"x-ingate-cache-namespace": f"app:{key.app_id}"}
    )
    assert probe.headers["x-ingate-cache"] == "MISS" and len(fake.requests) == 2


def test_tool_calls_replay_as_streams_the_sdks_put_back_together(gateway, gateway_key, fake, cached):
    client = oai(gateway, gateway_key[1])
    tools = [{"type": "function", "function": WEATHER}]
    fake.replay(json.dumps(OPENAI_TOOL_CALLS))
    whole = client.chat.completions.create(**CHAT, tools=tools)
    with client.chat.completions.stream(**CHAT, tools=tools) as stream:
        for _ in stream:
            pass
        streamed = stream.get_final_completion()
    [call] = streamed.choices[0].message.tool_calls
    assert streamed.choices[0].finish_reason == whole.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_abc",
        "get_weather",
        {"city": "Paris"},
    )

    anthropic_client = anthropic.Anthropic(
        api_key=gateway_key[1], base_url=gateway.url, max_retries=0, default_headers={"x-ingate-cache": "on"}
    )
    tool = {"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}
    fake.replay(json.dumps(ANTHROPIC_TOOL_USE))
    first = anthropic_client.messages.create(**MESSAGE, tools=[tool])
    with anthropic_client.messages.stream(**MESSAGE, tools=[tool]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == first.stop_reason == "tool_use"
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in first.content]
    assert final.usage.output_tokens == 48
    assert len(fake.requests) == 2  # one upstream call per format: each stream was a hit


def test_an_entry_expires_after_the_time_to_live_of_the_settings(gateway, gateway_key, fake):
    cache_settings_create(actor=Actor.system("test"), org=gateway_key[0].org, enabled=True, ttl_seconds=1)
    client = oai(gateway, gateway_key[1])
    client.chat.completions.create(**CHAT)
    assert client.chat.completions.with_raw_response.create(**CHAT).headers["x-ingate-cache"] == "HIT"
    time.sleep(1.2)
    assert client.chat.completions.with_raw_response.create(**CHAT).headers["x-ingate-cache"] == "MISS"
    assert len(fake.requests) == 2


def test_a_purge_from_the_api_empties_the_cache_the_gateway_answers_from(
    gateway, gateway_key, fake, cached, client_for
):
    key = gateway_key[0]
    admin = MembershipFactory(org=key.org, role=Role.ADMIN, user=UserFactory(username="ops")).user
    client = oai(gateway, gateway_key[1])
    client.chat.completions.create(**CHAT)
    assert client.chat.completions.with_raw_response.create(**CHAT).headers["x-ingate-cache"] == "HIT"
    other_namespace = client_for(user=admin).post(PURGE, {"org": key.org_id, "namespace": "elsewhere"}, format="json")
    assert other_namespace.json()["dropped"] == 0
    assert client.chat.completions.with_raw_response.create(**CHAT).headers["x-ingate-cache"] == "HIT"
    purged = client_for(user=admin).post(PURGE, {"org": key.org_id}, format="json")
    assert purged.status_code == 200 and purged.json()["dropped"] == 1
    assert client.chat.completions.with_raw_response.create(**CHAT).headers["x-ingate-cache"] == "MISS"
    assert len(fake.requests) == 2


def test_a_body_that_is_not_json_bypasses_the_cache_and_goes_upstream(gateway, gateway_key, fake, cached):
    auth = {"authorization": f"Bearer {gateway_key[1]}", "content-type": "text/plain"}
    url = gateway.url + "/v1/chat/completions"
    for _ in range(2):
        reply = httpx.post(url, content=b"what is 2 + 2?", headers={**auth, "x-ingate-cache": "on"})
        assert reply.headers["x-ingate-cache"] == "BYPASS"
    assert len(fake.requests) == 2


def test_a_malformed_cache_header_is_an_error_in_the_anthropic_shape_for_anthropic_clients(
    gateway, gateway_key, fake, cached
):
    client = anthropic.Anthropic(
        api_key=gateway_key[1], base_url=gateway.url, max_retries=0, default_headers={"x-ingate-cache": "sometimes"}
    )
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(**MESSAGE)
    assert refused.value.body["type"] == "error" and "X-Ingate-Cache" in refused.value.body["error"]["message"]
    assert not fake.requests


def test_embeddings_are_answered_from_the_cache(gateway, gateway_key, fake, cached):
    client = oai(gateway, gateway_key[1])
    first = client.embeddings.create(model="text-embedding-3-small", input=["cached vectors"])
    again = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["cached vectors"])
    assert again.headers["x-ingate-cache"] == "HIT" and again.parse().model_dump() == first.model_dump()
    assert len(fake.requests) == 1


def test_gemini_and_ollama_answers_replay_in_their_own_formats(gateway, gateway_key, fake, cached):
    asked = {"x-ingate-cache": "on"}  # no temperature: the providers' defaults sample, so the client asks
    client = genai.Client(
        api_key=gateway_key[1], http_options=genai.types.HttpOptions(base_url=gateway.url, headers=asked)
    )
    whole = client.models.generate_content(model="gemini-2.0-flash", contents="Why is the sky blue")
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="Why is the sky blue"))
    assert "".join(c.text or "" for c in chunks) == whole.text == DEFAULT_TEXT
    assert chunks[-1].usage_metadata.candidates_token_count == whole.usage_metadata.candidates_token_count
    assert len(fake.requests) == 1

    headers = {"authorization": f"Bearer {gateway_key[1]}", **asked}
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}]}
    first = httpx.post(gateway.url + "/api/chat", json={**body, "stream": False}, headers=headers)
    with httpx.stream("POST", gateway.url + "/api/chat", json=body, headers=headers) as response:
        assert response.headers["x-ingate-cache"] == "HIT"
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert "".join(line["message"]["content"] for line in lines) == first.json()["message"]["content"]
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == first.json()["eval_count"]
    assert len(fake.requests) == 2
