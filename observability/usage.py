"""Raw usage fields, as each provider reports them, turned into one set of token counts.

Conventions differ: OpenAI's prompt_tokens already include cached tokens, Anthropic's input_tokens exclude
cache reads and writes, Gemini counts thoughts apart from candidates. Here `input` is every prompt token
(cached ones included), `output` every generated token (reasoning included), and the cache and reasoning
counts say how many of those were which."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _detail(raw: dict, group: str, name: str) -> int:
    details = raw.get(group)
    return _int(details.get(name)) if isinstance(details, dict) else 0


def _anthropic(raw: dict) -> Tokens:
    read, write = _int(raw.get("cache_read_input_tokens")), _int(raw.get("cache_creation_input_tokens"))
    return Tokens(_int(raw.get("input_tokens")) + read + write, _int(raw.get("output_tokens")), read, write)


def _openai_chat(raw: dict) -> Tokens:
    return Tokens(
        _int(raw.get("prompt_tokens")),
        _int(raw.get("completion_tokens")),
        _detail(raw, "prompt_tokens_details", "cached_tokens"),
        0,
        _detail(raw, "completion_tokens_details", "reasoning_tokens"),
    )


def _openai_responses(raw: dict) -> Tokens:
    return Tokens(
        _int(raw.get("input_tokens")),
        _int(raw.get("output_tokens")),
        _detail(raw, "input_tokens_details", "cached_tokens"),
        0,
        _detail(raw, "output_tokens_details", "reasoning_tokens"),
    )


def _gemini(raw: dict) -> Tokens:
    thoughts = _int(raw.get("thoughtsTokenCount"))
    return Tokens(
        _int(raw.get("promptTokenCount")),
        _int(raw.get("candidatesTokenCount")) + thoughts,
        _int(raw.get("cachedContentTokenCount")),
        0,
        thoughts,
    )


def _ollama(raw: dict) -> Tokens:
    return Tokens(_int(raw.get("prompt_eval_count")), _int(raw.get("eval_count")))


def normalize(provider: str, raw: dict[str, Any]) -> Tokens | None:
    """Tokens from a provider's raw usage fields, or None when the response carried no usage."""
    if not raw:
        return None
    if "promptTokenCount" in raw or "candidatesTokenCount" in raw:
        return _gemini(raw)
    if "prompt_eval_count" in raw or "eval_count" in raw:
        return _ollama(raw)
    if "prompt_tokens" in raw or "completion_tokens" in raw:
        return _openai_chat(raw)  # also embeddings, Azure and OpenAI-compatible providers
    if "input_tokens" in raw or "output_tokens" in raw:
        if provider == "anthropic" or "cache_read_input_tokens" in raw or "cache_creation_input_tokens" in raw:
            return _anthropic(raw)
        return _openai_responses(raw)
    return None
