"""Anthropic's Messages API (and the legacy `/v1/complete`): `system` apart from the turns, named SSE events
from `message_start` to `message_stop`, usage split over `message_start` and `message_delta`, cache reads and
writes counted outside `input_tokens`."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from ..records import Outcome
from .base import Tokens, WireFormat, count, detail, dumps, keep_model, keep_usage, sse_event, tier_of, tool_counts

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
