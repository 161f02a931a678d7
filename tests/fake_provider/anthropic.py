"""Anthropic: messages (streaming included), token counting, message batches and the legacy complete API."""

from __future__ import annotations

from typing import Any

from .errors import _error
from .replies import (
    _HOLE,
    SSE,
    Reply,
    StreamReply,
    _Call,
    _dated,
    _iso_now,
    _json,
    _new_id,
    _split,
    _sse,
    _sse_raw,
    _template,
)


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
