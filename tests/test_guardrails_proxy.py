"""Guardrails through the running gateway with the official SDKs: blocked requests in each provider's error shape
(recorded `blocked`, nothing sent upstream), reversible redaction (the provider sees placeholders, the client gets
its values back, in JSON answers, tool-call arguments and streams of every format even when a placeholder is split
across chunks), answers checked as they stream (hold and watch), flags, on_error."""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest

from proxy import formats
from tenancy.audit import Actor
from tenancy.guardrails import guardrail_policy_create

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
SECRET = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 2
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Write to {EMAIL} about card {CARD}."}]}


@pytest.fixture
def key(gateway_key):
    return gateway_key[0]


def policy(key, checks, **fields):
    return guardrail_policy_create(actor=Actor.system("test"), org=key.org, name="test policy", checks=checks, **fields)


def oai(gateway, plaintext, **headers) -> openai.OpenAI:
    return openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0, default_headers=headers)


def claude(gateway, plaintext) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=plaintext, base_url=gateway.url, max_retries=0)


def echo(fake):
    """The fake provider answers with the last user turn it received (placeholders and all)."""
    fake.answers = lambda model, text: text


# --- blocking requests ---------------------------------------------------------------------------------


def test_a_request_carrying_a_secret_is_refused_in_openai_shape_and_never_sent(gateway, gateway_key, fake, key):
    policy(key, [{"name": "no-keys", "kind": "pii", "entities": ["API_KEY"], "action": "block"}], message="No keys.")
    client = oai(gateway, gateway_key[1])
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"my key is {SECRET}"}]
        )
    error = caught.value.body
    assert error["code"] == "guardrail_blocked" and error["type"] == "invalid_request_error"
    assert "no-keys" in error["message"] and "No keys." in error["message"]
    assert fake.requests == []
    record = gateway.wait_for_records(1)[0]
    assert record.outcome == "blocked" and record.guardrail == "blocked" and record.status == 400
    [decision] = record.guardrail_decisions
    assert decision["check"] == "no-keys" and decision["action"] == "block" and decision["direction"] == "request"
    assert SECRET not in json.dumps(record.guardrail_decisions)


def test_anthropic_clients_get_their_own_error_type_for_a_keyword_block(gateway, gateway_key, fake, key):
    policy(key, [{"name": "codename", "kind": "keywords", "words": ["bluebird"], "action": "block"}])
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude(gateway, gateway_key[1]).messages.create(
            model="claude-haiku-4-5",
            max_tokens=32,
            system="Project Bluebird is confidential.",  # the system prompt is checked too
            messages=[{"role": "user", "content": "hello"}],
        )
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "codename" in caught.value.body["error"]["message"]
    assert fake.requests == []


def test_tool_results_and_tool_definitions_are_checked(gateway, gateway_key, fake, key):
    policy(key, [{"name": "no-cards", "kind": "pii", "entities": ["CREDIT_CARD"], "action": "block"}])
    messages = [
        {"role": "user", "content": "look it up"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": f"card on file: {CARD}"},
    ]
    with pytest.raises(openai.BadRequestError):
        oai(gateway, gateway_key[1]).chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert fake.requests == []


def test_denied_models_and_oversized_prompts_are_refused(gateway, gateway_key, fake, key):
    policy(
        key,
        [
            {"name": "models", "kind": "models", "deny": ["gpt-4o*"], "allow": ["gpt-*", "claude-*"]},
            {"name": "size", "kind": "max_size", "max_chars": 50},
        ],
    )
    client = oai(gateway, gateway_key[1])
    with pytest.raises(openai.BadRequestError, match="'models'"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="'models'"):
        client.chat.completions.create(model="llama3", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="'size'"):
        client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "word " * 20}])
    assert client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}])
    assert len(fake.requests) == 1


def test_flag_lets_the_request_through_and_marks_the_record(gateway, gateway_key, fake, key):
    policy(key, [{"name": "pii", "kind": "pii", "action": "flag"}])
    oai(gateway, gateway_key[1]).chat.completions.create(**CHAT)
    assert EMAIL in fake.last_request.body.decode()
    record = gateway.wait_for_records(1)[0]
    assert record.outcome == "ok" and record.guardrail == "flagged"
    assert record.guardrail_decisions[0]["action"] == "flag"
    assert EMAIL not in json.dumps(record.guardrail_decisions)


def test_a_key_policy_replaces_the_org_default(gateway, gateway_key, fake, key):
    policy(key, [{"name": "everything", "kind": "regex", "pattern": ".", "action": "block"}])
    guardrail_policy_create(
        actor=Actor.system("test"),
        org=key.org,
        key=key,
        name="lenient",
        checks=[{"name": "f", "kind": "pii", "action": "flag"}],
    )
    oai(gateway, gateway_key[1]).chat.completions.create(**CHAT)
    assert len(fake.requests) == 1


