"""A request's input for its reservation: OpenAI's tokenizer over small OpenAI-format requests to OpenAI models
(never fewer tokens than the model is billed for), the bytes bound everywhere else, and through the gateway a
budget that admits what the tokenizer counts where the bytes bound would have refused."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import httpx
import pytest

from proxy.limits.tokens import CL100K, O200K, TOKENIZERS, Tokenizers, encoding_for, input_tokens
from tenancy.audit import Actor
from tenancy.limits import budget_create
from tests.test_limits_proxy import fresh_counters  # noqa: F401  (autouse)

BYTES_PER_TOKEN = 2.0
TEXT = "The quick brown fox jumps over the lazy dog, and then it writes some Python: def f(x): return x * 2. "


@pytest.fixture(scope="module")
def o200k():
    return TOKENIZERS.load_now(O200K)


def count(body: dict, models=("gpt-4o-mini",), limit: int = 1 << 20, tokenizers: Tokenizers = TOKENIZERS) -> int:
    return input_tokens(
        len(json.dumps(body)),
        body,
        list(models),
        bytes_per_token=BYTES_PER_TOKEN,
        tokenize_bytes=limit,
        tokenizers=tokenizers,
    )


def bytes_bound(body: dict) -> int:
    return math.ceil(len(json.dumps(body)) / BYTES_PER_TOKEN)


def openai_billed(o200k, messages: list[dict]) -> int:
    """What OpenAI bills a chat's text for gpt-4o models, by its own published rule: 3 tokens per message, its
    role and content (and name: one more), then 3 to prime the answer."""
    total = 3
    for message in messages:
        total += 3 + o200k.count(message["role"]) + o200k.count(message.get("content") or "")
        if "name" in message:
            total += 1 + o200k.count(message["name"])
    return total


def test_openai_models_are_counted_in_their_own_vocabulary():
    assert encoding_for("gpt-4o-mini") == O200K
    assert encoding_for("openai/gpt-5") == O200K  # through a router
    assert encoding_for("o3-mini") == O200K
    assert encoding_for("gpt-4-turbo") == CL100K
    assert encoding_for("gpt-3.5-turbo-0125") == CL100K
    assert encoding_for("claude-haiku-4-5") is None and encoding_for("llama3.1") is None


def test_a_chat_is_reserved_at_no_less_than_openai_bills_and_well_under_the_bytes_bound(o200k):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": TEXT * 8, "name": "alice"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "日本語のテキストも数えます。" * 5},
    ]
    body = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": messages}
    reserved = count(body)
    assert reserved >= openai_billed(o200k, messages)
    assert reserved < 0.8 * bytes_bound(body)


def test_tool_definitions_and_calls_are_counted_too(o200k):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city, today. " * 10,
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "A city"}}},
        },
    }
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny, 21 C. " * 20},
    ]
    plain = count({"model": "gpt-4o", "messages": messages})
    with_tools = count({"model": "gpt-4o", "messages": messages, "tools": [tool]})
    assert with_tools - plain >= o200k.count(json.dumps(tool["function"]["description"]))
    assert plain >= openai_billed(o200k, messages) + o200k.count('{"city": "Paris"}')


def test_responses_and_completions_inputs_are_counted(o200k):
    responses = {"model": "gpt-4.1-mini", "instructions": "Be brief.", "input": [{"role": "user", "content": TEXT}]}
    assert count(responses, models=["gpt-4.1-mini"]) >= o200k.count(TEXT) + o200k.count("Be brief.") + 4
    ids = {"model": "gpt-4o-mini", "prompt": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}  # a prompt given as token ids
    assert count(ids) >= 10


@pytest.mark.parametrize(
    "body",
    [
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
        },
        {"model": "gpt-4o", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
        {"model": "gpt-4o", "input": "and then?", "previous_response_id": "resp_1"},
        {"model": "gpt-4o", "prompt": {"id": "pmpt_1"}, "input": "hi"},
    ],
    ids=["image", "file", "previous-response", "stored-prompt"],
)
def test_input_the_text_does_not_tell_keeps_the_bytes_bound(o200k, body):
    assert count(body) == bytes_bound(body)


def test_other_models_large_bodies_and_mixed_routes_keep_the_bytes_bound(o200k):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": TEXT * 60}]}
    assert count(body, models=["claude-haiku-4-5"]) == bytes_bound(body)
    assert count(body, models=["gpt-4o-mini", "claude-haiku-4-5"]) == bytes_bound(body)  # a route's fallback
    assert count(body, limit=4096) == bytes_bound(body)  # over INGATE_LIMITS_TOKENIZE_BYTES
    assert count(body) < bytes_bound(body)


def test_until_a_vocabulary_has_loaded_requests_count_by_bytes():
    fresh = Tokenizers()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": TEXT}]}
    assert count(body, tokenizers=fresh) == bytes_bound(body)  # starts loading, does not wait for it
    fresh.load_now(O200K)
    assert count(body, tokenizers=fresh) < bytes_bound(body)


def test_a_budget_admits_what_the_tokenizer_counts_where_the_bytes_bound_would_refuse(gateway, gateway_key, settings):
    TOKENIZERS.load_now(O200K)
    key, plaintext = gateway_key
    body = {"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": TEXT * 30}]}
    # gpt-4o-mini input at $0.15 per million: ~1,500 bytes-bound tokens against ~700 counted.
    tokens, bound = count(body), bytes_bound(body)
    assert tokens < 0.6 * bound
    amount = Decimal(str(round(((tokens + bound) / 2 * 0.15 + 10 * 0.60) * 1e-6, 6)))
    budget_create(actor=Actor.system("test"), org=key.org, scope="key", key=key, amount_usd=amount, period="day")
    auth = {"authorization": f"Bearer {plaintext}"}
    settings.INGATE_LIMITS_TOKENIZE_BYTES = 0  # bytes only: the request's worst case does not fit
    refused = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=auth)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exceeded"
    settings.INGATE_LIMITS_TOKENIZE_BYTES = 4096  # the default: counted, it fits
    assert httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=auth).status_code == 200
