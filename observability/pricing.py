"""Cost in USD from the token counts: an org's own price override first, then the genai-prices table
(bundled with the package; never fetched at run time). A model nobody prices gets no cost, never $0."""

from __future__ import annotations

import datetime
import functools
import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import genai_prices
from genai_prices import data_snapshot

from .usage import Tokens

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

    @property
    def total(self) -> Decimal:
        return self.input + self.output + self.cache


class UnpricedUsage(ValueError):
    """Usage that cannot be priced honestly (more cached than prompt tokens, a price-table failure, a negative
    result): the record stays unpriced with this message as the reason, rather than priced wrong."""


@dataclass(frozen=True, slots=True)
class Override:
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None


def _from_override(tokens: Tokens, price: Override) -> Cost:
    read_price = price.cache_read_per_mtok if price.cache_read_per_mtok is not None else price.input_per_mtok
    write_price = price.cache_write_per_mtok if price.cache_write_per_mtok is not None else price.input_per_mtok
    uncached = tokens.input - tokens.cache_read - tokens.cache_write
    return Cost(
        input=uncached * price.input_per_mtok / _MILLION,
        output=tokens.output * price.output_per_mtok / _MILLION,
        cache=(tokens.cache_read * read_price + tokens.cache_write * write_price) / _MILLION,
        source="override",
    )


@functools.lru_cache(maxsize=4096)
def _find(model: str, provider: str):
    """The table's (provider, model) entry for a name: the matching is most of a price's cost, so remember it."""
    try:
        return data_snapshot.get_snapshot().find_provider_model(model, None, _PROVIDER_IDS.get(provider, provider), None)
    except LookupError:
        return None


def _calc(found, usage) -> Any:
    provider, model = found
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the table's own deprecation notices are not the user's problem
        return model.calc_price(usage, provider, genai_request_timestamp=datetime.datetime.now(datetime.timezone.utc))


def _per_token(found, count: int) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """Input, output, cache-read and cache-write price of one token, measured on `count` tokens of each."""
    plain = _calc(found, genai_prices.Usage(input_tokens=count))
    output = _calc(found, genai_prices.Usage(output_tokens=count))
    read = _calc(found, genai_prices.Usage(input_tokens=count, cache_read_tokens=count))
    write = _calc(found, genai_prices.Usage(input_tokens=count, cache_write_tokens=count))
    return tuple(Decimal(p) / count for p in (plain.input_price, output.output_price, read.input_price, write.input_price))


@functools.lru_cache(maxsize=4096)
def _linear(model: str, provider: str) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
    """A model's per-token prices when they do not depend on volume (most models), else None.

    genai-prices takes ~100 µs per calculation; the writer prices every request, so flat-priced models are
    priced from these cached unit prices and only tiered ones (long-context surcharges) go through it each time."""
    found = _find(model, provider)
    if found is None:
        return None
    small, large = _per_token(found, 1000), _per_token(found, 1_000_000)
    return small if small == large else None


def _from_table(tokens: Tokens, model: str, provider: str) -> Cost | None:
    unit = _linear(model, provider)
    if unit is not None:
        p_in, p_out, p_read, p_write = unit
        uncached = tokens.input - tokens.cache_read - tokens.cache_write
        return Cost(
            input=uncached * p_in, output=tokens.output * p_out,
            cache=tokens.cache_read * p_read + tokens.cache_write * p_write, source=PRICE_TABLE,
        )
    found = _find(model, provider)
    if found is None:
        return None
    usage_fields = {"input_tokens": tokens.input, "output_tokens": tokens.output}
    if tokens.cache_read:
        usage_fields["cache_read_tokens"] = tokens.cache_read
    if tokens.cache_write:
        usage_fields["cache_write_tokens"] = tokens.cache_write
    price = _calc(found, genai_prices.Usage(**usage_fields))
    # genai-prices folds cache reads and writes into the input price; split them out for the record.
    cache = _ZERO
    if tokens.cache_read or tokens.cache_write:
        plain = _calc(found, genai_prices.Usage(input_tokens=tokens.input - tokens.cache_read - tokens.cache_write))
        cache = price.input_price - plain.input_price
    return Cost(input=price.input_price - cache, output=price.output_price, cache=cache, source=PRICE_TABLE)


def cost_of(tokens: Tokens, *, provider: str, models: list[str], overrides: dict[str, Override]) -> Cost | None:
    """Price `tokens` for the first of `models` (answered, then requested) that has a price; None when none has.
    Raises UnpricedUsage when the usage itself cannot be priced."""
    if tokens.cache_read + tokens.cache_write > tokens.input:
        # Seen from Gemini: pricing the difference would give a negative input cost (or make genai-prices raise).
        raise UnpricedUsage(
            f"the provider reported more cached tokens ({tokens.cache_read + tokens.cache_write}) than input "
            f"tokens ({tokens.input})"
        )
    try:
        cost = _cost_of(tokens, provider, models, overrides)
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise UnpricedUsage(f"the price table could not price this usage: {exc}") from exc
    if cost is not None and min(cost.input, cost.output, cost.cache) < 0:
        raise UnpricedUsage(f"the price came out negative ({cost.total})")
    return cost


def _cost_of(tokens: Tokens, provider: str, models: list[str], overrides: dict[str, Override]) -> Cost | None:
    names = [m for m in models if m]
    for name in names:
        if name in overrides:
            return _from_override(tokens, overrides[name])
    if provider in _FREE_PROVIDERS:
        return Cost(_ZERO, _ZERO, _ZERO, "free")
    for name in names:
        found = _from_table(tokens, name, provider)
        if found is not None:
            return found
    return None
