"""Answers out of the response cache in the wire format the client asked for: a stored stream assembled into the
answer the provider gives without streaming, a stored answer replayed as the stream the provider would send, a
stored stream passed on as it came (less the usage a client did not ask for). The format knowledge is the
formats' own (`WireFormat.assemble`, `.replay`, `.strip_usage`); this is the one door to it."""

from __future__ import annotations

import orjson

from .base import UnfinishedStream, WireFormat
from .gemini import Gemini

__all__ = ["UnfinishedStream", "answer_from_entry", "assemble", "media_type", "replay", "strip_usage"]


def assemble(fmt: WireFormat, stream_bytes: bytes) -> dict:
    """The answer a whole stream (SSE or NDJSON, as the provider sent it) adds up to: the JSON the provider returns
    for the same request without streaming. Raises UnfinishedStream for a stream cut short or ended on an error."""
    return fmt.assemble(stream_bytes)


def replay(fmt: WireFormat, answer: dict, *, include_usage: bool, alt_sse: bool = True) -> bytes:
    """The stream the provider sends for `answer`, in its framing, ending as it ends. `include_usage`: the client
    asked for usage where it must ask (OpenAI chat and completions' `stream_options.include_usage`); elsewhere usage
    is always where the provider puts it. `alt_sse`: Gemini only, False for a client that streams without alt=sse."""
    if isinstance(fmt, Gemini):
        return fmt.replay(answer, include_usage=include_usage, alt_sse=alt_sse)
    return fmt.replay(answer, include_usage=include_usage)


def strip_usage(fmt: WireFormat, stream_bytes: bytes) -> bytes:
    """A stored stream without the usage the client did not ask for (OpenAI's usage chunk and `"usage":null`s);
    as is for formats that always report usage."""
    return fmt.strip_usage(stream_bytes)


def answer_from_entry(
    fmt: WireFormat,
    entry: bytes,
    *,
    entry_streamed: bool,
    client_streams: bool,
    include_usage: bool = False,
    alt_sse: bool = True,
) -> bytes:
    """The body to send for a cache hit: `entry` is what was stored (a whole stream when `entry_streamed`, else
    the JSON answer), `client_streams` whether this client asked for a stream. Raises UnfinishedStream, or
    ValueError for a stored answer that is not a JSON object: the entry is unusable (drop it, ask the provider)."""
    if not client_streams:
        return orjson.dumps(assemble(fmt, entry)) if entry_streamed else entry
    if not entry_streamed:
        answer = orjson.loads(entry)
        if not isinstance(answer, dict):
            raise ValueError("the stored answer is not a JSON object")
        return replay(fmt, answer, include_usage=include_usage, alt_sse=alt_sse)
    if isinstance(fmt, Gemini) and entry.lstrip().startswith(b"[") == alt_sse:  # stored in the other framing
        return replay(fmt, assemble(fmt, entry), include_usage=include_usage, alt_sse=alt_sse)
    return entry if include_usage else strip_usage(fmt, entry)


def media_type(fmt: WireFormat, streamed: bool, *, alt_sse: bool = True) -> str:
    """The Content-Type of an answer in `fmt`: JSON, an SSE stream, Ollama's NDJSON, or Gemini's JSON array."""
    if not streamed or (isinstance(fmt, Gemini) and not alt_sse):
        return "application/json"
    return "application/x-ndjson" if fmt.framing == "ndjson" else "text/event-stream"
