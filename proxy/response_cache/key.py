"""What the response cache may keep, and the key it keeps it under.

The key is the hex SHA-256 of one canonical JSON document (orjson, keys sorted at every depth) holding:
- a version of these rules (changing them starts a fresh cache rather than misreading old entries);
- the org id, always: no setting shares entries between orgs;
- the namespace ("" for none): per app, or the request's X-Ingate-Cache-Namespace;
- the provider and the endpoint, `streamGenerateContent` counted as `generateContent`;
- the model;
- the request body as parsed JSON, less the top-level fields that do not change the answer (each format's
  `cache_neutral_fields`):
  OpenAI chat/completions/responses/embeddings: user, metadata, store, service_tier (price and speed, not the
  answer), prompt_cache_key, prompt_cache_retention, safety_identifier, stream, stream_options;
  Anthropic Messages: metadata, service_tier, stream; Gemini: none (the verb says whether it streams);
  Ollama: stream, keep_alive.
Leaving `stream` out lets a streamed request be answered from a non-streamed entry and the reverse. What is left
is compared as JSON values: key order and whitespace do not matter; 1 and 1.0, or a field set to its default
and left out, are different requests (a miss, never a wrong answer).
"""

from __future__ import annotations

import enum
import hashlib
import json
from typing import Any

import orjson

from ..formats import ANTHROPIC, GEMINI, OLLAMA, OPENAI, RESPONSES, WireFormat

KEY_VERSION = 1

# The endpoints whose successful answers may be cached, and the format each speaks. OpenAI-format endpoints
# speak OpenAI's whoever serves them (Azure, Gemini's and Ollama's OpenAI-compatible APIs, named providers).
CACHEABLE_ENDPOINTS: dict[str, WireFormat] = {
    "chat.completions": OPENAI,
    "completions": OPENAI,
    "embeddings": OPENAI,
    "responses": RESPONSES,
    "messages": ANTHROPIC,
    "generateContent": GEMINI,
    "streamGenerateContent": GEMINI,
    "chat": OLLAMA,
    "generate": OLLAMA,
    "embed": OLLAMA,
}
# Endpoints that embed: deterministic, no temperature.
_EMBEDDINGS = frozenset({"embeddings", "embed"})


class Refusal(enum.StrEnum):
    """Why a request's answer is not cached (recorded as is)."""

    ENDPOINT = "endpoint"  # not an endpoint the cache keeps answers of
    BODY = "body"  # the body is not a JSON object
    FILES = "files"  # carries files (documents, uploads), unless the org allows them
    AUDIO = "audio"  # carries or asks for audio, unless the org allows it
    BACKGROUND = "background"  # a Responses request answered later, by polling
    CONVERSATION = "conversation"  # a Responses request on a server-side conversation, which changes


def cacheable(endpoint: str, body: Any, *, allow_files: bool = False) -> tuple[bool, str]:
    """(True, "") when a successful answer to this request may be cached, else (False, a `Refusal`)."""
    fmt = CACHEABLE_ENDPOINTS.get(endpoint)
    if fmt is None:
        return False, Refusal.ENDPOINT
    if not isinstance(body, dict):
        return False, Refusal.BODY
    reason = fmt.uncacheable(body, allow_files=allow_files)
    return (False, Refusal(reason)) if reason else (True, "")


def temperature_positive(body: Any, endpoint: str = "") -> bool:
    """Whether the request samples (temperature above 0), so that asking again may give another answer. A request
    that sets no temperature samples at the provider's default, which is positive everywhere; embeddings never
    sample. Without `endpoint`, every place a format keeps its temperature is looked at."""
    if endpoint in _EMBEDDINGS or not isinstance(body, dict):
        return False
    fmt = CACHEABLE_ENDPOINTS.get(endpoint)
    if fmt is not None:
        return fmt.temperature(body) > 0
    return all(f.temperature(body) > 0 for f in (OPENAI, GEMINI, OLLAMA))


def cache_key(org_id: int, namespace: str, provider: str, endpoint: str, model: str, body: dict) -> str:
    """The hex SHA-256 key of a request's answer (the rules are in this module's docstring)."""
    if isinstance(org_id, bool) or not isinstance(org_id, int):
        raise TypeError("a response cache key needs the org id: entries are never shared between orgs")
    fmt = CACHEABLE_ENDPOINTS.get(endpoint, OPENAI)
    neutral = fmt.cache_neutral_fields
    document = {
        "v": KEY_VERSION,
        "org": org_id,
        "namespace": namespace or "",
        "provider": provider,
        "endpoint": "generateContent" if endpoint == "streamGenerateContent" else endpoint,
        "model": model,
        "body": {name: value for name, value in body.items() if name not in neutral},
    }
    try:
        canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson cannot encode (integers past 64 bits) still gets a stable encoding
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(canonical).hexdigest()