# --- reversible redaction ----------------------------------------------------------------------------------


def test_redacted_values_go_upstream_as_placeholders_and_come_back_restored(gateway, gateway_key, fake, key):
    policy(key, [{"name": "pii", "kind": "pii", "action": "redact"}], restore=True)
    echo(fake)
    answer = oai(gateway, gateway_key[1]).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"Write to {EMAIL} and {EMAIL} about card {CARD}."}],
    )
    sent = fake.last_request.json()["messages"][0]["content"]
    assert sent == "Write to <EMAIL_1> and <EMAIL_1> about card <CREDIT_CARD_1>."
    assert answer.choices[0].message.content == f"Write to {EMAIL} and {EMAIL} about card {CARD}."
    record = gateway.wait_for_records(1)[0]
    assert record.guardrail == "redacted" and record.outcome == "ok"


def test_without_restore_the_placeholders_stay(gateway, gateway_key, fake, key):
    policy(key, [{"name": "pii", "kind": "pii", "action": "redact"}])
    echo(fake)
    answer = oai(gateway, gateway_key[1]).chat.completions.create(**CHAT)
    assert answer.choices[0].message.content == "Write to <EMAIL_1> about card <CREDIT_CARD_1>."


def test_placeholders_split_across_stream_chunks_are_restored(gateway, gateway_key, fake, key):
    policy(key, [{"name": "pii", "kind": "pii", "action": "redact"}], restore=True)
    echo(fake)
    fake.defaults["chunks"] = 40  # character slices: every placeholder is cut somewhere
    stream = oai(gateway, gateway_key[1]).chat.completions.create(**CHAT, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == CHAT["messages"][0]["content"]
    assert not any("<" in p or ">" in p for p in pieces)


def test_anthropic_streams_are_restored_across_chunks(gateway, gateway_key, fake, key):
    policy(key, [{"name": "pii", "kind": "pii", "action": "redact"}], restore=True)
    echo(fake)
    fake.defaults["chunks"] = 33
    with claude(gateway, gateway_key[1]).messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": f"Mail {EMAIL} now"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == f"Mail {EMAIL} now"
    assert "<EMAIL_1>" in fake.last_request.body.decode()


STREAMS = [
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "Mail {email} now", "stream": True}, "openai", "responses"),
    ("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", {"contents": [{"role": "user", "parts": [{"text": "Mail {email} now"}]}]}, "gemini", ""),
    ("/api/chat", {"model": "llama3", "messages": [{"role": "user", "content": "Mail {email} now"}]}, "ollama", ""),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "family", "endpoint"), STREAMS, ids=["responses", "gemini", "ollama"])
def test_every_formats_stream_is_restored_across_chunks(gateway, gateway_key, fake, key, path, body, family, endpoint):
    policy(key, [{"name": "pii", "kind": "pii", "action": "redact"}], restore=True)
    fake.defaults["text"] = "Mail <EMAIL_1> now"  # what a model answers to the redacted prompt
    fake.defaults["chunks"] = 29
    payload = json.loads(json.dumps(body).replace("{email}", EMAIL))
    response = httpx.post(gateway.url + path, json=payload, headers={"authorization": f"Bearer {gateway_key[1]}"})
    assert response.status_code == 200
    fmt = formats.of(family, endpoint)
    assert fmt.text(fmt.assemble(response.content)) == f"Mail {EMAIL} now"
    assert EMAIL not in fake.last_request.body.decode()


def test_tool_call_arguments_are_restored_whole_and_streamed(gateway, gateway_key, fake, key):
    policy(key, [{"name": "pii", "kind": "pii", "action": "redact"}], restore=True)
    client = oai(gateway, gateway_key[1])
    call = {"id": "call_1", "type": "function", "function": {"name": "send", "arguments": '{"to": "<EMAIL_1>"}'}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    fake.replay(json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }))  # fmt: skip
    answer = client.chat.completions.create(**CHAT)
    assert json.loads(answer.choices[0].message.tool_calls[0].function.arguments) == {"to": EMAIL}

    def chunk(delta, finish=None):
        data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return "data: " + json.dumps(data) + "\n\n"

    head = {
        "role": "assistant",
        "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "send", "arguments": ""}}],
    }
    parts = ['{"to": "<EM', "AIL_", '1>"}']
    stream = chunk(head) + "".join(chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in parts)
    fake.replay(stream + chunk({}, "tool_calls") + "data: [DONE]\n\n", "text/event-stream")
    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in client.chat.completions.create(**CHAT, stream=True)
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(arguments) == {"to": EMAIL}


