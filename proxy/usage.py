"""Reads usage off a response as it passes, without holding the stream back: decompresses on the side when
the upstream compressed it, splits SSE / NDJSON lines, and keeps the raw usage fields each provider sends.
Normalising them into tokens and cost is the observability app's job."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

# A non-streamed body larger than this is not parsed for usage (e.g. base64 images); it is still relayed.
_MAX_PARSED_BODY = 4 * 1024 * 1024
# Lines that can carry usage or the answering model; others are skipped without parsing.
_INTERESTING = (b"usage", b"Metadata", b"eval_count", b'"model', b"modelVersion")

# How a streamed format says it is finished, judged from its last event: OpenAI chat and completions (Azure
# and the compatible providers too) end with `data: [DONE]`; the Responses API with response.completed (or
# .incomplete / .failed); Anthropic with message_stop; Ollama's NDJSON with "done": true; Gemini's SSE has no
# terminator, its last chunk carries a finishReason. A stream whose format is not recognised is not judged.
_DONE = b"[DONE]"
_RESPONSES_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_ANTHROPIC_EVENTS = frozenset(
    {"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "ping"}
)


# Kept beside a response's own usage fields, for what a provider bills by but reports outside its usage object:
# OpenAI's top-level service_tier (what the request was billed as: default, flex, priority), and the server-side
# tool calls of a Responses answer, counted from its output items ({"web_search": 2}).
TIER_FIELD = "service_tier"
TOOL_CALLS_FIELD = "ingate_tool_calls"
# Output item types of the Responses API that are billed per call, by the tool kind they are recorded as.
_BILLED_OUTPUT_ITEMS = {"web_search_call": "web_search", "file_search_call": "file_search"}


def _tool_calls(output: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in output:
        kind = _BILLED_OUTPUT_ITEMS.get(item.get("type")) if isinstance(item, dict) else None
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _collect(obj: Any, usage: dict[str, Any], model: list[str]) -> None:
    if not isinstance(obj, dict):
        return
    for nested in ("message", "response"):  # Anthropic message_start, OpenAI response.completed
        inner = obj.get(nested)
        if isinstance(inner, dict):
            _collect(inner, usage, model)
    for name in ("usage", "usageMetadata"):  # OpenAI, Anthropic, Azure, compatible; Gemini
        value = obj.get(name)
        if isinstance(value, dict):
            usage.update(value)
    tier = obj.get("service_tier")
    if isinstance(tier, str) and tier:  # OpenAI chat chunks and Responses carry it at the top level
        usage[TIER_FIELD] = tier
    output = obj.get("output")
    if isinstance(output, list) and output:
        calls = _tool_calls(output)
        if calls:
            usage[TOOL_CALLS_FIELD] = calls
    for name in ("prompt_eval_count", "eval_count"):  # Ollama's final line
        if name in obj:
            usage[name] = obj[name]
    answered = obj.get("model") or obj.get("modelVersion")
    if isinstance(answered, str) and answered and not model:
        model.append(answered)


class UsageTap:
    """`keep`: also keep up to this many bytes of the decoded response, for orgs that store bodies."""

    def __init__(self, content_type: str, content_encoding: str, keep: int = 0):
        self.streamed = "event-stream" in content_type or "ndjson" in content_type
        self._json = "json" in content_type
        encoding = content_encoding.strip().lower()
        # wbits 47: accept a gzip or zlib header (32 + 15); raw deflate streams use -15.
        self._inflate = zlib.decompressobj(47) if encoding in ("gzip", "x-gzip", "deflate") else None
        self._readable = encoding in ("", "identity", "gzip", "x-gzip", "deflate")
        self._pending = b""
        self._size = 0
        self.usage: dict[str, Any] = {}
        self._model: list[str] = []
        self._keep = keep
        self.kept = bytearray()
        self.truncated = False
        self._last: bytes | None = None  # the stream's last event, for how it ended

    @property
    def model(self) -> str:
        return self._model[0] if self._model else ""

    def feed(self, chunk: bytes) -> None:
        if not self._readable:
            return
        try:
            data = self._inflate.decompress(chunk) if self._inflate else chunk
        except zlib.error:
            self._readable = False
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        if self._keep:
            room = self._keep - len(self.kept)
            self.kept += data[:room]
            self.truncated = self.truncated or len(data) > room
        if self.streamed:
            self._lines(data)
        elif self._json:
            self._size += len(data)
            if self._size <= _MAX_PARSED_BODY:
                self._pending += data

    def _lines(self, data: bytes) -> None:
        buffer = self._pending + data
        *lines, self._pending = buffer.split(b"\n")
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if line.startswith(b"data:"):
            line = line[5:]
        line = line.strip()
        if line[:1] in (b"{", b"["):
            self._last = line
        if not line.startswith(b"{") or not any(marker in line for marker in _INTERESTING):
            return
        try:
            _collect(orjson.loads(line), self.usage, self._model)
        except ValueError:
            pass  # a provider's odd line is not the gateway's problem; the client got it untouched

    def finish(self) -> None:
        if not self._readable:
            return
        if self._inflate is not None:
            try:
                tail = self._inflate.flush()
            except zlib.error:
                return
            if tail:
                self._take(tail)
        if self.streamed:
            if self._pending:
                self._line(self._pending)
        elif self._pending and self._size <= _MAX_PARSED_BODY:
            try:
                _collect(orjson.loads(self._pending), self.usage, self._model)
            except ValueError:
                pass
        self._pending = b""


    def unfinished(self) -> tuple[str, str]:
        """After finish(), for a stream that ended without its format's end: ("upstream_cut", why) when it
        just stopped, ("upstream_error", the message) when it ended on an error event; ("", "") otherwise."""
        if not self.streamed or not self._readable:
            return "", ""
        last = self._last
        if last is None:
            return "upstream_cut", "ended the stream before sending any event"
        if last == _DONE:
            return "", ""
        try:
            event = orjson.loads(last)
        except ValueError:
            return "upstream_cut", "ended the stream in the middle of an event"
        if not isinstance(event, dict):
            return "", ""
        kind = event.get("type")
        if kind == "error":  # Anthropic and the Responses API report a failure mid-stream this way
            error = event.get("error") if isinstance(event.get("error"), dict) else event
            return "upstream_error", str(error.get("message") or "the stream ended on an error event")[:2000]
        if isinstance(kind, str) and (kind in _RESPONSES_ENDS or kind == "message_stop"):
            return "", ""
        if isinstance(kind, str) and kind.startswith("response."):
            return "upstream_cut", "ended the stream without response.completed"
        if kind in _ANTHROPIC_EVENTS:
            return "upstream_cut", "ended the stream without message_stop"
        if "choices" in event:
            return "upstream_cut", "ended the stream without data: [DONE]"
        candidates = event.get("candidates")
        if isinstance(candidates, list):
            finished = any(isinstance(c, dict) and c.get("finishReason") for c in candidates)
            return ("", "") if finished else ("upstream_cut", "ended the stream without a finishReason")
        if "done" in event:
            return ("", "") if event["done"] is True else ("upstream_cut", 'ended the stream without "done": true')
        return "", ""


class HiddenUsage:
    """For a stream whose client did not ask for usage but the gateway did: drop the usage-only final chunk
    and the `"usage":null` OpenAI then adds to every chunk, so the client gets what it asked for."""

    def __init__(self):
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._buffer + chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:  # hold a partial event until its end arrives
            self._buffer = data
            return b""
        complete, self._buffer = data[: cut + 2], data[cut + 2 :]
        if b'"usage"' not in complete:
            return complete
        events = complete.split(b"\n\n")[:-1]
        kept = [e for e in events if not (b'"choices":[]' in e and b'"usage":{' in e)]
        return b"".join(e.replace(b',"usage":null', b"") + b"\n\n" for e in kept)

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def provider_error(body: bytes, content_encoding: str = "") -> tuple[str, str]:
    """(type, message) from a provider's error body, whatever its shape, for the record; ("", "") if unreadable."""
    try:
        if content_encoding.strip().lower() in ("gzip", "x-gzip", "deflate"):
            body = zlib.decompress(body, 47)
        parsed = orjson.loads(body)
    except (ValueError, zlib.error):
        return "", body[:500].decode("utf-8", errors="replace")
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, str):  # Ollama
        return "", error[:2000]
    if not isinstance(error, dict):
        return "", ""
    kind = error.get("type") or error.get("status") or error.get("code") or ""  # OpenAI/Anthropic, Gemini
    return str(kind)[:64], str(error.get("message") or "")[:2000]
