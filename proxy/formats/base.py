"""What every wire format answers, and the pieces they share: token counts, the two stream framings (SSE and
NDJSON), and reading an error body whatever its shape. One subclass of `WireFormat` per format lives beside
this module; nothing outside `proxy/formats/` parses a provider's JSON or SSE itself."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from ..records import Outcome
from . import parts

# Kept beside a response's own usage fields, for what a provider bills by but reports outside its usage object:
# the service tier (OpenAI reports it at the top level) and server-side tool calls counted from output items.
TIER_FIELD = "service_tier"
TOOL_CALLS_FIELD = "ingate_tool_calls"


@dataclass(frozen=True, slots=True)
class Tokens:
    """Usage in one convention whatever the provider's: `input` is every billed prompt token (cached ones
    included), `output` every generated token (reasoning included); the cache and reasoning counts say how many
    of those were which."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0  # every cache write; `cache_write_1h` says how many of them were one-hour writes
    reasoning: int = 0
    cache_write_1h: int = 0
    tier: str = ""  # the service tier the provider reports it billed ("" when it does not say)
    tools: tuple[tuple[str, int], ...] = ()  # server-side tool calls billed per call: (kind, count), sorted

    @property
    def total(self) -> int:
        return self.input + self.output

    @property
    def tool_calls(self) -> dict[str, int]:
        return dict(self.tools)


def count(value: Any) -> int:
    """A usage count as reported, or 0 for anything that is not a positive integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def detail(raw: dict, group: str, name: str) -> int:
    details = raw.get(group)
    return count(details.get(name)) if isinstance(details, dict) else 0


def tier_of(raw: dict, *names: str) -> str:
    for name in names:
        value = raw.get(name)
        if isinstance(value, str) and value:
            return value.strip().lower()[:32]
    return ""


def tool_counts(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((kind, n) for kind, n in counts.items() if n > 0))


def counted_tools(raw: dict) -> dict[str, int]:
    counted = raw.get(TOOL_CALLS_FIELD)
    if not isinstance(counted, dict):
        return {}
    return {str(kind): count(n) for kind, n in counted.items()}


def keep_usage(usage: dict[str, Any], value: Any) -> None:
    """Merge a usage object into what a response reported so far (streams report it in parts)."""
    if isinstance(value, dict):
        usage.update(value)


def keep_model(model: list[str], answered: Any) -> None:
    """Note the model that answered, the first time a response names it."""
    if isinstance(answered, str) and answered and not model:
        model.append(answered)


# --- framing ---------------------------------------------------------------------------------------


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One SSE event: `data` as JSON (or bytes as they are), with an `event:` line when the format names them."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


def ndjson_line(data: Any) -> bytes:
    return (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n"


def event_payload(line: bytes) -> bytes:
    """The JSON (or `[DONE]`) a stream line carries: SSE `data:` lines and NDJSON lines alike; b"" for the rest."""
    line = line.strip()
    if line.startswith(b"data:"):
        return line[5:].strip()
    return line if line[:1] in (b"{", b"[") else b""


class Events:
    """Splits a streamed body, chunk by chunk, into the payloads of its events (SSE or NDJSON alike)."""

    def __init__(self):
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        *lines, self._buffer = (self._buffer + chunk).split(b"\n")
        return [payload for payload in map(event_payload, lines) if payload]

    def flush(self) -> list[bytes]:
        line, self._buffer = self._buffer, b""
        payload = event_payload(line)
        return [payload] if payload else []


class UnfinishedStream(ValueError):
    """A stream that cannot be assembled into an answer: cut before the format's end, ended on an error, or not
    this format's stream at all. The response cache never stores such a stream."""


def stream_events(stream: bytes) -> list[Any]:
    """Every event of a whole stream as parsed JSON (OpenAI's `[DONE]` as the bytes it is), SSE or NDJSON alike;
    lines that are not events (comments, keep-alives, `event:` names) are left out."""
    events = Events()
    out: list[Any] = []
    for payload in [*events.feed(stream), *events.flush()]:
        if payload == b"[DONE]":
            out.append(payload)
            continue
        try:
            out.append(orjson.loads(payload))
        except ValueError:
            raise UnfinishedStream("the stream holds an event that is not JSON") from None
    return out


# --- the format --------------------------------------------------------------------------------------


