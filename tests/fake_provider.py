"""Fake LLM provider: a real HTTP/1.1 server on loopback speaking the OpenAI, Azure OpenAI,
Anthropic, Gemini and Ollama wire formats (streaming included), for tests and benchmarks.
Run standalone with `python -m tests.fake_provider --port 9999`; in pytest use `FakeProvider` or the `fake` fixture."""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import functools
import itertools
import json
import re
import signal
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

import httptools

try:
    import uvloop
except ImportError:  # uvloop is an optimisation only; plain asyncio works.
    uvloop = None

try:
    import pytest
except ImportError:  # the standalone server must not need pytest.
    pytest = None

__all__ = [
    "FakeProvider",
    "RecordedRequest",
    "Disconnect",
    "fake_provider",
    "fake",
    "prompt_tokens",
    "last_user_text",
    "completion_tokens",
    "DEFAULT_TEXT",
    "DEFAULT_CHUNKS",
    "TOKEN_RULE",
]

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
# Records visible to tests
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased, so look-ups need no case folding
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def query_params(self) -> dict[str, list[str]]:
        return parse_qs(self.query)


@dataclass(slots=True)
class Disconnect:
    """The client went away before the response finished (mid-stream, or during a delay/hang)."""

    path: str
    chunks_sent: int  # content chunks already written (0 also when it left before the headers)
    stream: bool


# ---------------------------------------------------------------------------------------------
# Per-request switches
# ---------------------------------------------------------------------------------------------

# Request header `x-fake-NAME: value`, or FakeProvider.defaults["NAME"] (headers win).
#   status N             answer N with the provider's own error JSON (x-fake-retry-after adds retry-after)
#   delay-ms N           wait before the response headers
#   chunk-delay-ms N     wait between a stream's content chunks (and before its closing events)
#   chunks N             content chunks in a stream (default DEFAULT_CHUNKS)
#   hang 1               accept and never answer; only the client going away ends it
#   gzip 1               Content-Encoding: gzip, flushed per chunk so streams stay incremental
#   cut-after N          close a stream abruptly after N content chunks
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
    "chunks": int,
    "hang": _flag,
    "gzip": _flag,
    "cut_after": int,
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
        self.chunks = DEFAULT_CHUNKS
        self.hang = False
        self.gzip = False
        self.cut_after: int | None = None
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
# Token counting and small helpers
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


_PIECE_RE = re.compile(r"\s*\S+\s*$|\s*\S+")


