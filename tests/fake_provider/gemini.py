"""Gemini (Google AI and Vertex AI paths): generate, stream, count tokens, embeddings and models."""

from __future__ import annotations

from typing import Any

from .options import EMBEDDING_DIMS
from .replies import _HOLE, JSON, SSE, Reply, StreamReply, _Call, _dated, _dumps, _json, _new_id, _template, _vector


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
