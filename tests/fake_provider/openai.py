"""OpenAI (and Azure OpenAI, and any OpenAI-compatible prefix): chat, completions, embeddings, responses,
models, moderations, images and audio."""

from __future__ import annotations

import base64
import functools
import itertools
import re
import struct
import time
from collections.abc import Callable
from typing import Any

from .options import DEFAULT_MODEL, EMBEDDING_DIMS
from .replies import (
    _HOLE,
    SSE,
    Reply,
    StreamReply,
    _Call,
    _dated,
    _embedding_inputs,
    _json,
    _new_id,
    _sse,
    _sse_raw,
    _template,
    _vector,
)

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