def _split(text: str, n: int) -> list[str]:
    """n pieces that join back to text: whole words while there are enough, else slices of characters."""
    words = _PIECE_RE.findall(text)
    if n <= len(words):
        return ["".join(words[i * len(words) // n : (i + 1) * len(words) // n]) for i in range(n)]
    size = len(text)
    return [text[i * size // n : (i + 1) * size // n] for i in range(n)]


_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}fake{next(_ids):020d}"


_dump = json.JSONEncoder(separators=(",", ":")).encode


def _dumps(obj: Any) -> bytes:
    return _dump(obj).encode()


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _vector(text: str, dims: int) -> list[float]:
    # Deterministic per input, so tests can compare vectors that went through the gateway.
    seed = zlib.crc32(text.encode())
    return [((seed * (i + 7919)) % 2001 - 1000) / 1000.0 for i in range(dims)]


_DATED_RE = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{3})$")


def _dated(model: str, suffix: str) -> str:
    # Providers answer with a pinned snapshot name; tests use the difference to tell requested from served.
    return model if _DATED_RE.search(model) else model + suffix


# ---------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"
NDJSON = "application/x-ndjson"


class Reply:
    __slots__ = ("status", "content_type", "body", "headers")

    def __init__(self, body: bytes, content_type: str = JSON, status: int = 200, headers=None):
        self.status = status
        self.content_type = content_type
        self.body = body
        self.headers: list[tuple[str, str]] = headers or []


class StreamReply:
    """head events, then the counted content chunks, then tail events."""

    __slots__ = ("content_type", "head", "chunks", "tail", "headers")

    def __init__(self, content_type: str, head: list[bytes], chunks: list[bytes], tail: list[bytes]):
        self.content_type = content_type
        self.head = head
        self.chunks = chunks
        self.tail = tail
        self.headers: list[tuple[str, str]] = []


def _json(obj: Any, status: int = 200) -> Reply:
    return Reply(_dumps(obj), JSON, status)


def _sse(obj: Any, event: str | None = None) -> bytes:
    return _sse_raw(_dumps(obj), event)


def _sse_raw(payload: bytes, event: str | None = None) -> bytes:
    data = b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data


_HOLE = "\x00hole\x00"
_HOLE_JSON = _dumps(_HOLE)


def _template(obj: Any) -> Callable[..., bytes]:
    """Serialise obj once; the returned function fills each _HOLE in it, in order, with a JSON value.
    A stream repeats one envelope per chunk, and encoding it afresh was most of a stream's cost."""
    parts = _dumps(obj).split(_HOLE_JSON)

    def fill(*values: Any) -> bytes:
        out = [parts[0]]
        for value, part in zip(values, parts[1:], strict=True):
            out += (_dumps(value), part)
        return b"".join(out)

    return fill


class _Call:
    """What a route handler sees."""

    __slots__ = ("provider", "method", "path", "query", "headers", "body", "data", "opts", "params", "_prompt")

    def __init__(self, provider, method, path, query, headers, body, opts, params):
        self.provider = provider
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.opts = opts
        self.params = params
        self.data: Any = {}
        self._prompt: int | None = None

    def stream_pieces(self) -> list[str]:
        return _split(self.opts.text, self.opts.chunks)

    def prompt_tokens(self) -> int:
        if self._prompt is None:  # several usage blocks per stream need it
            self._prompt = prompt_tokens(self.data)
        return self._prompt

    def answer_tokens(self) -> int:
        return completion_tokens(self.opts.text)


# ---------------------------------------------------------------------------------------------
# Errors, in each provider's own shape
# ---------------------------------------------------------------------------------------------

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _error(flavor: str, status: int, message: str) -> Reply:
    if flavor == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": _new_id("req_")}
    elif flavor == "gemini":
        google = _GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        body = {"error": {"code": status, "message": message, "status": google}}
    elif flavor == "ollama":
        body = {"error": message}
    else:
        kind, code = _OPENAI_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return _json(body, status)


# ---------------------------------------------------------------------------------------------
# OpenAI (and Azure OpenAI, and any OpenAI-compatible prefix)
# ---------------------------------------------------------------------------------------------

_FINGERPRINT = "fp_fake0001"


def _openai_model(c: _Call) -> str:
    model = c.data.get("model") or c.params.get("deployment") or DEFAULT_MODEL
    return _dated(model, "-2024-07-18")


def _openai_usage(c: _Call) -> dict:
    p, o, r = c.prompt_tokens(), c.answer_tokens(), c.opts.reasoning_tokens
    return _openai_usage_of(p, o, r, min(c.opts.cached_tokens, p))


def _openai_usage_of(prompt: int, answer: int, reasoning: int, cached: int) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": answer + reasoning,
        "total_tokens": prompt + answer + reasoning,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _include_usage(c: _Call) -> bool:
    return bool((c.data.get("stream_options") or {}).get("include_usage"))


@functools.lru_cache(maxsize=256)
def _chat_completion(model: str, text: str, *usage: int) -> Callable[..., bytes]:
    """The benchmark's hot path, serialised once per distinct answer; each response fills in id and created."""
    message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    return _template(
        {
            "id": _HOLE,
            "object": "chat.completion",
            "created": _HOLE,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": _openai_usage_of(*usage),
        }
    )


def openai_chat(c: _Call) -> Reply | StreamReply:
    model, created = _openai_model(c), int(time.time())
    if not c.data.get("stream"):
        p, o, r = c.prompt_tokens(), c.answer_tokens(), c.opts.reasoning_tokens
        body = _chat_completion(model, c.opts.text, p, o, r, min(c.opts.cached_tokens, p))
        return Reply(body(_new_id("chatcmpl-"), created))

    base = {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    with_usage = _include_usage(c)

    def chunk(delta: dict, finish: str | None = None) -> dict:
        event = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if with_usage:
            event["usage"] = None  # OpenAI sends an explicit null on every chunk but the last
        return event

    content = _template(chunk({"content": _HOLE}))
    head = [_sse(chunk({"role": "assistant", "content": "", "refusal": None}))]
    chunks = [_sse_raw(content(piece)) for piece in c.stream_pieces()]
    tail = [_sse(chunk({}, "stop"))]
    if with_usage:
        tail.append(_sse({**base, "choices": [], "usage": _openai_usage(c)}))
    tail.append(b"data: [DONE]\n\n")
    return StreamReply(SSE, head, chunks, tail)


def openai_completions(c: _Call) -> Reply | StreamReply:
    base = {
        "id": _new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": _openai_model(c),
        "system_fingerprint": _FINGERPRINT,
    }
    usage = _openai_usage(c)
    del usage["prompt_tokens_details"]["audio_tokens"], usage["completion_tokens_details"]["audio_tokens"]
    if not c.data.get("stream"):
        choice = {"text": c.opts.text, "index": 0, "logprobs": None, "finish_reason": "stop"}
        return _json({**base, "choices": [choice], "usage": usage})

    with_usage = _include_usage(c)

    def chunk(text: str, finish: str | None = None) -> dict:
        event = {**base, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}
        if with_usage:
            event["usage"] = None
        return event

    content = _template(chunk(_HOLE))
    chunks = [_sse_raw(content(piece)) for piece in c.stream_pieces()]
    tail = [_sse(chunk("", "stop"))]
    if with_usage:
        tail.append(_sse({**base, "choices": [], "usage": usage}))
    tail.append(b"data: [DONE]\n\n")
    return StreamReply(SSE, [], chunks, tail)


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and isinstance(value[0], int):
        return [" ".join(map(str, value))]  # one pre-tokenised input
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    return [""]


def openai_embeddings(c: _Call) -> Reply:
    dims = int(c.data.get("dimensions") or EMBEDDING_DIMS)
    as_base64 = c.data.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(_embedding_inputs(c.data.get("input"))):
        vector: Any = _vector(text, dims)
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = c.prompt_tokens()
    model = c.data.get("model") or c.params.get("deployment") or "text-embedding-3-small"
    return _json(
        {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    )


def _response_object(c: _Call, rid: str, status: str, output: list, usage: dict | None) -> dict:
    data = c.data if isinstance(c.data, dict) else {}
    now = int(time.time())
    return {
        "id": rid,
        "object": "response",
        "created_at": now,
        "status": status,
        "background": False,
        "completed_at": now if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
        "instructions": data.get("instructions"),
        "max_output_tokens": data.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": _openai_model(c),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": data.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": data.get("store", True),
        "temperature": data.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": data.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": data.get("metadata") or {},
    }


def _responses_usage(c: _Call) -> dict:
    p, o, r = c.prompt_tokens(), c.answer_tokens(), c.opts.reasoning_tokens
    return {
        "input_tokens": p,
        "input_tokens_details": {"cached_tokens": min(c.opts.cached_tokens, p), "cache_write_tokens": 0},
        "output_tokens": o + r,
        "output_tokens_details": {"reasoning_tokens": r},
        "total_tokens": p + o + r,
    }


def openai_responses(c: _Call) -> Reply | StreamReply:
    rid, item_id = _new_id("resp_"), _new_id("msg_")
    text = c.opts.text
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    item = {"id": item_id, "type": "message", "status": "completed", "content": [part], "role": "assistant"}
    usage = _responses_usage(c)
    if not c.data.get("stream"):
        return _json(_response_object(c, rid, "completed", [item], usage))

    seq = itertools.count()

    def event(kind: str, **fields) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

    started = _response_object(c, rid, "in_progress", [], None)
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    head = [
        event("response.created", response=started),
        event("response.in_progress", response=started),
        event(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "content": []},
        ),
        event("response.content_part.added", **where, part={**part, "text": ""}),
    ]
    delta = _template(
        {"type": "response.output_text.delta", "sequence_number": _HOLE, **where, "delta": _HOLE, "logprobs": []}
    )
    chunks = [_sse_raw(delta(next(seq), piece), "response.output_text.delta") for piece in c.stream_pieces()]
    tail = [
        event("response.output_text.done", **where, text=text, logprobs=[]),
        event("response.content_part.done", **where, part=part),
        event("response.output_item.done", output_index=0, item=item),
        event("response.completed", response=_response_object(c, rid, "completed", [item], usage)),
    ]
    return StreamReply(SSE, head, chunks, tail)


def openai_response_get(c: _Call) -> Reply:
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": c.opts.text}
    item = {"id": _new_id("msg_"), "type": "message", "status": "completed", "content": [part], "role": "assistant"}
    return _json(_response_object(c, c.params["id"], "completed", [item], _responses_usage(c)))


def openai_response_delete(c: _Call) -> Reply:
    return _json({"id": c.params["id"], "object": "response", "deleted": True})


_OPENAI_MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small", "whisper-1"]


def _openai_model_card(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 1721172741, "owned_by": "system"}


_ANTHROPIC_MODELS = [
    ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
]


def _anthropic_model_card(model: tuple[str, str, str]) -> dict:
    return {"type": "model", "id": model[0], "display_name": model[1], "created_at": model[2]}


def models_list(c: _Call) -> Reply:
    if "anthropic-version" in c.headers:
        data = [_anthropic_model_card(m) for m in _ANTHROPIC_MODELS]
        return _json({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})
    return _json({"object": "list", "data": [_openai_model_card(m) for m in _OPENAI_MODELS]})


def model_get(c: _Call) -> Reply:
    model_id = c.params["id"]
    if "anthropic-version" in c.headers:
        return _json(_anthropic_model_card((model_id, model_id, "2025-05-22T00:00:00Z")))
    return _json(_openai_model_card(model_id))


_MODERATION_CATEGORIES = [
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
]  # fmt: skip


def openai_moderations(c: _Call) -> Reply:
    results = []
    for text in _embedding_inputs(c.data.get("input")):
        # Deterministic trigger so guardrail tests can get a flagged result on demand.
        violent = "kill" in text.lower()
        categories = {name: name == "violence" and violent for name in _MODERATION_CATEGORIES}
        scores = {name: 0.9 if flagged else 0.0001 for name, flagged in categories.items()}
        results.append(
            {
                "flagged": violent,
                "categories": categories,
                "category_scores": scores,
                "category_applied_input_types": {name: ["text"] for name in _MODERATION_CATEGORIES},
            }
        )
    model = c.data.get("model") or "omni-moderation-latest"
    return _json({"id": _new_id("modr-"), "model": _dated(model, "-2024-09-26"), "results": results})


_PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def openai_images(c: _Call) -> Reply:
    count = int(c.data.get("n") or 1)
    if c.data.get("response_format") == "url":
        item = {"url": "data:image/png;base64," + _PNG_1X1, "revised_prompt": c.data.get("prompt")}
    else:
        item = {"b64_json": _PNG_1X1, "revised_prompt": c.data.get("prompt")}
    return _json({"created": int(time.time()), "data": [item] * count})


_AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
# An ID3 tag and one silent MPEG-1 Layer III frame header: enough for content sniffers, not for a player.
_FAKE_MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(413)


def openai_speech(c: _Call) -> Reply:
    fmt = c.data.get("response_format") or "mp3"
    return Reply(_FAKE_MP3, _AUDIO_TYPES.get(fmt, "audio/mpeg"))


def _form_field(body: bytes, name: str) -> str | None:
    match = re.search(rb'name="' + name.encode() + rb'"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r]*)\r\n', body)
    return match.group(1).decode(errors="replace") if match else None


def openai_transcriptions(c: _Call) -> Reply:
    fmt = _form_field(c.body, "response_format") or "json"
    text = c.opts.text
    if fmt == "verbose_json":
        return _json({"task": "transcribe", "language": "english", "duration": 1.0, "text": text, "segments": []})
    if fmt in ("text", "srt", "vtt"):
        return Reply(text.encode() + b"\n", "text/plain; charset=utf-8")
    return _json({"text": text, "usage": {"type": "duration", "seconds": 1}})


# ---------------------------------------------------------------------------------------------
# Anthropic
# ---------------------------------------------------------------------------------------------


def _anthropic_usage(c: _Call, output_tokens: int) -> dict:
    return {
        "input_tokens": c.prompt_tokens(),
        "cache_creation_input_tokens": c.opts.cache_write_tokens,
        "cache_read_input_tokens": c.opts.cached_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_messages(c: _Call) -> Reply | StreamReply:
    model = _dated(c.data.get("model") or "claude-sonnet-4", "-20250514")
    output = c.answer_tokens() + c.opts.reasoning_tokens
    message = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": c.opts.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(c, output),
    }
    if not c.data.get("stream"):
        return _json(message)

    start_usage = _anthropic_usage(c, 1)  # Anthropic reports 1 output token at message_start
    end_usage = _anthropic_usage(c, output)
    del end_usage["service_tier"]  # message_delta carries cumulative counts only

    def event(kind: str, **fields: Any) -> bytes:  # Anthropic names each SSE event after its data's type
        return _sse({"type": kind, **fields}, kind)

    started = {**message, "content": [], "stop_reason": None, "usage": start_usage}
    head = [
        event("message_start", message=started),
        event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        event("ping"),
    ]
    delta = _template({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": _HOLE}})
    chunks = [_sse_raw(delta(piece), "content_block_delta") for piece in c.stream_pieces()]
    tail = [
        event("content_block_stop", index=0),
        event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage=end_usage),
        event("message_stop"),
    ]
    return StreamReply(SSE, head, chunks, tail)


def anthropic_count_tokens(c: _Call) -> Reply:
    return _json({"input_tokens": c.prompt_tokens()})


def _batch(batch_id: str, count: int, ended: bool) -> dict:
    done = count if ended else 0
    return {
        "id": batch_id,
        "type": "message_batch",
        "processing_status": "ended" if ended else "in_progress",
        "request_counts": {"processing": count - done, "succeeded": done, "errored": 0, "canceled": 0, "expired": 0},
        "ended_at": _iso_now() if ended else None,
        "created_at": _iso_now(),
        "expires_at": _iso_now(),
        "cancel_initiated_at": None,
        "archived_at": None,
        "results_url": None,
    }


def anthropic_batch_create(c: _Call) -> Reply:
    batch_id = _new_id("msgbatch_")
    count = len(c.data.get("requests") or [])
    c.provider._batches[batch_id] = count
    return _json(_batch(batch_id, count, ended=False))


def anthropic_batch_get(c: _Call) -> Reply:
    batch_id = c.params["id"]
    count = c.provider._batches.get(batch_id)
    if count is None:
        return _error("anthropic", 404, f"batch {batch_id} not found")
    return _json(_batch(batch_id, count, ended=True))


def anthropic_complete(c: _Call) -> Reply | StreamReply:
    model = c.data.get("model") or "claude-2.1"
    text = " " + c.opts.text
    if not c.data.get("stream"):
        return _json(
            {
                "type": "completion",
                "id": _new_id("compl_"),
                "completion": text,
                "stop_reason": "stop_sequence",
                "stop": "\n\nHuman:",
                "model": model,
            }
        )
    cid = _new_id("compl_")

    def event(piece: str, stop: str | None) -> bytes:
        body = {"type": "completion", "id": cid, "completion": piece, "stop_reason": stop, "model": model}
        if stop:
            body["stop"] = "\n\nHuman:"
        return _sse(body, "completion")

    chunks = [event(piece, None) for piece in _split(text, c.opts.chunks)]
    return StreamReply(SSE, [_sse({"type": "ping"}, "ping")], chunks, [event("", "stop_sequence")])


# ---------------------------------------------------------------------------------------------
# Gemini
# ---------------------------------------------------------------------------------------------


def _gemini_usage(c: _Call, final: bool) -> dict:
    p = c.prompt_tokens()
    usage: dict[str, Any] = {"promptTokenCount": p}
    if final:
        o, r = c.answer_tokens(), c.opts.reasoning_tokens
        usage["candidatesTokenCount"] = o
        usage["totalTokenCount"] = p + o + r
        if r:
            usage["thoughtsTokenCount"] = r
    else:
        usage["totalTokenCount"] = p
    cached = min(c.opts.cached_tokens, p)
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": p}]
    return usage


def _gemini_chunk(c: _Call, text: str, final: bool, rid: str) -> dict:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
    if final:
        candidate["finishReason"] = "STOP"
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": _gemini_usage(c, final),
        "modelVersion": _dated(c.params["model"], "-001"),
        "responseId": rid,
    }


def gemini_generate(c: _Call) -> Reply:
    return _json(_gemini_chunk(c, c.opts.text, True, _new_id("")))


def gemini_stream(c: _Call) -> StreamReply:
    rid = _new_id("")
    *pieces, last = c.stream_pieces()
    middle = _template(_gemini_chunk(c, _HOLE, False, rid))
    events = [middle(piece) for piece in pieces] + [_dumps(_gemini_chunk(c, last, True, rid))]
    if "alt=sse" in c.query:
        # Google separates its SSE events with CRLF pairs.
        return StreamReply(SSE, [], [b"data: " + e + b"\r\n\r\n" for e in events], [])
    # Without alt=sse Google streams one JSON array, element by element.
    chunks = [(b"[" if i == 0 else b",\r\n") + e + b"\n" for i, e in enumerate(events)]
    return StreamReply(JSON, [], chunks, [b"]"])


def gemini_count_tokens(c: _Call) -> Reply:
    p = c.prompt_tokens()
    return _json({"totalTokens": p, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p}]})


def _gemini_embedding(request: dict) -> dict:
    dims = int(request.get("outputDimensionality") or request.get("output_dimensionality") or EMBEDDING_DIMS)
    parts = (request.get("content") or {}).get("parts") or []
    text = " ".join(p.get("text", "") for p in parts if isinstance(p, dict))
    return {"values": _vector(text, dims)}


def gemini_embed(c: _Call) -> Reply:
    return _json({"embedding": _gemini_embedding(c.data)})


def gemini_batch_embed(c: _Call) -> Reply:
    return _json({"embeddings": [_gemini_embedding(r) for r in c.data.get("requests") or []]})


def _gemini_model_card(model: str) -> dict:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def gemini_models(c: _Call) -> Reply:
    return _json({"models": [_gemini_model_card(m) for m in ("gemini-2.0-flash", "gemini-2.5-flash")]})


def gemini_model(c: _Call) -> Reply:
    return _json(_gemini_model_card(c.params["model"]))


_GEMINI_ACTIONS = {
    "generateContent": gemini_generate,
    "streamGenerateContent": gemini_stream,
    "countTokens": gemini_count_tokens,
    "embedContent": gemini_embed,
    "batchEmbedContents": gemini_batch_embed,
}


# ---------------------------------------------------------------------------------------------
# Ollama
# ---------------------------------------------------------------------------------------------


def _ollama_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


def _ollama_final(c: _Call) -> dict:
    p, o = c.prompt_tokens(), c.answer_tokens()
    # Fixed per-token durations keep the numbers deterministic and plausible.
    load, prompt_eval, evaluation = 1_000_000, p * 100_000, o * 10_000_000
    return {
        "done": True,
        "done_reason": "stop",
        "total_duration": load + prompt_eval + evaluation,
        "load_duration": load,
        "prompt_eval_count": p,
        "prompt_eval_duration": prompt_eval,
        "eval_count": o,
        "eval_duration": evaluation,
    }


def _ollama(c: _Call, piece: Callable[[str], dict], final_extra: dict) -> Reply | StreamReply:
    model = c.data.get("model") or "llama3.2"
    if c.data.get("stream", True) is False:
        return _json(
            {"model": model, "created_at": _ollama_time(), **piece(c.opts.text), **_ollama_final(c), **final_extra}
        )
    partial = _template({"model": model, "created_at": _ollama_time(), **piece(_HOLE), "done": False})
    chunks = [partial(p) + b"\n" for p in c.stream_pieces()]
    last = {"model": model, "created_at": _ollama_time(), **piece(""), **_ollama_final(c), **final_extra}
    return StreamReply(NDJSON, [], chunks, [_dumps(last) + b"\n"])


def ollama_chat(c: _Call) -> Reply | StreamReply:
    return _ollama(c, lambda text: {"message": {"role": "assistant", "content": text}}, {})


def ollama_generate(c: _Call) -> Reply | StreamReply:
    context = list(range(1, c.prompt_tokens() + c.answer_tokens() + 1))
    return _ollama(c, lambda text: {"response": text}, {"context": context})


def ollama_embed(c: _Call) -> Reply:
    inputs = _embedding_inputs(c.data.get("input"))
    return _json(
        {
            "model": c.data.get("model") or "nomic-embed-text",
            "embeddings": [_vector(text, EMBEDDING_DIMS) for text in inputs],
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": c.prompt_tokens(),
        }
    )


def ollama_embeddings(c: _Call) -> Reply:
    return _json({"embedding": _vector(str(c.data.get("prompt") or ""), EMBEDDING_DIMS)})


_OLLAMA_DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "3.2B",
    "quantization_level": "Q4_K_M",
}


def ollama_tags(c: _Call) -> Reply:
    model = {
        "name": "llama3.2:latest",
        "model": "llama3.2:latest",
        "modified_at": "2025-01-01T00:00:00.000000000Z",
        "size": 2019393189,
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": _OLLAMA_DETAILS,
    }
    return _json({"models": [model]})


def ollama_show(c: _Call) -> Reply:
    return _json(
        {
            "modelfile": "FROM llama3.2\n",
            "parameters": 'stop "<|eot_id|>"',
            "template": "{{ .Prompt }}",
            "details": _OLLAMA_DETAILS,
            "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
            "capabilities": ["completion", "tools"],
            "modified_at": "2025-01-01T00:00:00.000000000Z",
        }
    )


def ollama_version(c: _Call) -> Reply:
    return _json({"version": "0.9.0"})


def healthz(c: _Call) -> Reply:
    return _json({"status": "ok"})


# ---------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 server
# ---------------------------------------------------------------------------------------------

_status_lines: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _status_lines.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = {529: "Overloaded"}.get(status, "Unknown")
        line = _status_lines[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    return _status_line(status) + "".join(f"{k}: {v}\r\n" for k, v in headers).encode("latin-1") + b"\r\n"


class _Active:
    """The response a connection is working on, for disconnect reporting."""

    __slots__ = ("path", "stream", "chunks_sent", "finished")

    def __init__(self, path: str, stream: bool):
        self.path = path
        self.stream = stream
        self.chunks_sent = 0
        self.finished = False


class _ChunkedWriter:
    """Chunked transfer-encoding, gzip optional. Pieces are buffered until flush(), so an unpaced
    stream costs one send() while a paced one (chunk delay) still reaches the client piece by piece."""

    def __init__(self, transport: asyncio.Transport, head: bytes, gzip: bool):
        self.transport = transport
        self.buffer = [head]
        # A Z_SYNC_FLUSH per piece keeps a gzip stream decodable piece by piece too.
        self.compressor = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip else None

    def add(self, piece: bytes):
        if self.compressor is not None:
            piece = self.compressor.compress(piece) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        if piece:  # an empty chunk would end the body
            self.buffer.append(b"%x\r\n%s\r\n" % (len(piece), piece))

    def flush(self):
        if self.buffer:
            self.transport.write(b"".join(self.buffer))
            self.buffer.clear()

    def finish(self):
        if self.compressor is not None:
            tail = self.compressor.flush()
            self.buffer.append(b"%x\r\n%s\r\n" % (len(tail), tail))
        self.buffer.append(b"0\r\n\r\n")
        self.flush()


class _Connection(asyncio.Protocol):
    def __init__(self, provider: FakeProvider):
        self.provider = provider
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.switches: dict[str, str] = {}
        self.body: list[bytes] = []
        # Pipelined requests wait here so responses leave in request order.
        self.pending: collections.deque = collections.deque()
        self.task: asyncio.Task | None = None
        self.active: _Active | None = None
        self.writable: asyncio.Event | None = None
        self.broken = False

    # asyncio callbacks

    def connection_made(self, transport):
        self.transport = transport
        self.provider._connections.add(self)

    def data_received(self, data: bytes):
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"bad request: {exc}")

    def connection_lost(self, exc):
        self.provider._connections.discard(self)
        active = self.active
        if active is not None and not active.finished:
            active.finished = True
            self.provider._record_disconnect(Disconnect(active.path, active.chunks_sent, active.stream))
        if self.task is not None:
            self.task.cancel()
        self.pending.clear()
        if self.writable is not None:
            self.writable.set()

    def pause_writing(self):
        self.writable = self.writable or asyncio.Event()
        self.writable.clear()

    def resume_writing(self):
        if self.writable is not None:
            self.writable.set()

    # httptools callbacks

    def on_message_begin(self):
        self.url = b""
        self.headers = {}
        self.switches = {}
        self.body = []

    def on_url(self, url: bytes):
        self.url += url

    def on_header(self, name: bytes, value: bytes):
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text
        if key.startswith("x-fake-"):
            self.switches[key] = self.headers[key]

    def on_headers_complete(self):
        if self.headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes):
        self.body.append(body)

    def on_message_complete(self):
        raw_path, _, query = self.url.decode("latin-1").partition("?")
        path = unquote(raw_path) if "%" in raw_path else raw_path
        method = self.parser.get_method().decode()
        request = RecordedRequest(method, path, query, self.headers, b"".join(self.body))
        if self.provider.record:
            self.provider._record_request(request)
        keep_alive = self.parser.should_keep_alive()
        if self.task is None and not self.pending:
            self._dispatch(request, self.switches, keep_alive)
        else:
            self.pending.append((request, self.switches, keep_alive))

    # responding

    def _dispatch(self, request: RecordedRequest, switches: dict[str, str], keep_alive: bool):
        provider = self.provider
        flavor, handler, params = _route(request.method, request.path, request.headers)
        try:
            opts = provider._options(switches)
        except ValueError as exc:
            self._send(_error(flavor, 400, f"fake provider: {exc}"), flavor, _DEFAULT_OPTIONS, keep_alive)
            return
        result: Reply | StreamReply
        if opts.status:
            result = _error(flavor, opts.status, f"fake provider error {opts.status} (x-fake-status)")
            if opts.retry_after is not None:
                result.headers.append(("retry-after", opts.retry_after))
        elif handler is None:
            result = _error(flavor, 404, f"Invalid URL ({request.method} {request.path})")
        else:
            call = _Call(
                provider, request.method, request.path, request.query, request.headers, request.body, opts, params
            )
            try:
                if request.body and handler not in _RAW_BODY:
                    call.data, call._prompt = _parse(request.body)
                    if provider.answers is not None and "x-fake-text" not in switches:
                        self._scripted(call)
                result = handler(call)
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                result = _error(flavor, 400, f"fake provider could not handle the request: {exc!r}")
        if isinstance(result, Reply) and not opts.delay_ms and not opts.hang:
            self._send(result, flavor, opts, keep_alive)  # the benchmark's hot path: no task, no await
            return
        self.active = _Active(request.path, isinstance(result, StreamReply))
        self.task = asyncio.ensure_future(self._respond_later(result, flavor, opts, keep_alive))

    def _scripted(self, call: _Call) -> None:
        data = call.data if isinstance(call.data, dict) else {}
        model = data.get("model") or call.params.get("model") or ""
        text = self.provider.answers(model, last_user_text(data))
        if text is not None:
            opts = Options()
            for name in _SWITCHES:
                setattr(opts, name, getattr(call.opts, name))
            opts.text = text
            call.opts = opts

    async def _respond_later(self, result, flavor: str, opts: Options, keep_alive: bool):
        try:
            if opts.hang:
                await asyncio.get_running_loop().create_future()  # never resolves; only a disconnect ends it
            if opts.delay_ms:
                await asyncio.sleep(opts.delay_ms / 1000)
            if isinstance(result, StreamReply):
                await self._stream(result, flavor, opts, keep_alive)
            else:
                self.active.finished = True
                self._send(result, flavor, opts, keep_alive)
        except asyncio.CancelledError:
            return
        except Exception:  # a bug here must not leave the client waiting forever
            self.transport.close()
            raise
        finally:
            self.task = None
            self.active = None
        while self.pending and self.task is None and not self.transport.is_closing():
            request, switches, keep_alive = self.pending.popleft()
            if isinstance(request, str):
                self._fail(400, request)
            else:
                self._dispatch(request, switches, keep_alive)

    def _base_headers(self, flavor: str, result, opts: Options, keep_alive: bool) -> list[tuple[str, str]]:
        headers = [("content-type", result.content_type)]
        id_header = _REQUEST_ID_HEADER.get(flavor)
        if id_header:
            headers.append((id_header, _new_id("req_")))
        if opts.gzip:
            headers.append(("content-encoding", "gzip"))
        if not keep_alive:
            headers.append(("connection", "close"))
        headers.extend(result.headers)
        return headers

    def _send(self, reply: Reply, flavor: str, opts: Options, keep_alive: bool):
        body = reply.body
        if opts.gzip:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
            body = compressor.compress(body) + compressor.flush()
        headers = self._base_headers(flavor, reply, opts, keep_alive)
        headers.append(("content-length", str(len(body))))
        self.transport.write(_head(reply.status, headers) + body)
        if not keep_alive:
            self.transport.close()

    async def _stream(self, stream: StreamReply, flavor: str, opts: Options, keep_alive: bool):
        transport, active = self.transport, self.active
        headers = self._base_headers(flavor, stream, opts, keep_alive)
        headers += [("cache-control", "no-cache"), ("transfer-encoding", "chunked")]
        out = _ChunkedWriter(transport, _head(200, headers), opts.gzip)
        for piece in stream.head:
            out.add(piece)
        delay = opts.chunk_delay_ms / 1000
        chunks = stream.chunks if opts.cut_after is None else stream.chunks[: opts.cut_after]
        for index, piece in enumerate(chunks):
            if index and delay:
                out.flush()
                await asyncio.sleep(delay)
            if transport.is_closing():
                return
            out.add(piece)
            active.chunks_sent += 1
            if self.writable is not None and not self.writable.is_set():
                out.flush()
                await self.writable.wait()
        if opts.cut_after is not None:
            # A provider that dies mid-stream: no remaining events, no terminating zero-length chunk.
            out.flush()
            active.finished = True
            transport.close()
            return
        if delay:
            out.flush()
            await asyncio.sleep(delay)
        for piece in stream.tail:
            out.add(piece)
        out.finish()
        active.finished = True
        if not keep_alive:
            transport.close()

    def _fail(self, status: int, message: str):
        self.broken = True
        if self.task is not None:
            self.pending.append((message, None, False))  # after the responses already owed, in order
        elif not self.transport.is_closing():
            self._send(_error("openai", status, message), "openai", _DEFAULT_OPTIONS, keep_alive=False)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


