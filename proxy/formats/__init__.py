"""One home per wire format: a `WireFormat` subclass per provider API, which knows everything about it (a
request's model, stream flag, turns, system prompt and tools, read and rewritten; the error body and reading
one; stream framing; usage from a response or incrementally from a stream; the answer text; requests for
Ingate's own calls). The registry's `ProviderSpec.format` names a family; `of()` picks the format a route
speaks (OpenAI's Responses API is its own format within the OpenAI family).

Adding a provider that speaks an existing format is one registry entry; a new format is one module here."""

from __future__ import annotations

from typing import Any

from ..providers import OPENAI_FORMAT_ENDPOINTS, REGISTRY
from .anthropic import AnthropicMessages
from .base import (
    TIER_FIELD,
    TOOL_CALLS_FIELD,
    Events,
    Tokens,
    UnfinishedStream,
    WireFormat,
    event_payload,
    ndjson_line,
    sse_event,
)
from .gemini import Gemini
from .ollama import Ollama
from .openai_chat import HiddenUsage, OpenAIChat, ask_for_usage
from .openai_responses import OpenAIResponses
from .translate import Translator, translator

OPENAI = OpenAIChat()
RESPONSES = OpenAIResponses()
ANTHROPIC = AnthropicMessages()
GEMINI = Gemini()
OLLAMA = Ollama()

# The format families a ProviderSpec names (Azure and the OpenAI-compatible providers speak OpenAI's).
FAMILIES: dict[str, WireFormat] = {f.name: f for f in (OPENAI, ANTHROPIC, GEMINI, OLLAMA)}

__all__ = [
    "ANTHROPIC",
    "FAMILIES",
    "GEMINI",
    "OLLAMA",
    "OPENAI",
    "RESPONSES",
    "TIER_FIELD",
    "TOOL_CALLS_FIELD",
    "Events",
    "HiddenUsage",
    "Tokens",
    "Translator",
    "UnfinishedStream",
    "WireFormat",
    "ask_for_usage",
    "event_payload",
    "ndjson_line",
    "of",
    "of_provider",
    "sse_event",
    "tokens",
    "translator",
]


def of(family: str, endpoint: str = "") -> WireFormat:
    """The format of a request to `endpoint` of a provider whose spec names `family`: OpenAI's own endpoints
    (chat.completions, responses, …) speak OpenAI's formats whoever serves them (Gemini's and Ollama's
    OpenAI-compatible APIs)."""
    if endpoint in OPENAI_FORMAT_ENDPOINTS:
        return RESPONSES if endpoint == "responses" else OPENAI
    return FAMILIES.get(family, OPENAI)


def of_provider(provider: str, endpoint: str = "") -> WireFormat:
    """The format of a request to `endpoint` of a provider known by name only (a record's); an org's custom
    provider speaks OpenAI's."""
    spec = REGISTRY.get(provider)
    return of(spec.format if spec is not None else "openai", endpoint)


def tokens(provider: str, raw: dict[str, Any]) -> Tokens | None:
    """Token counts from raw usage fields as a record keeps them, or None when the response carried no usage.
    Told apart by their fields (a record keeps the provider, not the format it spoke)."""
    if not raw:
        return None
    if "promptTokenCount" in raw or "candidatesTokenCount" in raw:
        return GEMINI.tokens(raw)
    if "prompt_eval_count" in raw or "eval_count" in raw:
        return OLLAMA.tokens(raw)
    if "prompt_tokens" in raw or "completion_tokens" in raw:
        return OPENAI.tokens(raw)  # also embeddings, Azure and OpenAI-compatible providers
    if "input_tokens" in raw or "output_tokens" in raw:
        if provider == "anthropic" or "cache_read_input_tokens" in raw or "cache_creation_input_tokens" in raw:
            return ANTHROPIC.tokens(raw)
        return RESPONSES.tokens(raw)
    return None