# --- answers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hold", "watch"])
def test_a_streamed_answer_that_breaks_a_block_policy_ends_with_an_error_event(gateway, gateway_key, fake, key, mode):
    policy(
        key,
        [{"name": "no-launch-codes", "kind": "regex", "pattern": "launch code \\d+", "direction": "response"}],
        stream_mode=mode,
    )
    fake.defaults["text"] = "Sure. The launch code 12345 is secret, do not share it with anyone at all." + " More." * 60
    fake.defaults["chunks"] = 70
    fake.defaults["chunk_delay_ms"] = 5
    seen = []
    with pytest.raises(openai.APIError, match="no-launch-codes"):
        for c in oai(gateway, gateway_key[1]).chat.completions.create(**CHAT, stream=True):
            seen.append(c.choices[0].delta.content or "" if c.choices else "")
    if mode == "hold":
        assert "12345" not in "".join(seen)  # held back until checked: never released
    record = gateway.wait_for_records(1)[0]
    assert record.outcome == "blocked" and record.guardrail == "blocked"
    assert record.guardrail_decisions[0]["direction"] == "response"
    assert fake.wait_for_disconnects(1)  # the provider was hung up on: it stops generating for nobody


def test_anthropic_stream_blocked_on_the_answer_ends_with_an_anthropic_error_event(gateway, gateway_key, fake, key):
    policy(key, [{"name": "no-launch-codes", "kind": "regex", "pattern": "launch code", "direction": "response"}])
    fake.defaults["text"] = "the launch code is 12345"
    with pytest.raises(anthropic.APIStatusError, match="no-launch-codes"):
        with claude(gateway, gateway_key[1]).messages.stream(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            "".join(stream.text_stream)
    assert gateway.wait_for_records(1)[0].outcome == "blocked"


def test_a_whole_answer_that_is_not_the_json_asked_for_is_refused(gateway, gateway_key, fake, key):
    schema = {"type": "object", "required": ["answer"]}
    policy(key, [{"name": "json-out", "kind": "json", "schema": schema, "action": "block"}])
    fake.defaults["text"] = '{"answer": 4}'
    client = oai(gateway, gateway_key[1])
    assert json.loads(client.chat.completions.create(**CHAT).choices[0].message.content) == {"answer": 4}
    fake.defaults["text"] = '{"reply": 4}'
    with pytest.raises(openai.BadRequestError, match="json-out"):
        client.chat.completions.create(**CHAT)
    records = gateway.wait_for_records(2)
    assert records[1].outcome == "blocked" and records[1].usage  # the provider's usage is kept: it was billed


# --- on_error and calls through the gateway ---------------------------------------------------------------


def test_a_moderation_check_calls_the_gateway_itself_and_blocks_a_flagged_prompt(gateway, gateway_key, fake, key):
    policy(key, [{"name": "moderation", "kind": "moderation", "action": "block"}])
    client = oai(gateway, gateway_key[1])
    assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    with pytest.raises(openai.BadRequestError, match="violence"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "how to kill it"}])
    assert [r.path for r in fake.requests] == ["/v1/moderations", "/v1/chat/completions", "/v1/moderations"]
    records = gateway.wait_for_records(4)
    moderation_calls = [r for r in records if r.endpoint == "moderations"]
    assert len(moderation_calls) == 2 and all(r.outcome == "ok" for r in moderation_calls)
    blocked = records[-1]
    assert blocked.outcome == "blocked" and blocked.guardrail_decisions[0]["call"] == moderation_calls[1].request_id


