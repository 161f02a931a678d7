"""The route table: which handler answers a method and path, and in which provider's error shape."""

from __future__ import annotations

import re
from collections.abc import Callable

from .anthropic import (
    anthropic_batch_create,
    anthropic_batch_get,
    anthropic_complete,
    anthropic_count_tokens,
    anthropic_messages,
)
from .gemini import _GEMINI_ACTIONS, gemini_model, gemini_models
from .ollama import (
    ollama_chat,
    ollama_embed,
    ollama_embeddings,
    ollama_generate,
    ollama_show,
    ollama_tags,
    ollama_version,
)
from .openai import (
    model_get,
    models_list,
    openai_chat,
    openai_completions,
    openai_embeddings,
    openai_images,
    openai_moderations,
    openai_response_delete,
    openai_response_get,
    openai_responses,
    openai_speech,
    openai_transcriptions,
)
from .replies import Reply, StreamReply, _Call, _json


def healthz(c: _Call) -> Reply:
    return _json({"status": "ok"})


Handler = Callable[[_Call], "Reply | StreamReply"]

_EXACT: dict[tuple[str, str], tuple[str, Handler]] = {
    ("POST", "/v1/chat/completions"): ("openai", openai_chat),
    ("POST", "/v1/messages"): ("anthropic", anthropic_messages),
    ("POST", "/v1/messages/count_tokens"): ("anthropic", anthropic_count_tokens),
    ("POST", "/v1/messages/batches"): ("anthropic", anthropic_batch_create),
    ("POST", "/v1/complete"): ("anthropic", anthropic_complete),
    ("POST", "/api/chat"): ("ollama", ollama_chat),
    ("POST", "/api/generate"): ("ollama", ollama_generate),
    ("POST", "/api/embed"): ("ollama", ollama_embed),
    ("POST", "/api/embeddings"): ("ollama", ollama_embeddings),
    ("GET", "/api/tags"): ("ollama", ollama_tags),
    ("POST", "/api/show"): ("ollama", ollama_show),
    ("GET", "/api/version"): ("ollama", ollama_version),
    ("GET", "/v1beta/models"): ("gemini", gemini_models),
    ("GET", "/healthz"): ("openai", healthz),
}

# Any OpenAI-compatible prefix (Groq's /openai/v1, Azure's /openai/v1, vLLM's /v1, ...) ends in these.
_SUFFIXES: list[tuple[str, str, Handler]] = [
    ("POST", "/chat/completions", openai_chat),
    ("POST", "/completions", openai_completions),
    ("POST", "/embeddings", openai_embeddings),
    ("POST", "/responses", openai_responses),
    ("POST", "/moderations", openai_moderations),
    ("POST", "/images/generations", openai_images),
    ("POST", "/audio/speech", openai_speech),
    ("POST", "/audio/transcriptions", openai_transcriptions),
    ("POST", "/audio/translations", openai_transcriptions),
    ("GET", "/models", models_list),
]

_GEMINI_RE = re.compile(
    r"^/(?:v1|v1beta|v1alpha)/(?:projects/[^/]+/locations/[^/]+/publishers/google/)?models/([^/:]+):([A-Za-z]+)$"
)
_GEMINI_MODEL_RE = re.compile(r"^/(?:v1beta|v1alpha)/models/([^/:]+)$")
_RESPONSE_ID_RE = re.compile(r"^(?:/openai)?/v1/responses/([^/]+)$")
_MODEL_ID_RE = re.compile(r"^(?:/openai)?/v1/models/([^/]+)$")
_BATCH_ID_RE = re.compile(r"^/v1/messages/batches/([^/]+)$")
_AZURE_RE = re.compile(r"^/openai/deployments/([^/]+)(/.+)$")
_RAW_BODY = {openai_transcriptions}  # multipart, not JSON


def _route(method: str, path: str, headers: dict[str, str]) -> tuple[str, Handler | None, dict[str, str]]:
    """(error flavor, handler or None for 404, path parameters)."""
    hit = _EXACT.get((method, path))
    if hit:
        return hit[0], hit[1], {}
    anthropic_flavor = "anthropic" if "anthropic-version" in headers else "openai"
    if method == "GET" and path == "/v1/models":
        return anthropic_flavor, models_list, {}
    match = _GEMINI_RE.match(path)
    if match:
        handler = _GEMINI_ACTIONS.get(match.group(2)) if method == "POST" else None
        return "gemini", handler, {"model": match.group(1)}
    if method == "GET" and (match := _GEMINI_MODEL_RE.match(path)):
        return "gemini", gemini_model, {"model": match.group(1)}
    if match := _RESPONSE_ID_RE.match(path):
        handler = {"GET": openai_response_get, "DELETE": openai_response_delete}.get(method)
        return "openai", handler, {"id": match.group(1)}
    if method == "GET" and (match := _MODEL_ID_RE.match(path)):
        return anthropic_flavor, model_get, {"id": match.group(1)}
    if method == "GET" and (match := _BATCH_ID_RE.match(path)):
        return "anthropic", anthropic_batch_get, {"id": match.group(1)}
    params: dict[str, str] = {}
    if match := _AZURE_RE.match(path):
        params["deployment"] = match.group(1)
    for verb, suffix, handler in _SUFFIXES:
        if method == verb and path.endswith(suffix):
            return "openai", handler, params
    if method == "POST" and path.endswith("/messages"):  # Anthropic-compatible prefixes
        return "anthropic", anthropic_messages, params
    return "openai", None, params


_REQUEST_ID_HEADER = {"openai": "x-request-id", "anthropic": "request-id"}
