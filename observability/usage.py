"""Raw usage fields, as each provider reports them, turned into one set of token counts (and what else the
provider bills by: the service tier it ran the request on, server-side tool calls).

Conventions differ: OpenAI's prompt_tokens already include cached tokens, Anthropic's input_tokens exclude
cache reads and writes, Gemini counts thoughts and tool-use prompts apart from candidates and prompt. Here
`input` is every billed prompt token (cached ones included), `output` every generated token (reasoning
included), and the cache and reasoning counts say how many of those were which. The README's "Usage fields"
table lists which provider field lands where; keep the two in step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.usage import TIER_FIELD, TOOL_CALLS_FIELD

# Anthropic's usage.server_tool_use counters, by the tool kind Ingate records them as.
_ANTHROPIC_TOOLS = {
    "web_search_requests": "web_search",
    "web_fetch_requests": "web_fetch",
    "code_execution_requests": "code_execution",
}


@dataclass(frozen=True, slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0  # every cache write; `cache_write_1h` says how many of them were one-hour writes
    reasoning: int = 0
    cache_write_1h: int = 0
    tier: str = ""  # the service tier the provider reports it billed ("" when it does not say)
    tools: tuple[tuple[str, int], ...] = ()  # server-side tool calls billed per call: (kind, count), sorted

    @property
    def total(self) -> int:
        return self.input + self.output

    @property
    def tool_calls(self) -> dict[str, int]:
        return dict(self.tools)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _detail(raw: dict, group: str, name: str) -> int:
    details = raw.get(group)
    return _int(details.get(name)) if isinstance(details, dict) else 0


def _tier(raw: dict, *names: str) -> str:
    for name in names:
        value = raw.get(name)
        if isinstance(value, str) and value:
            return value.strip().lower()[:32]
    return ""


def _tools(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((kind, count) for kind, count in counts.items() if count > 0))


def _counted_tools(raw: dict) -> dict[str, int]:
    counted = raw.get(TOOL_CALLS_FIELD)
    if not isinstance(counted, dict):
        return {}
    return {str(kind): _int(count) for kind, count in counted.items()}


def _anthropic(raw: dict) -> Tokens:
    read = _int(raw.get("cache_read_input_tokens"))
    write = _int(raw.get("cache_creation_input_tokens"))
    # cache_creation splits the writes by lifetime; its parts add up to cache_creation_input_tokens.
    write_5m = _detail(raw, "cache_creation", "ephemeral_5m_input_tokens")
    write_1h = _detail(raw, "cache_creation", "ephemeral_1h_input_tokens")
    write = max(write, write_5m + write_1h)
    server = raw.get("server_tool_use")
    tools = {}
    if isinstance(server, dict):
        tools = {kind: _int(server.get(field)) for field, kind in _ANTHROPIC_TOOLS.items()}
    return Tokens(
        _int(raw.get("input_tokens")) + read + write, _int(raw.get("output_tokens")), read, write, 0,
        write_1h, _tier(raw, "service_tier"), _tools(tools),
    )


def _openai_chat(raw: dict) -> Tokens:
    return Tokens(
        _int(raw.get("prompt_tokens")),
        _int(raw.get("completion_tokens")),
        _detail(raw, "prompt_tokens_details", "cached_tokens"),
        0,
        _detail(raw, "completion_tokens_details", "reasoning_tokens"),
        tier=_tier(raw, TIER_FIELD),
        tools=_tools(_counted_tools(raw)),
    )


def _openai_responses(raw: dict) -> Tokens:
    return Tokens(
        _int(raw.get("input_tokens")),
        _int(raw.get("output_tokens")),
        _detail(raw, "input_tokens_details", "cached_tokens"),
        0,
        _detail(raw, "output_tokens_details", "reasoning_tokens"),
        tier=_tier(raw, TIER_FIELD),
        tools=_tools(_counted_tools(raw)),
    )


def _gemini(raw: dict) -> Tokens:
    thoughts = _int(raw.get("thoughtsTokenCount"))
    # Tokens the model read back from its tools (search results, code output) are billed as input.
    tool_prompt = _int(raw.get("toolUsePromptTokenCount"))
    return Tokens(
        _int(raw.get("promptTokenCount")) + tool_prompt,
        _int(raw.get("candidatesTokenCount")) + thoughts,
        _int(raw.get("cachedContentTokenCount")),
        0,
        thoughts,
        tier=_tier(raw, "serviceTier", TIER_FIELD),
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
