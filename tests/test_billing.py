"""Recorded cost equals the provider's bill: provider responses, shaped as the providers document and send them,
are replayed through the gateway and the stored record is priced as the provider bills it (service tier, one-hour
cache writes, server-side tool fees, tool-use prompt tokens), or left unpriced and flagged, never negative."""

import json
from decimal import Decimal

import anthropic
import httpx
import openai

from observability.models import PriceOverride
from tests.test_records import wait_for_record

M = Decimal(1_000_000)


def _sse(events: list[dict], *, named: bool = False, done: bool = False) -> str:
    lines = []
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        lines.append(f"{head}data: {json.dumps(event)}\n\n")
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines)


def _openai_chat_completion(model: str, tier: str, usage: dict) -> dict:
    return {
        "id": "chatcmpl-CQ9vY4",
        "object": "chat.completion",
        "created": 1765100000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Done.", "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "service_tier": tier,
        "system_fingerprint": None,
    }


_GPT5_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 2000,
    "total_tokens": 3000,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 1500,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def test_a_flex_request_is_priced_at_the_flex_rate_the_response_reports(recording, gateway_key, fake):
    _, plaintext = gateway_key
    fake.replay(json.dumps(_openai_chat_completion("gpt-5-2025-08-07", "flex", _GPT5_USAGE)))
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-5",
        messages=[{"role": "user", "content": "hi"}],
        service_tier="flex",
    )
    assert raw.parse().service_tier == "flex"
    record = wait_for_record(raw.headers["x-ingate-request-id"])
    assert record.service_tier == "flex"
    # gpt-5 flex: $0.625 input, $5 output per million (standard: $1.25 and $10).
    assert record.cost_input == 1000 * Decimal("0.625") / M
    assert record.cost_output == 2000 * Decimal(5) / M
    assert record.cost_total == Decimal("0.010625")