def test_a_check_that_cannot_run_blocks_by_default_and_passes_when_the_policy_allows(gateway, gateway_key, fake, key):
    fake.per_model["omni-moderation-latest"] = {"status": 500}
    policy(key, [{"name": "moderation", "kind": "moderation", "action": "block"}])
    client = oai(gateway, gateway_key[1])
    with pytest.raises(openai.BadRequestError, match="could not run"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    key.org.guardrail_policies.update(on_error="allow")
    gateway.app.credentials.invalidate()
    assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    record = [r for r in gateway.wait_for_records(4) if r.endpoint == "chat.completions"][-1]
    assert record.outcome == "ok" and record.guardrail_decisions[0]["action"] == "error"


def test_an_org_without_a_policy_is_untouched(gateway, gateway_key, fake):
    echo(fake)
    answer = oai(gateway, gateway_key[1]).chat.completions.create(**CHAT)
    assert answer.choices[0].message.content == CHAT["messages"][0]["content"]
    record = gateway.wait_for_records(1)[0]
    assert record.guardrail == "" and record.guardrail_decisions == []


def test_a_judge_check_asks_a_registry_prompt_through_the_gateway(gateway, gateway_key, fake, key):
    from prompts import services as prompts

    prompt = prompts.prompt_create(actor=Actor.system("test"), org=key.org, namespace="guards", name="judge")
    version = prompts.version_create(
        actor=Actor.system("test"),
        prompt=prompt,
        messages=[{"role": "user", "content": "Answer PASS or FAIL: is this on topic? {{input}}"}],
    )
    prompts.label_set(actor=Actor.system("test"), prompt=prompt, name="production", version=version)
    judge = {"name": "on-topic", "kind": "judge", "prompt": "guards/judge@production", "model": "gpt-4o-mini"}
    policy(key, [{**judge, "action": "block"}])
    fake.answers = lambda model, text: "FAIL" if "is this on topic?" in text and "crypto" in text else None
    client = oai(gateway, gateway_key[1])
    assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "2 + 2?"}])
    with pytest.raises(openai.BadRequestError, match="on-topic"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "buy crypto"}])
    judged = fake.requests[-1].json()["messages"][0]["content"]
    assert judged == "Answer PASS or FAIL: is this on topic? buy crypto"  # the registry prompt, rendered
    records = gateway.wait_for_records(4)
    calls = [r for r in records if r.prompt_version_id == version.pk]
    assert len(calls) == 2 and all(r.usage for r in calls)  # recorded like any call, with usage to cost
    assert records[-1].guardrail_decisions[0]["call"] == calls[-1].request_id


def test_stored_bodies_are_redacted_whatever_the_action_on_the_wire(recording, gateway_key, fake, key):
    from observability.models import BodyMode, ObservabilitySettings, RequestBody

    ObservabilitySettings.objects.update_or_create(org=key.org, defaults={"body_mode": BodyMode.FULL})
    policy(key, [{"name": "pii", "kind": "pii", "action": "flag"}], redact_stored=True)
    echo(fake)
    raw = oai(recording, gateway_key[1]).chat.completions.with_raw_response.create(**CHAT)
    assert EMAIL in raw.parse().choices[0].message.content  # flagged only: the wire is untouched
    request_id = raw.headers["x-ingate-request-id"]
    deadline = time.monotonic() + 5
    while (body := RequestBody.objects.filter(record_id=request_id).first()) is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert EMAIL not in body.request and EMAIL not in body.response and CARD not in body.request
    assert "<EMAIL_1>" in body.request and "<EMAIL_1>" in body.response


def test_a_blocked_request_reserves_no_budget_and_a_redacted_one_is_cached_as_the_provider_saw_it(
    gateway, gateway_key, fake, key
):
    from tenancy.cache import cache_settings_create
    from tenancy.limits import rate_limit_create

    rate_limit_create(actor=Actor.system("test"), org=key.org, requests_per_minute=2)
    cache_settings_create(actor=Actor.system("test"), org=key.org, enabled=True)
    policy(
        key,
        [
            {"name": "codename", "kind": "keywords", "words": ["bluebird"]},
            {"name": "pii", "kind": "pii", "action": "redact"},
        ],
        restore=True,
    )
    echo(fake)
    client = oai(gateway, gateway_key[1])
    for _ in range(3):  # refused by the guardrail, never counted against the two requests a minute
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="gpt-4o-mini", temperature=0, messages=[{"role": "user", "content": "bluebird"}]
            )
    other = "john.roe@example.org"
    first = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", temperature=0, messages=[{"role": "user", "content": f"Hi {EMAIL}"}]
    )
    second = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", temperature=0, messages=[{"role": "user", "content": f"Hi {other}"}]
    )
    assert first.parse().choices[0].message.content == f"Hi {EMAIL}"
    # Both went upstream as "Hi <EMAIL_1>": one entry, answered back with each client's own value.
    assert second.headers["x-ingate-cache"] == "HIT" and second.parse().choices[0].message.content == f"Hi {other}"
    assert len(fake.requests) == 1


def test_answers_are_redacted_but_the_clients_own_values_come_back(gateway, gateway_key, fake, key):
    policy(key, [{"name": "pii", "kind": "pii", "action": "redact", "direction": "both"}], restore=True)
    fake.defaults["text"] = "I wrote to <EMAIL_1>; their office is on +44 20 7946 0958."
    client = oai(gateway, gateway_key[1])
    whole = client.chat.completions.create(**CHAT).choices[0].message.content
    assert whole == f"I wrote to {EMAIL}; their office is on <PHONE_1>."
    fake.defaults["chunks"] = 17
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(**CHAT, stream=True) if c.choices
    )
    assert streamed == whole