class FakeProvider:
    """A fake LLM provider on a real socket. `start()` serves from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, record: bool = True):
        self.host = host
        self.port = port
        self.record = record  # off for the benchmark: recording every request would grow without bound
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.disconnects: list[Disconnect] = []
        self._defaults: dict[str, Any] = {}
        # answers(model, last user text) -> the answer text, or None for the usual one: lets a test script
        # models that answer differently (an eval's "good" and "bad" model). x-fake-text still wins.
        self.answers: Callable[[str, str], str | None] | None = None
        self._batches: dict[str, int] = {}
        self._connections: set[_Connection] = set()
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # switches

    @property
    def defaults(self) -> dict[str, Any]:
        """Switches applied to every request unless its headers override them, e.g.
        `fake.defaults["status"] = 429` or `fake.defaults["x-fake-chunks"] = 16`."""
        return self._defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]):
        self._defaults.clear()
        self._defaults.update(value)

    def _options(self, switches: dict[str, str]) -> Options:
        """Options from the defaults overlaid with a request's x-fake-* headers."""
        if not switches and not self._defaults:
            return _DEFAULT_OPTIONS
        defaults = self._defaults.copy()  # a snapshot: tests change defaults from another thread
        merged = {_switch_name(k): v for k, v in defaults.items()}
        merged.update((_switch_name(k), v) for k, v in switches.items())
        if "x-fake-text" in switches:
            merged["text"] = _header_text(switches["x-fake-text"])
        return Options(merged)

    # records

    def _record_request(self, request: RecordedRequest):
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def _record_disconnect(self, event: Disconnect):
        with self._cond:
            self.disconnects.append(event)
            self._cond.notify_all()

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= count, timeout)

    def wait_for_disconnects(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Disconnects are noticed asynchronously; wait for them instead of sleeping."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.disconnects) >= count, timeout)

    def reset(self):
        with self._cond:
            self.requests.clear()
            self.disconnects.clear()
            self._defaults.clear()
            self.answers = None

    # serving

    async def open(self) -> asyncio.AbstractServer:
        """Bind and start accepting on the running loop; sets `.port` and `.url`."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: _Connection(self), self.host, self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"
        return self._server

    def start(self) -> FakeProvider:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run():
            loop = uvloop.new_event_loop() if uvloop else asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(self._server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-provider", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self):
        if self._thread is None:
            return
        loop = self._loop

        def shutdown():
            self._server.close()
            for connection in list(self._connections):
                connection.transport.abort()
            loop.call_soon(loop.stop)

        loop.call_soon_threadsafe(shutdown)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


# ---------------------------------------------------------------------------------------------
# pytest fixtures; a conftest imports them: from tests.fake_provider import fake_provider, fake
# ---------------------------------------------------------------------------------------------

if pytest is not None:

    @pytest.fixture(scope="session")
    def fake_provider():
        """One server for the whole session; starting a thread per test would dominate fast tests."""
        with FakeProvider() as provider:
            yield provider

    @pytest.fixture
    def fake(fake_provider):
        """The session's server with records and defaults cleared for this test."""
        fake_provider.reset()
        yield fake_provider
        fake_provider.reset()


# ---------------------------------------------------------------------------------------------
# Standalone
# ---------------------------------------------------------------------------------------------


async def _serve(provider: FakeProvider):
    server = await provider.open()
    print(f"fake provider listening on {provider.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--record", action="store_true", help="keep every request in memory (off: unbounded)")
    args = parser.parse_args(argv)
    provider = FakeProvider(args.host, args.port, record=args.record)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        runner.run(_serve(provider))


if __name__ == "__main__":
    main()
