"""The per-request switches (x-fake-* headers and FakeProvider.defaults) and the token rule the fake
provider counts by, which tests use to predict the usage it reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

DEFAULT_TEXT = "Hello from the fake provider!"
DEFAULT_CHUNKS = 4
DEFAULT_MODEL = "gpt-4o-mini"
EMBEDDING_DIMS = 16  # small on purpose: the benchmark should measure the gateway, not JSON of 1536 floats

TOKEN_RULE = """\
prompt tokens     = number of whitespace-separated words in every string reached from the JSON request
                    body through the keys messages, content, text, parts, prompt, input, contents, system,
                    instructions, systemInstruction/system_instruction, requests, params,
                    generateContentRequest (so roles, model names and settings are not counted); minimum 1.
completion tokens = number of whitespace-separated words in the answer text (x-fake-text, default
                    DEFAULT_TEXT = 5 words), plus x-fake-reasoning-tokens where the provider counts
                    reasoning inside output (OpenAI completion_tokens, Anthropic output_tokens).
x-fake-cached-tokens C: OpenAI cached_tokens / Gemini cachedContentTokenCount = min(C, prompt) (a subset of
                    the prompt, as those providers report it); Anthropic cache_read_input_tokens = C and
                    x-fake-cache-write-tokens W: cache_creation_input_tokens = W, both on top of input_tokens
                    (Anthropic reports them separately).
x-fake-reasoning-tokens R: OpenAI reasoning_tokens = R, Gemini thoughtsTokenCount = R (omitted when 0, as
                    Google omits zero fields), total counts include R."""


# ---------------------------------------------------------------------------------------------
# Per-request switches
# ---------------------------------------------------------------------------------------------

# Request header `x-fake-NAME: value`, or FakeProvider.defaults["NAME"] (headers win).
#   status N             answer N with the provider's own error JSON (x-fake-retry-after adds retry-after)
#   delay-ms N           wait before the response headers
#   chunk-delay-ms N     wait between a stream's content chunks (and before its closing events)
#   first-chunk-delay-ms N  send a stream's head at once, then wait before its first event
#   chunks N             content chunks in a stream (default DEFAULT_CHUNKS)
#   hang 1               accept and never answer; only the client going away ends it
#   gzip 1               Content-Encoding: gzip, flushed per chunk so streams stay incremental
#   cut-after N          close a stream abruptly after N content chunks
#   clean-cut 1          with cut-after: end the body cleanly there instead (no closing events, no error)
#   text S               the answer (default DEFAULT_TEXT); UTF-8 header bytes are honoured
#   cached-tokens N, cache-write-tokens N, reasoning-tokens N: see TOKEN_RULE


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _header_text(value: str) -> str:
    # Header values are decoded as latin-1; clients that send UTF-8 text expect it back as UTF-8.
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return value


_SWITCHES: dict[str, Callable[[Any], Any]] = {
    "status": int,
    "delay_ms": float,
    "chunk_delay_ms": float,
    "first_chunk_delay_ms": float,
    "chunks": int,
    "hang": _flag,
    "gzip": _flag,
    "cut_after": int,
    "clean_cut": _flag,
    "text": str,
    "cached_tokens": int,
    "cache_write_tokens": int,
    "reasoning_tokens": int,
    "retry_after": str,
}


class Options:
    __slots__ = tuple(_SWITCHES)

    def __init__(self, raw: dict[str, Any] | None = None):
        self.status = 0
        self.delay_ms = 0.0
        self.chunk_delay_ms = 0.0
        self.first_chunk_delay_ms = 0.0
        self.chunks = DEFAULT_CHUNKS
        self.hang = False
        self.gzip = False
        self.cut_after: int | None = None
        self.clean_cut = False
        self.text = DEFAULT_TEXT
        self.cached_tokens = 0
        self.cache_write_tokens = 0
        self.reasoning_tokens = 0
        self.retry_after: str | None = None
        for key, value in (raw or {}).items():
            name = _switch_name(key)
            if name not in _SWITCHES:
                raise ValueError(f"unknown fake switch {key!r}")
            setattr(self, name, _SWITCHES[name](value))
        self.chunks = max(1, self.chunks)


def _switch_name(key: str) -> str:
    return key.lower().removeprefix("x-fake-").replace("-", "_")


_DEFAULT_OPTIONS = Options()


# ---------------------------------------------------------------------------------------------
# Token counting
# ---------------------------------------------------------------------------------------------

_TEXT_KEYS = frozenset(
    {
        "messages", "content", "text", "parts", "prompt", "input", "contents", "system",
        "instructions", "systemInstruction", "system_instruction", "requests", "params",
        "generateContentRequest",
    }
)  # fmt: skip


def _words(value: Any) -> int:
    # Plain loops rather than sum(generator): this runs on every request of the benchmark.
    kind = type(value)
    if kind is str:
        return len(value.split())
    count = 0
    if kind is list:
        for item in value:
            count += _words(item)
    elif kind is dict:
        for key, item in value.items():
            if key in _TEXT_KEYS:
                count += _words(item)
    return count


def prompt_tokens(body: Any) -> int:
    """Prompt token count for a parsed JSON request body (see TOKEN_RULE)."""
    return max(1, _words(body))


_parsed: dict[bytes, tuple[Any, int]] = {}


def _parse(body: bytes) -> tuple[Any, int]:
    """A JSON body and its prompt tokens, memoised because a benchmark sends a few bodies thousands of
    times. Handlers must therefore treat the parsed body as read-only."""
    hit = _parsed.get(body)
    if hit is None:
        data = json.loads(body)
        hit = (data, prompt_tokens(data))
        if len(body) <= 65536:
            if len(_parsed) >= 256:
                _parsed.clear()
            _parsed[body] = hit
    return hit


def last_user_text(body: dict) -> str:
    """The text of the last user turn in an OpenAI, Anthropic, Gemini or Ollama chat body."""
    for message in reversed(body.get("messages") or body.get("contents") or []):
        if not isinstance(message, dict) or message.get("role") not in ("user", None):
            continue
        content = message.get("content", message.get("parts"))
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return body.get("prompt") or ""


def completion_tokens(text: str = DEFAULT_TEXT) -> int:
    """Completion token count for an answer text, before reasoning tokens (see TOKEN_RULE)."""
    return len(text.split())
