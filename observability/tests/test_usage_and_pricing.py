"""Token counts from each provider's own usage shape, and their price."""

from decimal import Decimal

import pytest

from observability.pricing import PRICE_TABLE, Override, cost_of
from proxy.formats import Tokens
from proxy.formats import tokens as normalize

# Usage objects as the providers send them (fields copied from captured responses).
OPENAI_CHAT = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0},
}
OPENAI_RESPONSES = {
    "input_tokens": 900,
    "input_tokens_details": {"cached_tokens": 512},
    "output_tokens": 200,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 1100,
}
# Anthropic streams: message_start's usage, then message_delta's, merged in that order by the proxy.
ANTHROPIC_STREAM = {
    "input_tokens": 25,
    "cache_creation_input_tokens": 2000,
    "cache_read_input_tokens": 30000,
    "output_tokens": 412,
    "service_tier": "standard",
}
GEMINI = {
    "promptTokenCount": 800,
    "candidatesTokenCount": 150,
    "cachedContentTokenCount": 400,
    "thoughtsTokenCount": 90,
    "totalTokenCount": 1040,
}
OLLAMA = {"prompt_eval_count": 26, "eval_count": 298}


@pytest.mark.parametrize(
    "provider, raw, expected",
    [
        ("openai", OPENAI_CHAT, Tokens(1200, 300, 1024, 0, 128)),
        ("azure", OPENAI_CHAT, Tokens(1200, 300, 1024, 0, 128)),
        ("groq", {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, Tokens(10, 5)),
        ("openai", {"prompt_tokens": 8, "total_tokens": 8}, Tokens(8, 0)),  # embeddings
        ("openai", OPENAI_RESPONSES, Tokens(900, 200, 512, 0, 64)),
        ("anthropic", ANTHROPIC_STREAM, Tokens(32025, 412, 30000, 2000, 0, tier="standard")),
        ("gemini", GEMINI, Tokens(800, 240, 400, 0, 90)),
        ("ollama", OLLAMA, Tokens(26, 298)),
    ],
)
def test_each_providers_usage_becomes_the_same_token_counts(provider, raw, expected):
    assert normalize(provider, raw) == expected


def test_no_usage_is_none_not_zero():
    assert normalize("openai", {}) is None
    assert normalize("openai", {"unrelated": 1}) is None


def test_openai_cached_tokens_are_not_billed_twice():
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million tokens.
    cost = cost_of(
        Tokens(1_000_000, 1_000_000, 400_000), provider="openai", models=["gpt-4o-mini-2024-07-18"], overrides={}
    )
    assert cost.input == Decimal("0.09")  # 600k uncached
    assert cost.cache == Decimal("0.03")  # 400k cached at half price
    assert cost.output == Decimal("0.6")
    assert cost.total == Decimal("0.72") and cost.source == PRICE_TABLE


def test_anthropic_cache_reads_and_writes_are_priced_at_their_own_rates():
    # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write (5 min), $5 output per million.
    tokens = normalize(
        "anthropic",
        {
            "input_tokens": 1_000_000,
            "cache_read_input_tokens": 2_000_000,
            "cache_creation_input_tokens": 1_000_000,
            "output_tokens": 100_000,
        },
    )
    cost = cost_of(tokens, provider="anthropic", models=["claude-haiku-4-5-20251001"], overrides={})
    assert cost.input == Decimal("1")
    assert cost.cache == Decimal("1.45")  # 2M x 0.10 + 1M x 1.25
    assert cost.output == Decimal("0.5")


def test_answered_model_is_priced_first_then_the_requested_one():
    cost = cost_of(Tokens(1_000_000, 0), provider="openai", models=["my-alias", "gpt-4o-mini"], overrides={})
    assert cost.input == Decimal("0.15")


def test_org_override_wins_and_prices_cache_at_input_rate_unless_given():
    overrides = {"ft:gpt-4o-mini:acme::x1": Override(Decimal("0.30"), Decimal("1.20"))}
    cost = cost_of(
        Tokens(2_000_000, 1_000_000, 1_000_000),
        provider="openai",
        models=["ft:gpt-4o-mini:acme::x1"],
        overrides=overrides,
    )
    assert (cost.input, cost.cache, cost.output, cost.source) == (
        Decimal("0.3"),
        Decimal("0.3"),
        Decimal("1.2"),
        "override",
    )


def test_ollama_is_free_unless_overridden_and_unknown_models_have_no_price():
    free = cost_of(Tokens(5000, 500), provider="ollama", models=["llama3.2"], overrides={})
    assert free.total == 0 and free.source == "free"
    assert cost_of(Tokens(5000, 500), provider="openai", models=["gpt-nonexistent-9"], overrides={}) is None
    assert cost_of(Tokens(5000, 500), provider="my-vllm", models=["qwen-local"], overrides={}) is None


def test_more_cached_than_prompt_tokens_is_unpriced_with_the_reason_on_tiered_and_flat_models():
    from observability.pricing import UnpricedUsage

    for model in ("gemini-2.5-pro", "gemini-2.0-flash"):  # genai-prices raised on one, went negative on the other
        with pytest.raises(UnpricedUsage, match=r"more cached tokens \(500\) than input tokens \(100\)"):
            cost_of(Tokens(100, 10, 500), provider="gemini", models=[model], overrides={})


def test_anthropic_one_hour_writes_are_kept_apart_from_five_minute_ones():
    tokens = normalize(
        "anthropic",
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 5,
        },
    )
    assert (tokens.input, tokens.cache_write, tokens.cache_write_1h) == (310, 300, 200)