def test_a_streamed_priority_request_is_priced_at_the_priority_rate(recording, gateway_key, fake):
    _, plaintext = gateway_key
    base = {
        "id": "chatcmpl-CQ9w",
        "object": "chat.completion.chunk",
        "created": 1765100000,
        "model": "gpt-4.1-2025-04-14",
        "service_tier": "priority",
        "system_fingerprint": "fp_1",
    }
    chunks = [
        {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}, "finish_reason": None}
            ],
            "usage": None,
        },
        {**base, "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}], "usage": None},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
        {
            **base,
            "choices": [],
            "usage": {
                "prompt_tokens": 10_000,
                "completion_tokens": 1000,
                "total_tokens": 11_000,
                "prompt_tokens_details": {"cached_tokens": 4000, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        },
    ]
    fake.replay(_sse(chunks, done=True), "text/event-stream; charset=utf-8")
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        service_tier="priority",
    ) as response:
        request_id = response.headers["x-ingate-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    assert text == "Hello"
    record = wait_for_record(request_id)
    assert record.service_tier == "priority"
    # gpt-4.1 priority: $3.50 input, $0.875 cached input, $14 output per million.
    assert record.cost_input == 6000 * Decimal("3.5") / M
    assert record.cost_cache == 4000 * Decimal("0.875") / M
    assert record.cost_output == 1000 * Decimal(14) / M


def test_a_tier_the_price_table_does_not_know_is_priced_at_the_standard_rate(recording, gateway_key, fake):
    _, plaintext = gateway_key
    fake.replay(json.dumps(_openai_chat_completion("gpt-5-2025-08-07", "default", _GPT5_USAGE)))
    response = httpx.post(
        recording.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {plaintext}"},
        json={"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]},
    )
    record = wait_for_record(response.headers["x-ingate-request-id"])
    assert record.service_tier == "default"
    assert record.cost_total == (1000 * Decimal("1.25") + 2000 * Decimal(10)) / M


_OPUS_USAGE = {
    "input_tokens": 100,
    "cache_creation_input_tokens": 30_000,
    "cache_read_input_tokens": 50_000,
    "cache_creation": {"ephemeral_5m_input_tokens": 10_000, "ephemeral_1h_input_tokens": 20_000},
    "output_tokens": 1000,
    "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
    "service_tier": "standard",
}
# claude-opus-4-1 per million: $15 input, $1.50 cache read, $18.75 5-minute write, $30 one-hour write, $75
# output; $10 per thousand web searches; web fetches cost only their tokens.
_OPUS_CACHE = (50_000 * Decimal("1.5") + 10_000 * Decimal("18.75") + 20_000 * Decimal(30)) / M
_OPUS_TOTAL = 100 * Decimal(15) / M + _OPUS_CACHE + 1000 * Decimal(75) / M + 3 * Decimal("0.01")


def _assert_opus_bill(record):
    assert (record.cache_write_tokens, record.cache_write_1h_tokens, record.cache_read_tokens) == (
        30_000,
        20_000,
        50_000,
    )
    assert record.input_tokens == 80_100
    assert record.tool_calls == {"web_search": 3, "web_fetch": 1}
    assert record.cost_cache == _OPUS_CACHE
    assert record.cost_tools == Decimal("0.03")
    assert record.cost_total == _OPUS_TOTAL
    assert record.cost_input + record.cost_output + record.cost_cache + record.cost_tools == record.cost_total


def test_anthropic_one_hour_cache_writes_and_web_searches_are_billed_at_their_own_rates(recording, gateway_key, fake):
    _, plaintext = gateway_key
    fake.replay(
        json.dumps(
            {
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-4-1-20250805",
                "content": [
                    {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "x"}},
                    {"type": "text", "text": "Found it."},
                ],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": _OPUS_USAGE,
            }
        )
    )
    client = anthropic.Anthropic(api_key=plaintext, base_url=recording.url, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-opus-4-1",
        max_tokens=1024,
        messages=[{"role": "user", "content": "search"}],
    )
    assert raw.parse().usage.server_tool_use.web_search_requests == 3
    record = wait_for_record(raw.headers["x-ingate-request-id"])
    _assert_opus_bill(record)
    assert record.service_tier == "standard"


def test_a_streamed_anthropic_answer_is_billed_the_same_as_a_whole_one(recording, gateway_key, fake):
    _, plaintext = gateway_key
    start_usage = {key: value for key, value in _OPUS_USAGE.items() if key != "server_tool_use"} | {"output_tokens": 1}
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-opus-4-1-20250805",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Found it."}},
        {"type": "content_block_stop", "index": 0},
        # message_delta's usage is cumulative and, since 2025, repeats the input side and the server tool counts.
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {
                "input_tokens": 100,
                "cache_creation_input_tokens": 30_000,
                "cache_read_input_tokens": 50_000,
                "output_tokens": 1000,
                "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
            },
        },
        {"type": "message_stop"},
    ]
    fake.replay(_sse(events, named=True), "text/event-stream; charset=utf-8")
    client = anthropic.Anthropic(api_key=plaintext, base_url=recording.url, max_retries=0)
    with client.messages.stream(
        model="claude-opus-4-1", max_tokens=1024, messages=[{"role": "user", "content": "search"}]
    ) as stream:
        assert stream.get_final_text() == "Found it."
        request_id = stream.response.headers["x-ingate-request-id"]
    _assert_opus_bill(wait_for_record(request_id))


def test_openai_web_search_calls_in_a_responses_answer_are_charged_per_call(recording, gateway_key, fake):
    _, plaintext = gateway_key
    fake.replay(
        json.dumps(
            {
                "id": "resp_68af",
                "object": "response",
                "created_at": 1765100000,
                "status": "completed",
                "model": "gpt-4.1-2025-04-14",
                "service_tier": "default",
                "output": [
                    {
                        "type": "web_search_call",
                        "id": "ws_1",
                        "status": "completed",
                        "action": {"type": "search", "query": "a"},
                    },
                    {
                        "type": "web_search_call",
                        "id": "ws_2",
                        "status": "completed",
                        "action": {"type": "search", "query": "b"},
                    },
                    {
                        "type": "message",
                        "id": "msg_1",
                        "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "Here.", "annotations": []}],
                    },
                ],
                "usage": {
                    "input_tokens": 5000,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 500,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 5500,
                },
            }
        )
    )
    client = openai.OpenAI(api_key=plaintext, base_url=recording.url + "/v1", max_retries=0)
    raw = client.responses.with_raw_response.create(model="gpt-4.1", input="news?", tools=[{"type": "web_search"}])
    assert raw.parse().output_text == "Here."
    record = wait_for_record(raw.headers["x-ingate-request-id"])
    assert record.tool_calls == {"web_search": 2}
    # gpt-4.1: $2 input, $8 output per million; $10 per thousand web searches.
    assert record.cost_tools == Decimal("0.02")
    assert record.cost_total == (5000 * Decimal(2) + 500 * Decimal(8)) / M + Decimal("0.02")


