"""Anthropic's Messages API (and the legacy `/v1/complete`): `system` apart from the turns, named SSE events
from `message_start` to `message_stop`, usage split over `message_start` and `message_delta`, cache reads and
writes counted outside `input_tokens`."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import orjson

from ..records import Outcome
from . import parts
from .base import (
    Tokens,
    UnfinishedStream,
    WireFormat,
    count,
    detail,
    dumps,
    keep_model,
    keep_usage,
    sse_event,
    tier_of,
    tool_counts,
)

# Events of a Messages stream that are not its end.
EVENTS = frozenset(
    {"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "ping"}
)
# usage.server_tool_use counters, by the tool kind Ingate records them as.
# The API version a translated request is sent with (the `anthropic-version` header every request needs).
API_VERSION = "2023-06-01"
# The error types the Messages API reports (an error event's `error.type`).
ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
    }
)
# Blocks whose `input` streams as input_json_delta.
INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
# Usage counts message_delta carries (cumulative); message_start carries the rest.
DELTA_USAGE = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
SERVER_TOOLS = {
    "web_search_requests": "web_search",
    "web_fetch_requests": "web_fetch",
    "code_execution_requests": "code_execution",
}


class AnthropicMessages(WireFormat):
    name = "anthropic"
    needs_turn = True  # the Messages API wants at least one message besides `system`
    error_types: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        502: "api_error",
        504: "timeout_error",
    }

    stop_reasons: ClassVar[dict[str, str]] = {
        "end_turn": "end",
        "stop_sequence": "stop_sequence",
        "max_tokens": "length",
        "tool_use": "tool_use",
        "refusal": "refusal",
        "pause_turn": "end",
        "model_context_window_exceeded": "length",
    }

    def system(self, body: dict) -> Any:
        return body.get("system")

    def chat_messages(self, body: dict) -> list[dict]:
        messages = super().chat_messages(body)
        system = body.get("system")  # a string, or a list of text blocks (as Claude Code sends)
        if isinstance(system, list):
            system = "\n\n".join(b.get("text", "") for b in system if isinstance(b, dict) and b.get("type") == "text")
        if isinstance(system, str) and system:
            messages.insert(0, {"role": "system", "content": system})
        return messages

    def transcript(self, body: dict) -> list[dict]:
        turns = []
        system = body.get("system")
        if system:
            turns.append(parts.turn("system", _blocks(system)))
        for message in self.messages(body):
            if isinstance(message, dict):
                turns.append(parts.turn(message.get("role"), _blocks(message.get("content"))))
        return turns

    def answer_transcript(self, data: Any) -> list[dict]:
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            return []
        return [parts.turn(data.get("role") or "assistant", _blocks(data["content"]))]

    def prompt_fields(self, messages: list[dict], text: str) -> dict[str, Any]:
        system = [m["content"] for m in messages if m.get("role") == "system"]
        turns = [m for m in messages if m.get("role") != "system"]
        if not turns and text:
            turns = [{"role": "user", "content": text}]
        fields: dict[str, Any] = {"messages": turns}
        if system:
            fields["system"] = "\n\n".join(s if isinstance(s, str) else json.dumps(s) for s in system)
        return fields

    def chat_request(self, model, messages, params, stream, *, provider, azure_api_version=""):
        system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
        turns = [m for m in messages if m.get("role") != "system"]
        body = {"model": model, "max_tokens": params.pop("max_tokens", 1024), "messages": turns, **params}
        if system:
            body["system"] = system
        if stream:
            body["stream"] = True
        return "/v1/messages", "", body

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return dumps(
            {"type": "error", "error": {"type": self.error_types.get(status, "api_error"), "message": message}}
        )

    def collect(self, data: dict, usage: dict[str, Any], model: list[str]) -> None:
        message = data.get("message")  # message_start carries the message, with the input side of usage
        if isinstance(message, dict):
            self.collect(message, usage, model)
        keep_usage(usage, data.get("usage"))  # a whole message, or message_delta's cumulative counts
        keep_model(model, data.get("model"))

    def text(self, data: Any) -> str:
        if not isinstance(data, dict):
            return ""
        kind = data.get("type")
        if kind == "content_block_delta":
            return (data.get("delta") or {}).get("text") or ""
        if kind == "completion":  # legacy /v1/complete
            return data.get("completion") or ""
        return "".join(block.get("text", "") for block in data.get("content") or [] if isinstance(block, dict))

    def ended(self, event: Any) -> tuple[str, str]:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind in EVENTS:
            return Outcome.UPSTREAM_CUT, "ended the stream without message_stop"
        return "", ""

    def tokens(self, raw: dict) -> Tokens:
        read = count(raw.get("cache_read_input_tokens"))
        write = count(raw.get("cache_creation_input_tokens"))
        # cache_creation splits the writes by lifetime; its parts add up to cache_creation_input_tokens.
        write_1h = detail(raw, "cache_creation", "ephemeral_1h_input_tokens")
        write = max(write, detail(raw, "cache_creation", "ephemeral_5m_input_tokens") + write_1h)
        server = raw.get("server_tool_use")
        tools = (
            {kind: count(server.get(field)) for field, kind in SERVER_TOOLS.items()} if isinstance(server, dict) else {}
        )
        return Tokens(
            count(raw.get("input_tokens")) + read + write,
            count(raw.get("output_tokens")),
            read,
            write,
            0,
            write_1h,
            tier_of(raw, "service_tier"),
            tool_counts(tools),
        )

    def usage_fields(self, tokens: Tokens) -> dict[str, Any]:
        # input_tokens leaves out cache reads and writes, which are counted apart.
        return {
            "input_tokens": max(tokens.input - tokens.cache_read - tokens.cache_write, 0),
            "output_tokens": tokens.output,
            "cache_creation_input_tokens": tokens.cache_write,
            "cache_read_input_tokens": tokens.cache_read,
        }

    def stream_event(self, data: dict) -> bytes:
        """One event of a Messages stream: named after its `type`, as the API names them."""
        return sse_event(data, data["type"])

    def stream_error(self, kind: str, message: str) -> bytes:
        """An `error` event in the middle of a Messages stream (`kind` an Anthropic error type, else api_error)."""
        error = {"type": kind if kind in ERROR_TYPES else "api_error", "message": message}
        return self.stream_event({"type": "error", "error": error})

    # --- the response cache

    # metadata: who asked; service_tier: price and speed; stream: how the answer is delivered.
    cache_neutral_fields: ClassVar[frozenset[str]] = frozenset({"metadata", "service_tier", "stream"})

    def uncacheable(self, body: dict, *, allow_files: bool) -> str:
        if allow_files:
            return ""
        for message in self.messages(body):
            content = message.get("content") if isinstance(message, dict) else None
            reason = _carried_files(content)
            if reason:
                return reason
        return ""

    def assemble(self, stream: bytes) -> dict:
        message: dict[str, Any] | None = None
        usage: dict[str, Any] = {}
        blocks: dict[int, dict] = {}
        inputs: dict[int, str] = {}
        for event in self.checked_events(stream):
            kind = event.get("type") if isinstance(event, dict) else None
            if kind == "message_start" and isinstance(event.get("message"), dict):
                message = dict(event["message"])
                usage = dict(message.get("usage") or {})
            elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
                index = event.get("index", len(blocks))
                blocks[index] = dict(event["content_block"])
                if blocks[index].get("type") in INPUT_BLOCKS:
                    inputs[index] = ""
            elif kind == "content_block_delta" and event.get("index") in blocks:
                _add_delta(blocks[event["index"]], inputs, event["index"], event.get("delta") or {})
            elif kind == "content_block_stop" and event.get("index") in inputs:
                blocks[event["index"]]["input"] = _input(inputs.pop(event["index"]))
            elif kind == "message_delta" and message is not None:
                message.update(event.get("delta") or {})
                usage.update((k, v) for k, v in (event.get("usage") or {}).items() if v is not None)
        if message is None:
            raise UnfinishedStream("the stream has no message_start")
        message["content"] = [blocks[i] for i in sorted(blocks)]
        message["usage"] = usage
        return message

    def replay(self, answer: dict, *, include_usage: bool) -> bytes:
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        # message_start has the input side and the first output token; message_delta the final counts.
        start_usage = {**usage, "output_tokens": min(count(usage.get("output_tokens")), 1)}
        start = {**answer, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
        out = [self.stream_event({"type": "message_start", "message": start})]
        for index, block in enumerate(answer.get("content") or []):
            if isinstance(block, dict):
                out.extend(self.stream_event(event) for event in _block_events(index, block))
        delta = {"stop_reason": answer.get("stop_reason"), "stop_sequence": answer.get("stop_sequence")}
        if answer.get("container") is not None:
            delta["container"] = answer["container"]
        end_usage = {name: usage[name] for name in DELTA_USAGE if name in usage}
        if "server_tool_use" in usage:
            end_usage["server_tool_use"] = usage["server_tool_use"]
        out.append(self.stream_event({"type": "message_delta", "delta": delta, "usage": end_usage}))
        out.append(self.stream_event({"type": "message_stop"}))
        return b"".join(out)


def _blocks(content: Any) -> list[dict]:
    """Messages content (a string, or blocks) as transcript parts (proxy/formats/parts.py)."""
    if isinstance(content, str):
        return [parts.text(content)] if content else []
    shown = []
    for block in content if isinstance(content, list) else [content]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            shown.append(parts.text(block.get("text") or ""))
        elif kind == "image":
            source = block.get("source") if isinstance(block.get("source"), dict) else {}
            if source.get("type") == "url":
                shown.append(parts.image(source.get("url")))
            else:
                shown.append(parts.image_data(source.get("media_type"), source.get("data")))
        elif kind in INPUT_BLOCKS:
            shown.append(parts.tool_call(block.get("name"), block.get("id"), block.get("input")))
        elif kind == "tool_result" or (isinstance(kind, str) and kind.endswith("_tool_result")):
            shown.append(parts.tool_result(block.get("tool_use_id"), _blocks(block.get("content"))))
        elif kind == "thinking":
            shown.append(parts.reasoning(block.get("thinking") or ""))
        elif block is not None:
            shown.append(parts.other(kind, block))
    return shown


def _carried_files(content: Any) -> str:
    """Why a turn's content must not be cached: "files" for a document (other than plain text) or an uploaded file,
    "" otherwise (Claude takes no audio); tool results are looked into."""
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        source = block.get("source") if isinstance(block.get("source"), dict) else {}
        if kind == "container_upload" or source.get("type") == "file" or "file_id" in source:
            return "files"
        if kind == "document" and source.get("type") not in ("text", "content"):
            return "files"
        if kind == "tool_result":
            reason = _carried_files(block.get("content"))
            if reason:
                return reason
    return ""


def _add_delta(block: dict, inputs: dict[int, str], index: int, delta: dict) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = (block.get("text") or "") + (delta.get("text") or "")
    elif kind == "input_json_delta" and index in inputs:
        inputs[index] += delta.get("partial_json") or ""
    elif kind == "thinking_delta":
        block["thinking"] = (block.get("thinking") or "") + (delta.get("thinking") or "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature")
    elif kind == "citations_delta":
        citations = block.get("citations")
        block["citations"] = [*(citations if isinstance(citations, list) else []), delta.get("citation")]


def _input(text: str) -> Any:
    if not text.strip():
        return {}
    try:
        return orjson.loads(text)
    except ValueError:
        raise UnfinishedStream("a tool_use block's input is not JSON") from None


def _block_events(index: int, block: dict) -> list[dict]:
    """The content_block_start, deltas and content_block_stop a Messages stream sends one block in."""
    kind = block.get("type")
    deltas: list[dict] = []
    if kind == "text":
        start = {**block, "text": ""}
        if "citations" in block:
            start["citations"] = []
        if block.get("text"):
            deltas.append({"type": "text_delta", "text": block["text"]})
        deltas.extend({"type": "citations_delta", "citation": c} for c in block.get("citations") or [])
    elif kind == "thinking":
        start = {**block, "thinking": "", "signature": ""}
        if block.get("thinking"):
            deltas.append({"type": "thinking_delta", "thinking": block["thinking"]})
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind in INPUT_BLOCKS:
        start = {**block, "input": {}}
        if block.get("input"):
            deltas.append({"type": "input_json_delta", "partial_json": orjson.dumps(block["input"]).decode()})
    else:  # redacted thinking, server tool results: whole in their start
        start = block
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": index},
    ]