def test_anthropic_server_tool_counts_and_gemini_tool_prompts_and_tier_are_read():
    anthropic_tokens = normalize(
        "anthropic",
        {
            "input_tokens": 1,
            "output_tokens": 1,
            "service_tier": "priority",
            "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
        },
    )
    assert anthropic_tokens.tool_calls == {"web_search": 2} and anthropic_tokens.tier == "priority"
    gemini = normalize(
        "gemini",
        {"promptTokenCount": 10, "candidatesTokenCount": 4, "toolUsePromptTokenCount": 30, "serviceTier": "FLEX"},
    )
    assert (gemini.input, gemini.output, gemini.tier) == (40, 4, "flex")


def test_a_long_prompt_prices_each_kind_of_cache_write_at_the_long_context_rate():
    # claude-sonnet-4-5 above 200k input tokens: $6 input, $7.50 5-minute write, $12 one-hour write per million.
    tokens = Tokens(input=300_000, output=0, cache_write=100_000, cache_write_1h=50_000)
    cost = cost_of(tokens, provider="anthropic", models=["claude-sonnet-4-5"], overrides={})
    assert cost.input == Decimal("1.2")
    assert cost.cache == Decimal("0.975")  # 50k x 7.50 + 50k x 12


def test_priority_tier_raises_the_price_and_an_unknown_tier_keeps_the_standard_one():
    plain = cost_of(Tokens(1_000_000, 1_000_000), provider="openai", models=["gpt-4.1"], overrides={})
    priority = cost_of(
        Tokens(1_000_000, 1_000_000, tier="priority"), provider="openai", models=["gpt-4.1"], overrides={}
    )
    unknown = cost_of(Tokens(1_000_000, 1_000_000, tier="scale"), provider="openai", models=["gpt-4.1"], overrides={})
    assert (plain.total, priority.total, unknown.total) == (Decimal(10), Decimal("17.5"), Decimal(10))


def test_tool_calls_without_a_fee_in_the_table_add_nothing():
    cost = cost_of(
        Tokens(1000, 10, tools=(("web_fetch", 4),)), provider="anthropic", models=["claude-opus-4-1"], overrides={}
    )
    assert cost.tools == 0


@pytest.mark.parametrize(
    "tokens, reason",
    [
        (
            Tokens(100, 10, cache_write=50, cache_write_1h=80),
            r"more one-hour cache writes \(80\) than cache writes \(50\)",
        ),
        (Tokens(100, 10, reasoning=50), r"more reasoning tokens \(50\) than output tokens \(10\)"),
    ],
)
def test_other_contradictions_are_unpriced_with_the_reason(tokens, reason):
    from observability.pricing import UnpricedUsage

    with pytest.raises(UnpricedUsage, match=reason):
        cost_of(tokens, provider="openai", models=["gpt-4.1"], overrides={})
