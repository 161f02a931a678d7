"""Translation between wire formats, for routes whose target speaks another format than the client: OpenAI chat
completions <-> Anthropic Messages. A `Translator` (one per request, from `translator()`) turns the request into
the target's, and the answer back into the client's: a whole body at once, a stream event by event as it arrives.
What one side cannot say is refused with a 400 naming it, or dropped (and listed) when the route allows."""

from __future__ import annotations

from ..base import WireFormat
from ..openai_chat import OpenAIChat
from .base import DEFAULT_MAX_TOKENS, StreamTranslator, Translator, WholeBody
from .to_anthropic import OpenAIToAnthropic
from .to_openai import AnthropicToOpenAI

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicToOpenAI",
    "OpenAIToAnthropic",
    "StreamTranslator",
    "Translator",
    "WholeBody",
    "translator",
]


def translator(
    client_fmt: WireFormat,
    target_fmt: WireFormat,
    *,
    drop_unsupported: bool = False,
    target_provider: str = "",
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Translator | None:
    """A fresh translator for one request from a client speaking `client_fmt` to a target speaking `target_fmt`,
    or None when no translation is needed (same family) or none exists. `drop_unsupported`: drop what cannot be
    translated instead of refusing the request. `target_provider` (a registry name, or a custom provider's) picks
    the OpenAI-family details that differ between providers."""
    pair = (client_fmt.name, target_fmt.name)
    if pair == ("openai", "anthropic") and isinstance(client_fmt, OpenAIChat):
        return OpenAIToAnthropic(drop_unsupported=drop_unsupported, default_max_tokens=default_max_tokens)
    if pair == ("anthropic", "openai") and isinstance(target_fmt, OpenAIChat):
        return AnthropicToOpenAI(drop_unsupported=drop_unsupported, target_provider=target_provider)
    return None
