"""Routes through the running gateway with the official SDKs: fallback on failures, translation between the OpenAI
and Anthropic formats (whole answers and streams), the chain header, the circuit breaker failing fast, and what the
client and the record see."""

from __future__ import annotations

import json
import socket
import time

import anthropic
import httpx
import openai
import pytest
from asgiref.sync import async_to_sync

from proxy import internal
from tenancy.models import Role, Route, RouteTarget
from tenancy.tests.factories import MembershipFactory, make_credential
from tests.fake_provider.options import DEFAULT_TEXT
from tests.test_records import wait_for_record

CHAT = {"model": "smart", "messages": [{"role": "user", "content": "hello there"}]}
MESSAGE = {"model": "smart", "max_tokens": 64, "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def org(gateway_key):
    return gateway_key[0].app.org if gateway_key[0].app_id else gateway_key[0].org


def route(org, *targets, name="smart", **options) -> Route:
    made = Route.objects.create(org=org, name=name, **options)
    for position, (provider, model) in enumerate(targets):
        RouteTarget.objects.create(route=made, position=position, provider=provider, model=model)
    return made


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def oai(gateway, gateway_key) -> openai.OpenAI:
    return openai.OpenAI(api_key=gateway_key[1], base_url=gateway.url + "/v1", max_retries=0)


def test_a_failing_first_target_falls_back_and_the_client_sees_which_target_answered(gateway, gateway_key, fake, org):
    fake.per_model["gpt-down"] = {"status": 503}
    route(org, ("openai", "gpt-down"), ("openai", "gpt-4o-mini"))
    raw = oai(gateway, gateway_key).chat.completions.with_raw_response.create(**CHAT)
    completion = raw.parse()
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert raw.headers["x-ingate-route"] == "smart" and raw.headers["x-ingate-attempts"] == "2"
    assert raw.headers["x-ingate-provider"] == "openai" and raw.headers["x-ingate-model"] == "gpt-4o-mini"
    assert [json.loads(r.body)["model"] for r in fake.requests] == ["gpt-down", "gpt-4o-mini"]
    [record] = gateway.wait_for_records(1)
    assert record.route == "smart" and record.model == "gpt-4o-mini" and record.status == 200
    assert [(a["model"], a["status"]) for a in record.attempts] == [("gpt-down", 503), ("gpt-4o-mini", 200)]


def test_a_connect_error_moves_on_to_the_next_provider(gateway, gateway_key, fake, org, settings):
    settings.INGATE_PROVIDER_ENV = {**settings.INGATE_PROVIDER_ENV, "openai": {"base_url": dead_url(), "api_key": "k"}}
    route(org, ("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"))
    completion = oai(gateway, gateway_key).chat.completions.create(**CHAT)
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.object == "chat.completion" and completion.usage.completion_tokens == 5
    assert fake.requests[-1].path == "/v1/messages"  # answered by Anthropic, in Anthropic's format
    [record] = gateway.wait_for_records(1)
    assert record.provider == "anthropic" and record.attempts[0]["status"] == 502


def test_a_status_the_route_does_not_retry_on_is_the_clients_answer(gateway, gateway_key, fake, org):
    fake.per_model["gpt-strict"] = {"status": 400}
    route(org, ("openai", "gpt-strict"), ("openai", "gpt-4o-mini"))
    with pytest.raises(openai.BadRequestError):
        oai(gateway, gateway_key).chat.completions.create(**CHAT)
    assert len(fake.requests) == 1


def test_opt_in_statuses_move_on_too(gateway, gateway_key, fake, org):
    fake.per_model["gpt-strict"] = {"status": 400}
    route(org, ("openai", "gpt-strict"), ("openai", "gpt-4o-mini"), retry_on_statuses=[400])
    assert oai(gateway, gateway_key).chat.completions.create(**CHAT).choices[0].message.content == DEFAULT_TEXT


def test_when_every_target_fails_the_client_gets_the_last_providers_error_in_its_own_format(
    gateway, gateway_key, fake, org
):
    fake.per_model["gpt-down"] = {"status": 503}
    fake.per_model["claude-down"] = {"status": 529}
    route(org, ("openai", "gpt-down"), ("anthropic", "claude-down"))
    with pytest.raises(openai.APIStatusError) as caught:
        oai(gateway, gateway_key).chat.completions.create(**CHAT)
    assert caught.value.status_code == 529
    assert "fake provider error 529" in caught.value.message  # Anthropic's message, in OpenAI's error shape
    assert caught.value.response.headers["x-ingate-attempts"] == "2"


def test_openai_sdk_streams_from_an_anthropic_target_with_usage(gateway, gateway_key, fake, org):
    route(org, ("anthropic", "claude-haiku-4-5"))
    stream = oai(gateway, gateway_key).chat.completions.create(
        **CHAT, stream=True, stream_options={"include_usage": True}, extra_headers={"x-fake-chunks": "4"}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_TEXT
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
    [record] = gateway.wait_for_records(1)
    assert record.provider == "anthropic" and record.stream and record.usage.get("output_tokens") == 5


def test_anthropic_sdk_gets_a_message_from_an_openai_target(gateway, gateway_key, fake, org):
    route(org, ("openai", "gpt-4o-mini"))
    client = anthropic.Anthropic(api_key=gateway_key[1], base_url=gateway.url, max_retries=0)
    message = client.messages.create(**MESSAGE)
    assert message.type == "message" and message.content[0].text == DEFAULT_TEXT
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 5
    assert fake.requests[-1].path == "/v1/chat/completions"

    with client.messages.stream(**MESSAGE) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == DEFAULT_TEXT and final.usage.output_tokens == 5


def test_the_fallback_header_carries_a_chain_for_one_request(gateway, gateway_key, fake):
    fake.per_model["gpt-down"] = {"status": 503}
    completion = oai(gateway, gateway_key).chat.completions.create(
        model="gpt-down",
        messages=CHAT["messages"],
        extra_headers={"x-ingate-fallback": "anthropic/claude-haiku-4-5"},
    )
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert [r.path for r in fake.requests] == ["/v1/chat/completions", "/v1/messages"]


def test_a_chain_naming_an_unknown_provider_is_refused(gateway, gateway_key, fake):
    with pytest.raises(openai.BadRequestError) as caught:
        oai(gateway, gateway_key).chat.completions.create(
            model="gpt-4o-mini", messages=CHAT["messages"], extra_headers={"x-ingate-fallback": "nosuch/model-x"}
        )
    assert "nosuch" in caught.value.message and fake.requests == []


def test_an_unknown_route_named_in_the_header_lists_the_orgs_routes(gateway, gateway_key, fake, org):
    route(org, ("openai", "gpt-4o-mini"), name="cheap")
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {gateway_key[1]}", "x-ingate-route": "fast"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_route" and "cheap" in error["message"]


def test_a_single_target_route_fails_fast_while_its_circuit_is_open(gateway, gateway_key, fake, org, settings):
    settings.INGATE_ROUTE_HEALTH_THRESHOLD = 2
    settings.INGATE_ROUTE_HEALTH_COOLDOWN = 60
    fake.per_model["gpt-down"] = {"status": 503}
    route(org, ("openai", "gpt-down"))
    client = oai(gateway, gateway_key)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(**CHAT)
    assert len(fake.requests) == 2
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**CHAT)
    assert caught.value.status_code == 503 and len(fake.requests) == 2  # not sent: failed fast
    assert caught.value.body["code"] == "route_unavailable"
    assert int(caught.value.response.headers["retry-after"]) > 0


def test_a_stream_that_breaks_after_its_first_bytes_is_not_spliced_with_another_answer(gateway, gateway_key, fake, org):
    route(org, ("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"))
    body = {**CHAT, "stream": True}
    headers = {"authorization": f"Bearer {gateway_key[1]}", "x-fake-chunks": "6", "x-fake-cut-after": "2"}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.headers["x-ingate-model"] == "gpt-4o-mini"
        with pytest.raises(httpx.RemoteProtocolError):
            b"".join(response.iter_raw())
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"]  # no second provider


def test_a_plain_request_is_not_touched_by_an_orgs_routes(gateway, gateway_key, fake, org):
    route(org, ("anthropic", "claude-haiku-4-5"))
    response = oai(gateway, gateway_key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=CHAT["messages"]
    )
    assert "x-ingate-route" not in response.headers
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"]


def test_ingates_own_calls_use_a_route_by_its_name(gateway, gateway_key, fake, org):
    fake.per_model["gpt-down"] = {"status": 503}
    route(org, ("openai", "gpt-down"), ("anthropic", "claude-haiku-4-5"))
    key = gateway_key[0]
    answer = async_to_sync(internal.chat)(
        internal.Principal(org_id=key.org_id, org_slug=key.org.slug),
        "openai",
        "smart",
        [{"role": "user", "content": "hello there"}],
    )
    assert answer.status == 200 and answer.text == DEFAULT_TEXT
    assert answer.model.startswith("claude-haiku-4-5") and answer.output_tokens == 5


def test_the_routes_page_shows_a_paused_target_and_why(gateway, gateway_key, fake, org, settings, client):
    settings.INGATE_ROUTE_HEALTH_THRESHOLD = 2
    fake.per_model["gpt-down"] = {"status": 503}
    route(org, ("openai", "gpt-down"), ("openai", "gpt-4o-mini"))
    route(org, ("openai", "gpt-4o-mini"), name="steady")
    for _ in range(2):
        oai(gateway, gateway_key).chat.completions.create(**CHAT)
    admin = MembershipFactory(org=org, role=Role.ADMIN).user
    client.force_login(admin)
    page = client.get(f"/ingate/routes/?org={org.slug}").content.decode()
    smart = page.split('data-testid="health-smart">', 1)[1].split("</td>", 1)[0]
    assert "openai/gpt-down paused until" in smart and "HTTP 503" in smart
    assert "all targets healthy" in page.split('data-testid="health-steady">', 1)[1].split("</td>", 1)[0]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
def test_each_default_status_moves_on_to_the_next_target(gateway, gateway_key, fake, org, status):
    fake.per_model["gpt-down"] = {"status": status}
    route(org, ("openai", "gpt-down"), ("anthropic", "claude-haiku-4-5"))
    assert oai(gateway, gateway_key).chat.completions.create(**CHAT).choices[0].message.content == DEFAULT_TEXT
    assert [r.path for r in fake.requests] == ["/v1/chat/completions", "/v1/messages"]


def test_a_stream_that_sends_nothing_within_the_first_byte_limit_moves_on(gateway, gateway_key, fake, org):
    fake.per_model["gpt-slow"] = {"first_chunk_delay_ms": 3000}
    route(org, ("openai", "gpt-slow"), ("openai", "gpt-4o-mini"), first_byte_timeout_seconds=0.3)
    started = time.perf_counter()
    stream = oai(gateway, gateway_key).chat.completions.create(**CHAT, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == DEFAULT_TEXT and 0.3 <= time.perf_counter() - started < 2.5
    [record] = gateway.wait_for_records(1)
    assert [a["status"] for a in record.attempts] == [504, 200] and "0.3s" in record.attempts[0]["error"]


def test_a_retry_waits_what_the_providers_retry_after_asks(gateway, gateway_key, fake, org):
    fake.per_model["gpt-busy"] = {"status": 429, "retry_after": "1"}
    route(org, ("openai", "gpt-busy"), retries_per_target=1)
    started = time.perf_counter()
    with pytest.raises(openai.RateLimitError):
        oai(gateway, gateway_key).chat.completions.create(**CHAT)
    assert time.perf_counter() - started >= 1.0
    assert len(fake.requests) == 2


def test_a_rate_limited_key_hands_over_to_the_same_models_other_key_first(gateway, gateway_key, fake, org):
    make_credential(org, "openai", name="openai-backup", secret="sk-backup-key-0002")
    fake.per_model["gpt-busy"] = {"status": 429}
    made = route(org, ("openai", "gpt-busy"), ("anthropic", "claude-haiku-4-5"))
    RouteTarget.objects.create(
        route=made, position=2, provider="openai", model="gpt-busy", credential=org.provider_credentials.get()
    )
    assert oai(gateway, gateway_key).chat.completions.create(**CHAT).choices[0].message.content == DEFAULT_TEXT
    keys = [r.headers.get("authorization", "") for r in fake.requests]
    assert keys[:2] == ["Bearer sk-upstream-openai-0001", "Bearer sk-backup-key-0002"]  # the pool before Anthropic
    assert fake.requests[2].path == "/v1/messages"


ANTHROPIC_TOOL_USE = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [
        {"type": "text", "text": "Let me check the weather."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 380, "output_tokens": 48},
}

OPENAI_TOOL_CALLS = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
}

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_openai_sdk_tools_answered_by_anthropic_come_back_as_tool_calls(gateway, gateway_key, fake, org):
    route(org, ("anthropic", "claude-haiku-4-5"))
    fake.replay(json.dumps(ANTHROPIC_TOOL_USE))
    completion = oai(gateway, gateway_key).chat.completions.create(
        **CHAT, tools=[{"type": "function", "function": WEATHER}]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.usage.prompt_tokens == 380 and completion.usage.completion_tokens == 48
    sent = json.loads(fake.requests[0].body)
    assert sent["tools"][0]["name"] == "get_weather" and sent["tools"][0]["input_schema"] == WEATHER["parameters"]
    [record] = gateway.wait_for_records(1)
    assert record.provider == "anthropic" and record.usage["input_tokens"] == 380


def test_anthropic_sdk_tools_answered_by_openai_come_back_as_tool_use(gateway, gateway_key, fake, org):
    route(org, ("openai", "gpt-4o-mini"))
    fake.replay(json.dumps(OPENAI_TOOL_CALLS))
    client = anthropic.Anthropic(api_key=gateway_key[1], base_url=gateway.url, max_retries=0)
    tool = {"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}
    message = client.messages.create(**MESSAGE, tools=[tool])
    assert message.stop_reason == "tool_use"
    [block] = [b for b in message.content if b.type == "tool_use"]
    assert block.name == "get_weather" and block.input == {"city": "Paris"}
    assert message.usage.input_tokens == 82 and message.usage.output_tokens == 17


def test_a_routed_requests_attempts_are_stored_and_shown_on_its_page(recording, gateway_key, fake, org, client):
    fake.per_model["gpt-down"] = {"status": 503}
    route(org, ("openai", "gpt-down"), ("anthropic", "claude-haiku-4-5"))
    raw = oai(recording, gateway_key).chat.completions.with_raw_response.create(**CHAT)
    request_id = raw.headers["x-ingate-request-id"]
    stored = wait_for_record(request_id)
    assert stored.route == "smart" and stored.provider == "anthropic" and stored.model == "claude-haiku-4-5"
    assert [(a["provider"], a["status"]) for a in stored.attempts] == [("openai", 503), ("anthropic", 200)]
    assert stored.cost_total is not None  # priced as the Claude model that answered
    client.force_login(MembershipFactory(org=org, role=Role.VIEWER).user)
    page = client.get(f"/ingate/logs/{request_id}/").content.decode()
    attempts = page.split('data-testid="attempts"', 1)[1].split("</table>", 1)[0]
    assert "openai/gpt-down" in attempts and "503" in attempts and "anthropic/claude-haiku-4-5" in attempts


def test_a_route_whose_targets_all_lack_credentials_is_a_401_naming_each(gateway, gateway_key, fake, org, settings):
    settings.INGATE_PROVIDER_ENV = {
        **settings.INGATE_PROVIDER_ENV,
        "openai": {"base_url": fake.url, "api_key": ""},
        "anthropic": {"base_url": fake.url, "api_key": ""},
    }
    route(org, ("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"))
    with pytest.raises(openai.AuthenticationError) as caught:
        oai(gateway, gateway_key).chat.completions.create(**CHAT)
    message = caught.value.message
    assert "openai/gpt-4o-mini" in message and "anthropic/claude-haiku-4-5" in message and fake.requests == []


def test_a_target_skipped_while_its_circuit_is_open_shows_in_the_record(gateway, gateway_key, fake, org, settings):
    settings.INGATE_ROUTE_HEALTH_THRESHOLD = 2
    settings.INGATE_ROUTE_HEALTH_COOLDOWN = 60
    fake.per_model["gpt-down"] = {"status": 503}
    route(org, ("openai", "gpt-down"), ("openai", "gpt-4o-mini"))
    client = oai(gateway, gateway_key)
    for _ in range(2):
        client.chat.completions.create(**CHAT)  # the primary fails, the fallback answers; its circuit opens
    raw = client.chat.completions.with_raw_response.create(**CHAT)
    assert raw.headers["x-ingate-attempts"] == "1"  # the paused primary was not tried
    record = gateway.wait_for_records(3)[-1]
    assert [(a["model"], a["status"], bool(a.get("skipped"))) for a in record.attempts] == [
        ("gpt-4o-mini", 200, False),
        ("gpt-down", 0, True),
    ]
    assert "HTTP 503" in record.attempts[1]["error"]
    assert [json.loads(r.body)["model"] for r in fake.requests].count("gpt-down") == 2