def test_web_search_calls_of_a_streamed_responses_answer_are_charged_too(recording, gateway_key, fake):
    _, plaintext = gateway_key
    final = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "model": "gpt-4.1-2025-04-14",
        "service_tier": "default",
        "output": [
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            {
                "type": "message",
                "id": "m",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hi", "annotations": []}],
            },
        ],
        "usage": {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 10,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 110,
        },
    }
    created = {**final, "status": "in_progress", "service_tier": "auto", "output": [], "usage": None}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": created},
        {
            "type": "response.output_text.delta",
            "sequence_number": 1,
            "item_id": "m",
            "output_index": 1,
            "content_index": 0,
            "delta": "Hi",
        },
        {"type": "response.completed", "sequence_number": 2, "response": final},
    ]
    fake.replay(_sse(events, named=True), "text/event-stream; charset=utf-8")
    response = httpx.post(
        recording.url + "/v1/responses",
        headers={"authorization": f"Bearer {plaintext}"},
        json={"model": "gpt-4.1", "input": "news?", "stream": True, "tools": [{"type": "web_search"}]},
    )
    record = wait_for_record(response.headers["x-ingate-request-id"])
    assert record.tool_calls == {"web_search": 1} and record.service_tier == "default"
    assert record.cost_total == (100 * Decimal(2) + 10 * Decimal(8)) / M + Decimal("0.01")


def test_gemini_tool_use_prompt_tokens_are_billed_as_input(recording, gateway_key, fake):
    _, plaintext = gateway_key
    fake.replay(
        json.dumps(
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": "It is sunny."}], "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 1000,
                    "candidatesTokenCount": 200,
                    "toolUsePromptTokenCount": 3000,
                    "totalTokenCount": 4200,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1000}],
                    "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 3000}],
                },
                "modelVersion": "gemini-2.0-flash",
                "responseId": "abc",
            }
        )
    )
    response = httpx.post(
        recording.url + "/v1beta/models/gemini-2.0-flash:generateContent",
        headers={"x-goog-api-key": plaintext},
        json={"contents": [{"role": "user", "parts": [{"text": "weather?"}]}], "tools": [{"google_search": {}}]},
    )
    assert response.status_code == 200
    record = wait_for_record(response.headers["x-ingate-request-id"])
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (4000, 200, 4200)
    # gemini-2.0-flash: $0.10 input, $0.40 output per million.
    assert record.cost_input == 4000 * Decimal("0.1") / M
    assert record.cost_total == (4000 * Decimal("0.1") + 200 * Decimal("0.4")) / M


def test_inconsistent_numbers_leave_the_record_unpriced_and_flagged_never_negative(recording, gateway_key, fake):
    _, plaintext = gateway_key
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "total_tokens": 110,
        "prompt_tokens_details": {"cached_tokens": 900},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    fake.replay(json.dumps(_openai_chat_completion("gpt-4.1-2025-04-14", "default", usage)))
    response = httpx.post(
        recording.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {plaintext}"},
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
    )
    record = wait_for_record(response.headers["x-ingate-request-id"])
    assert record.cost_total is None and record.cost_input is None
    assert record.input_tokens == 100 and record.cache_read_tokens == 900  # what the provider said, kept as said
    assert any("more cached tokens (900) than input tokens (100)" in flag for flag in record.flags)


def test_an_orgs_override_prices_one_hour_writes_at_its_own_rate(recording, gateway_key, fake):
    key, plaintext = gateway_key
    PriceOverride.objects.create(
        org_id=key.org_id,
        model="claude-opus-4-1-20250805",
        input_per_mtok=10,
        output_per_mtok=50,
        cache_read_per_mtok=1,
        cache_write_per_mtok=12,
        cache_write_1h_per_mtok=20,
    )
    fake.replay(
        json.dumps(
            {
                "id": "msg_02",
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-4-1-20250805",
                "content": [{"type": "text", "text": "ok"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": _OPUS_USAGE,
            }
        )
    )
    response = httpx.post(
        recording.url + "/v1/messages",
        headers={"x-api-key": plaintext, "anthropic-version": "2023-06-01"},
        json={"model": "claude-opus-4-1", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
    )
    record = wait_for_record(response.headers["x-ingate-request-id"])
    assert record.price_source == "override"
    assert record.cost_cache == (50_000 * 1 + 10_000 * 12 + 20_000 * 20) / M
    assert record.cost_tools == Decimal("0.03")  # the table's web-search fee for the model still applies