ERROR_ENDS = [
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "stream": True}, b'"type":"error"'),
    ("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, b'"status":"INVALID_ARGUMENT"'),
    ("/api/chat", {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}, b'{"error":"Blocked by guardrail'),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "ending"), ERROR_ENDS, ids=["responses", "gemini", "ollama"])
def test_every_formats_blocked_stream_ends_with_its_error_event(gateway, gateway_key, fake, key, path, body, ending):
    policy(key, [{"name": "no-codes", "kind": "regex", "pattern": "code \\d+", "direction": "response"}])
    fake.defaults["text"] = "the code 4321 opens it"
    fake.defaults["chunks"] = 6
    response = httpx.post(gateway.url + path, json=body, headers={"authorization": f"Bearer {gateway_key[1]}"})
    lines = [line for line in response.content.split(b"\n") if line.strip()]
    assert ending in lines[-1] and b"4321" not in response.content
    record = gateway.wait_for_records(1)[0]
    assert record.outcome == "blocked" and record.status == 200  # the head went out; the record says what happened


def test_hold_mode_still_lets_a_long_answer_flow_in_pieces(gateway, gateway_key, fake, key):
    policy(key, [{"name": "no-codes", "kind": "regex", "pattern": "code \\d+", "direction": "response"}])
    fake.defaults["text"] = " ".join(f"word{i}" for i in range(200))
    fake.defaults["chunks"] = 50
    fake.defaults["chunk_delay_ms"] = 10  # pieces arrive apart, as a model's do
    received = []
    with oai(gateway, gateway_key[1]).chat.completions.with_streaming_response.create(**CHAT, stream=True) as stream:
        for chunk in stream.iter_bytes():
            received.append(chunk)
    text = formats.of("openai", "chat.completions").text(
        formats.of("openai", "chat.completions").assemble(b"".join(received))
    )
    assert text == fake.defaults["text"] and len(received) > 3


def test_a_client_cannot_skip_guardrails_by_sending_the_internal_header(gateway, gateway_key, fake, key):
    policy(key, [{"name": "codename", "kind": "keywords", "words": ["bluebird"]}])
    client = oai(gateway, gateway_key[1], **{"x-ingate-guardrail-call": "1"})
    with pytest.raises(openai.BadRequestError, match="codename"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "bluebird"}])


CLAUDE_CODE = {"user-agent": "claude-cli/2.0.31 (external, cli)", "x-claude-code-session-id": "s-1"}


def test_claude_code_reading_a_secret_from_a_tool_result_is_refused(gateway, gateway_key, fake, key):
    policy(key, [{"name": "no-keys", "kind": "pii", "entities": ["API_KEY", "PRIVATE_KEY"], "action": "block"}])
    client = anthropic.Anthropic(
        api_key=gateway_key[1], base_url=gateway.url, max_retries=0, default_headers=CLAUDE_CODE
    )
    with pytest.raises(anthropic.BadRequestError, match="no-keys"):
        client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=256,
            system=[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            tools=[{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}],
            messages=[
                {"role": "user", "content": "what is in .env?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"path": ".env"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": f"OPENAI_API_KEY={SECRET}"}]},
            ],
        )  # fmt: skip
    assert fake.requests == []


def test_claude_code_tool_use_input_streamed_in_pieces_gets_the_real_value_back(gateway, gateway_key, fake, key):
    policy(key, [{"name": "pii", "kind": "pii", "action": "redact"}], restore=True)

    def event(kind, **fields):
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n"

    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}  # fmt: skip
    pieces = ['{"to": "<EM', "AIL", '_1>", "cc": "<', 'EMAIL_1>"}']
    stream = (
        event("message_start", message=message)
        + event("content_block_start", index=0, content_block={"type": "tool_use", "id": "t1", "name": "Mail", "input": {}})
        + "".join(event("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": p}) for p in pieces)
        + event("content_block_stop", index=0)
        + event("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 9})
        + event("message_stop")
    )  # fmt: skip
    fake.replay(stream, "text/event-stream")
    client = anthropic.Anthropic(
        api_key=gateway_key[1], base_url=gateway.url, max_retries=0, default_headers=CLAUDE_CODE
    )
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": f"mail {EMAIL}"}]
    ) as answer:
        final = answer.get_final_message()
    assert final.content[0].input == {"to": EMAIL, "cc": EMAIL}
    assert "<EMAIL_1>" in fake.last_request.body.decode()