class WireFormat:
    """One provider API's wire format. Instances are stateless singletons (see proxy/formats/__init__.py)."""

    name: ClassVar[str] = ""
    framing: ClassVar[str] = "sse"  # how its streams are framed: sse | ndjson
    # A chat of system messages alone is refused by the provider (it wants at least one turn).
    needs_turn: ClassVar[bool] = False
    # Every stream event repeats the usage so far: only the last one needs reading (see `interesting`).
    usage_in_last_event: ClassVar[bool] = False

    # --- requests

    def model(self, body: dict) -> str:
        model = body.get("model")
        return model if isinstance(model, str) else ""

    def streams(self, body: dict, endpoint: str) -> bool:
        return body.get("stream") is True

    def messages(self, body: dict) -> list:
        """The conversation's turns, in the format's own shape."""
        messages = body.get("messages")
        return messages if isinstance(messages, list) else []

    def system(self, body: dict) -> Any:
        """The system prompt, where the format keeps it apart from the turns (None when it has none)."""
        return None

    def tools(self, body: dict) -> list[str]:
        tools = body.get("tools")
        if not isinstance(tools, list):
            return []
        return [
            t.get("name") or (t.get("function") or {}).get("name") or t.get("type")
            for t in tools
            if isinstance(t, dict)
        ]

    def chat_messages(self, body: dict) -> list[dict]:
        """The request's conversation as portable OpenAI-style chat messages (a dataset item's input); OpenAI's
        reasoning models call the system role "developer", which becomes "system"."""
        return [
            {**m, "role": "system"} if m.get("role") == "developer" else m
            for m in self.messages(body)
            if isinstance(m, dict)
        ]

    def transcript(self, body: dict) -> list[dict]:
        """The request's conversation for a person to read (proxy/formats/parts.py): OpenAI's chat shape here,
        which Azure, the OpenAI-compatible providers and Ollama's chat share."""
        return [self._turn(m) for m in self.messages(body) if isinstance(m, dict)]

    def answer_transcript(self, data: Any) -> list[dict]:
        """A whole (not streamed) answer's turns: each choice's message, or a completion's text."""
        turns = []
        for choice in (data.get("choices") if isinstance(data, dict) else None) or []:
            if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
                turns.append(self._turn({"role": "assistant", **choice["message"]}))
            elif isinstance(choice, dict) and isinstance(choice.get("text"), str):
                turns.append(parts.turn("assistant", [parts.text(choice["text"])]))
        return turns

    def _turn(self, message: dict) -> dict:
        role = message.get("role") or "user"
        shown = parts.openai_content(message.get("content"))
        if role in ("tool", "function"):
            shown = [parts.tool_result(message.get("tool_call_id"), shown, message.get("name"))]
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                shown.append(parts.tool_call(function.get("name"), call.get("id"), function.get("arguments")))
        legacy = message.get("function_call")
        if isinstance(legacy, dict):
            shown.append(parts.tool_call(legacy.get("name"), "", legacy.get("arguments")))
        return parts.turn(role, shown)

    def prompt_fields(self, messages: list[dict], text: str) -> dict[str, Any]:
        """The request fields a rendered prompt becomes: `messages` OpenAI-style, or `text` when the prompt is a
        text template."""
        return {"messages": messages} if messages else {"prompt": text}

    def with_prompt(self, body: dict, messages: list[dict], text: str) -> dict:
        """`body` with a rendered prompt put before its own turns (and before its own system prompt)."""
        fields = self.prompt_fields(messages, text)
        merged = dict(body)
        turns = fields.get("messages") or ([{"role": "user", "content": text}] if text or not messages else [])
        merged["messages"] = turns + list(body.get("messages") or [])
        if "system" in fields:
            client_system = body.get("system")
            merged["system"] = fields["system"] + (
                f"\n\n{client_system}" if isinstance(client_system, str) and client_system else ""
            )
        return merged

    def chat_request(
        self,
        model: str,
        messages: list[dict],
        params: dict[str, Any],
        stream: bool,
        *,
        provider: str,
        azure_api_version: str = "",
    ) -> tuple[str, str, dict]:
        """(path, query, body) of a chat request for Ingate's own calls. `messages` are OpenAI-style."""
        raise NotImplementedError

    # --- errors

    error_types: ClassVar[dict[int, str]] = {}

    def error_body(self, status: int, code: str, message: str) -> bytes:
        raise NotImplementedError

    def read_error(self, body: bytes, content_encoding: str = "") -> tuple[str, str]:
        """(type, message) from an error body, whatever its shape, for the record; ("", "") if unreadable."""
        try:
            if content_encoding.strip().lower() in ("gzip", "x-gzip", "deflate"):
                body = zlib.decompress(body, 47)
            parsed = orjson.loads(body)
        except (ValueError, zlib.error):
            return "", body[:500].decode("utf-8", errors="replace")
        return self.error_of(parsed)

    def error_of(self, data: Any) -> tuple[str, str]:
        """(type, message) from a parsed error body: OpenAI, Anthropic and Gemini nest an object, Ollama a string."""
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, str):
            return "", error[:2000]
        if not isinstance(error, dict):
            return "", ""
        kind = error.get("type") or error.get("status") or error.get("code") or ""
        return str(kind)[:64], str(error.get("message") or "")[:2000]

    # --- responses

    def interesting(self, event: bytes, have_model: bool) -> bool:
        """Whether a stream event (its JSON, unparsed) can carry usage or the answering model not yet known:
        the others are passed over without parsing."""
        return (b'"usage"' in event and b'"usage":null' not in event) or (not have_model and b'"model' in event)

    def collect(self, data: dict, usage: dict[str, Any], model: list[str]) -> None:
        """Take the raw usage fields (into `usage`) and the answering model (into `model`, once) from a whole
        response or one stream event."""

    def text(self, data: Any) -> str:
        """The answer text of a whole response, or what one stream event adds to it."""
        return ""

    def finished(self, event: Any) -> tuple[str, str]:
        """Judged from a stream's last event: ("", "") when it ended as the format ends a stream,
        ("upstream_cut", why) when it just stopped, ("upstream_error", message) when it ended on an error."""
        if isinstance(event, dict) and event.get("type") == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else event
            return Outcome.UPSTREAM_ERROR, str(error.get("message") or "the stream ended on an error event")[:2000]
        return self.ended(event)

    def ended(self, event: Any) -> tuple[str, str]:
        return "", ""

    def tokens(self, raw: dict) -> Tokens:
        """The token counts of the raw usage fields `collect` gathered."""
        raise NotImplementedError

    def stream_error(self, kind: str, message: str) -> bytes:
        """The event a provider ends a stream with when it fails midway (each format has its own)."""
        return self.event({"error": {"message": message, "type": kind or "api_error"}})

    def event(self, data: Any, name: str | None = None) -> bytes:
        """One stream event in this format's framing."""
        return ndjson_line(data) if self.framing == "ndjson" else sse_event(data, name)

    # --- the response cache (proxy/formats/replay.py, proxy/response_cache/)

    # Top-level request fields that do not change the answer: left out of a response cache key.
    cache_neutral_fields: ClassVar[frozenset[str]] = frozenset({"stream"})
    # The temperature a request samples at when it sets none (every provider's default is positive).
    default_temperature: ClassVar[float] = 1.0

    def temperature(self, body: dict) -> float:
        """The temperature the request samples at (the provider's default when it sets none)."""
        value = body.get("temperature")
        return self._temperature(value)

    def _temperature(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self.default_temperature
        return float(value)

    def uncacheable(self, body: dict, *, allow_files: bool) -> str:
        """Why an answer to this request must not be cached ("" when it may be): "files" or "audio" when it
        carries them (unless allowed), or a format's own reason (an answer built on server state that changes)."""
        return ""

    def checked_events(self, stream: bytes) -> list[Any]:
        """The events of a whole stream that ended as the format ends one; UnfinishedStream otherwise."""
        events = stream_events(stream)
        if not events:
            raise UnfinishedStream("the stream holds no event")
        for event in events:
            if isinstance(event, dict) and (event.get("type") == "error" or event.get("error")):
                raise UnfinishedStream("the stream ended on an error")
        outcome, why = self.finished(events[-1])
        if outcome:
            raise UnfinishedStream(why)
        return events

    def assemble(self, stream: bytes) -> dict:
        """The answer a whole stream (as the provider sent it) adds up to, as the provider answers the same
        request without streaming. Raises UnfinishedStream for a stream that did not end as the format ends one."""
        raise NotImplementedError

    def replay(self, answer: dict, *, include_usage: bool) -> bytes:
        """The stream the provider would send for a whole answer, in its own framing and with its own end; usage
        where the provider puts it (`include_usage` matters only where the client must ask for it: OpenAI)."""
        raise NotImplementedError

    def strip_usage(self, stream: bytes) -> bytes:
        """A whole stream without the usage a client must ask for (as is where usage is always reported)."""
        return stream

    # --- translation between formats (proxy/formats/translate.py)

    # Why a model stopped, from this format's word to the shared one (end, stop_sequence, length, tool_use,
    # refusal) and back; `stop_reason_of` picks the first own word for a shared one.
    stop_reasons: ClassVar[dict[str, str]] = {}

    def shared_stop(self, reason: Any) -> str:
        """The shared word for this format's stop reason ("end" for anything it does not know)."""
        return self.stop_reasons.get(reason, "end") if isinstance(reason, str) else "end"

    def stop_reason_of(self, shared: str) -> str:
        """This format's word for a shared stop reason."""
        for own, word in self.stop_reasons.items():
            if word == shared:
                return own
        return next(iter(self.stop_reasons), "")

    def usage_fields(self, tokens: Tokens) -> dict[str, Any]:
        """This format's usage object for token counts in the shared convention (the inverse of `tokens`)."""
        raise NotImplementedError


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()
