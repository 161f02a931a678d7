"""Cost in USD from the token counts: an org's own price override first, then the genai-prices table
(bundled with the package; never fetched at run time). A model nobody prices gets no cost, never $0."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import genai_prices
from genai_prices import data_snapshot

from proxy.formats import Tokens

PRICE_TABLE = f"genai-prices@{genai_prices.__version__}"
_MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)

# Ingate provider names -> genai-prices provider ids, where they differ.
_PROVIDER_IDS = {"gemini": "google", "xai": "x-ai"}
# Self-hosted models cost nothing per token unless an org says otherwise.
_FREE_PROVIDERS = {"ollama"}


@dataclass(frozen=True, slots=True)
class Cost:
    input: Decimal
    output: Decimal
    cache: Decimal
    source: str
    tools: Decimal = _ZERO  # server-side tool fees (per web search, file search, code execution)

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.cache + self.tools


class UnpricedUsage(ValueError):
    """Usage that cannot be priced honestly (more cached than prompt tokens, a price-table failure, a negative
    result): the record stays unpriced with this message as the reason, rather than priced wrong."""


@dataclass(frozen=True, slots=True)
class Override:
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    cache_write_1h_per_mtok: Decimal | None = None


# Tool kinds billed per call -> the price table's usage key for them. Kinds not here (Anthropic's web fetch)
# are recorded but cost nothing beyond their tokens.
TOOL_PRICE_KEYS = {"web_search": "web_searches", "file_search": "storage_searches", "code_execution": "code_executions"}


def _from_override(tokens: Tokens, price: Override) -> Cost:
    read_price = price.cache_read_per_mtok if price.cache_read_per_mtok is not None else price.input_per_mtok
    write_price = price.cache_write_per_mtok if price.cache_write_per_mtok is not None else price.input_per_mtok
    write_1h_price = price.cache_write_1h_per_mtok if price.cache_write_1h_per_mtok is not None else write_price
    uncached = tokens.input - tokens.cache_read - tokens.cache_write
    write_5m = tokens.cache_write - tokens.cache_write_1h
    return Cost(
        input=uncached * price.input_per_mtok / _MILLION,
        output=tokens.output * price.output_per_mtok / _MILLION,
        cache=(tokens.cache_read * read_price + write_5m * write_price + tokens.cache_write_1h * write_1h_price)
        / _MILLION,
        source="override",
    )


@functools.lru_cache(maxsize=4096)
def _find(model: str, provider: str):
    """The table's (provider, model) entry for a name: the matching is most of a price's cost, so remember it."""
    try:
        return data_snapshot.get_snapshot().find_provider_model(
            model, None, _PROVIDER_IDS.get(provider, provider), None
        )
    except LookupError:
        return None


def _context(tier: str) -> dict[str, str] | None:
    """The price table's context for a reported tier: its variants are keyed by service_tier (OpenAI's flex,
    priority) and by processing (batch). A tier the table does not know prices at the standard rate."""
    if not tier:
        return None
    return {"processing": "batch"} if tier == "batch" else {"service_tier": tier}


def _calc(found, usage, tier: str = "") -> Any:
    provider, model = found
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the table's own deprecation notices are not the user's problem
        return model.calc_price(
            usage, provider, genai_request_timestamp=datetime.datetime.now(datetime.UTC), price_context=_context(tier)
        )


# The price of one token of each kind: plain input, output, cache read, 5-minute and one-hour cache write.
_Unit = tuple[Decimal, Decimal, Decimal, Decimal, Decimal]


def _per_token(found, count: int, tier: str) -> _Unit:
    """Each kind's price of one token, measured on `count` tokens of that kind (the table decides how a kind it
    has no own price for is charged: a one-hour write at the write rate, say)."""

    def calc(**fields):
        return _calc(found, genai_prices.Usage(**fields), tier)

    plain = calc(input_tokens=count).input_price
    output = calc(output_tokens=count).output_price
    read = calc(input_tokens=count, cache_read_tokens=count).input_price
    write = calc(input_tokens=count, cache_write_tokens=count).input_price
    write_1h = calc(input_tokens=count, cache_write_tokens=count, cache_write_1h_tokens=count).input_price
    return tuple(Decimal(p) / count for p in (plain, output, read, write, write_1h))


@functools.lru_cache(maxsize=4096)
def _linear(model: str, provider: str, tier: str) -> _Unit | None:
    """A model's per-token prices when they do not depend on volume (most models), else None.

    genai-prices takes ~100 µs per calculation; the writer prices every request, so flat-priced models are
    priced from these cached unit prices and only tiered ones (long-context surcharges) go through it each time."""
    found = _find(model, provider)
    if found is None:
        return None
    small, large = _per_token(found, 1000, tier), _per_token(found, 1_000_000, tier)
    return small if small == large else None


@functools.lru_cache(maxsize=4096)
def _tool_fee(model: str, provider: str, tier: str, kind: str) -> Decimal:
    """What one server-side tool call of `kind` costs with this model (0 when the table has no fee for it)."""
    key = TOOL_PRICE_KEYS.get(kind)
    found = _find(model, provider)
    if key is None or found is None:
        return _ZERO
    return Decimal(_calc(found, genai_prices.Usage(**{key: 1000}), tier).total_price) / 1000


def _tools_cost(tokens: Tokens, model: str, provider: str) -> Decimal:
    if not tokens.tools:
        return _ZERO  # most requests: no server-side tool calls
    return sum((count * _tool_fee(model, provider, tokens.tier, kind) for kind, count in tokens.tools), _ZERO)


def _from_table(tokens: Tokens, model: str, provider: str) -> Cost | None:
    unit = _linear(model, provider, tokens.tier)
    if unit is not None:
        p_in, p_out, p_read, p_write, p_write_1h = unit
        uncached = tokens.input - tokens.cache_read - tokens.cache_write
        write_5m = tokens.cache_write - tokens.cache_write_1h
        return Cost(
            input=uncached * p_in,
            output=tokens.output * p_out,
            cache=tokens.cache_read * p_read + write_5m * p_write + tokens.cache_write_1h * p_write_1h,
            source=PRICE_TABLE,
            tools=_tools_cost(tokens, model, provider),
        )
    found = _find(model, provider)
    if found is None:
        return None
    usage_fields = {"input_tokens": tokens.input, "output_tokens": tokens.output}
    if tokens.cache_read:
        usage_fields["cache_read_tokens"] = tokens.cache_read
    if tokens.cache_write:
        usage_fields["cache_write_tokens"] = tokens.cache_write
    if tokens.cache_write_1h:
        usage_fields["cache_write_1h_tokens"] = tokens.cache_write_1h
    price = _calc(found, genai_prices.Usage(**usage_fields), tokens.tier)
    # genai-prices folds cache reads and writes into the input price; split them out for the record. The plain
    # part is priced at the tier the whole prompt reached (a long-context surcharge applies to all of it).
    cache = _ZERO
    if tokens.cache_read or tokens.cache_write:
        uncached = tokens.input - tokens.cache_read - tokens.cache_write
        plain = _calc(found, genai_prices.Usage(input_tokens=tokens.input), tokens.tier)
        cache = price.input_price - plain.input_price * uncached / tokens.input
    return Cost(
        input=price.input_price - cache,
        output=price.output_price,
        cache=cache,
        source=PRICE_TABLE,
        tools=_tools_cost(tokens, model, provider),
    )


def _inconsistent(tokens: Tokens) -> str:
    """Why a provider's numbers contradict each other ("" when they do not): pricing them would give a negative
    part (or make genai-prices raise)."""
    if tokens.cache_read + tokens.cache_write > tokens.input:
        return (
            f"the provider reported more cached tokens ({tokens.cache_read + tokens.cache_write}) than input "
            f"tokens ({tokens.input})"
        )
    if tokens.cache_write_1h > tokens.cache_write:
        return (
            f"the provider reported more one-hour cache writes ({tokens.cache_write_1h}) than cache writes "
            f"({tokens.cache_write})"
        )
    if tokens.reasoning > tokens.output:
        return f"the provider reported more reasoning tokens ({tokens.reasoning}) than output tokens ({tokens.output})"
    return ""


def cost_of(tokens: Tokens, *, provider: str, models: list[str], overrides: dict[str, Override]) -> Cost | None:
    """Price `tokens` for the first of `models` (answered, then requested) that has a price; None when none has.
    Raises UnpricedUsage when the usage itself cannot be priced."""
    problem = _inconsistent(tokens)
    if problem:
        raise UnpricedUsage(problem)
    try:
        cost = _cost_of(tokens, provider, models, overrides)
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise UnpricedUsage(f"the price table could not price this usage: {exc}") from exc
    if cost is not None and min(cost.input, cost.output, cost.cache, cost.tools) < 0:
        raise UnpricedUsage(f"the price came out negative ({cost.total})")
    return cost


def _cost_of(tokens: Tokens, provider: str, models: list[str], overrides: dict[str, Override]) -> Cost | None:
    names = [m for m in models if m]
    for name in names:
        if name in overrides:
            cost = _from_override(tokens, overrides[name])
            # An override prices tokens; tool calls still cost what the table says for that name, if it knows it.
            return dataclasses.replace(cost, tools=_tools_cost(tokens, name, provider))
    if provider in _FREE_PROVIDERS:
        return Cost(_ZERO, _ZERO, _ZERO, "free")
    for name in names:
        found = _from_table(tokens, name, provider)
        if found is not None:
            return found
    return None


# A (provider, models, tier) whose cost goes through cost_of each time: an org's override, a tiered model.
_EACH_TIME = object()
_UNKNOWN = object()


def _plan(provider: str, models: list[str], tier: str, overrides: dict[str, Override]):
    """How cost_of would price tokens of this provider, models and tier, when that does not depend on the
    counts: (the five unit prices, source, model for tool fees), None (no price), or _EACH_TIME."""
    names = [m for m in models if m]
    if any(name in overrides for name in names):
        return _EACH_TIME
    if provider in _FREE_PROVIDERS:
        return (_ZERO, _ZERO, _ZERO, _ZERO, _ZERO, "free", "")
    for name in names:
        unit = _linear(name, provider, tier)
        if unit is not None:
            return (*unit, PRICE_TABLE, name)
        if _find(name, provider) is not None:
            return _EACH_TIME
    return None


class PriceBook:
    """cost_of for a batch of records: which price applies to a (org, provider, models, tier) is worked out
    once per batch, then each record's tokens are multiplied by it (a batch mostly repeats a few models)."""

    def __init__(self):
        self._plans: dict[tuple, Any] = {}

    def cost(self, tokens: Tokens, *, org_id: int, provider: str, models: list[str], overrides) -> Cost | None:
        """What cost_of(tokens, provider=, models=, overrides=) returns, or raises, for the org's overrides."""
        key = (org_id, provider, tokens.tier, *models)
        plan = self._plans.get(key, _UNKNOWN)
        if plan is _UNKNOWN:
            try:
                plan = _plan(provider, models, tokens.tier, overrides)
            except (ArithmeticError, LookupError, TypeError, ValueError):
                plan = _EACH_TIME  # cost_of says why, as UnpricedUsage
            self._plans[key] = plan
        if plan is _EACH_TIME:
            return cost_of(tokens, provider=provider, models=models, overrides=overrides)
        problem = _inconsistent(tokens)
        if problem:
            raise UnpricedUsage(problem)
        if plan is None:
            return None
        p_in, p_out, p_read, p_write, p_write_1h, source, tool_model = plan
        try:
            cost = Cost(
                input=(tokens.input - tokens.cache_read - tokens.cache_write) * p_in,
                output=tokens.output * p_out,
                cache=tokens.cache_read * p_read
                + (tokens.cache_write - tokens.cache_write_1h) * p_write
                + tokens.cache_write_1h * p_write_1h,
                source=source,
                tools=_tools_cost(tokens, tool_model, provider) if tool_model else _ZERO,
            )
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
            raise UnpricedUsage(f"the price table could not price this usage: {exc}") from exc
        if min(cost.input, cost.output, cost.cache, cost.tools) < 0:
            raise UnpricedUsage(f"the price came out negative ({cost.total})")
        return cost
