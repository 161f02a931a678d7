"""Cost in USD from the token counts: an org's own price override first, then the genai-prices table
(bundled with the package; never fetched at run time). A model nobody prices gets no cost, never $0."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from decimal import Decimal

import genai_prices

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


def _from_table(tokens: Tokens, model: str, provider: str) -> Cost | None:
    usage_fields = {"input_tokens": tokens.input, "output_tokens": tokens.output}
    if tokens.cache_read:
        usage_fields["cache_read_tokens"] = tokens.cache_read
    if tokens.cache_write:
        usage_fields["cache_write_tokens"] = tokens.cache_write
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the table's own deprecation notices are not the user's problem
        usage = genai_prices.Usage(**usage_fields)
        try:
            price = genai_prices.calc_price(usage, model, provider_id=_PROVIDER_IDS.get(provider, provider))
        except LookupError:
            return None
    # genai-prices folds cache reads and writes into the input price; split them out for the record.
    cache = _ZERO
    if tokens.cache_read or tokens.cache_write:
        plain = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=tokens.input - tokens.cache_read - tokens.cache_write),
            model,
            provider_id=_PROVIDER_IDS.get(provider, provider),
        )
        cache = price.input_price - plain.input_price
    return Cost(input=price.input_price - cache, output=price.output_price, cache=cache, source=PRICE_TABLE)


def cost_of(tokens: Tokens, *, provider: str, models: list[str], overrides: dict[str, Override]) -> Cost | None:
    """Price `tokens` for the first of `models` (answered, then requested) that has a price."""
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
