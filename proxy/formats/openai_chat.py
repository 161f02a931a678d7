"""OpenAI's chat completions (and legacy completions, embeddings, moderations, models): the format Azure
OpenAI and every OpenAI-compatible provider (Groq, Mistral, DeepSeek, vLLM, …) speak too."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from ..records import Outcome
from .base import (
    TIER_FIELD,
    Tokens,
    WireFormat,
    count,
    counted_tools,
    detail,
    dumps,
    keep_model,
    keep_usage,
    sse_event,
    tier_of,
    tool_counts,
)

DONE = b"[DONE]"


class OpenAIChat(WireFormat):
    name = "openai"
    error_types: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
        502: "upstream_error",
        504: "upstream_timeout",
    }

    stop_reasons: ClassVar[dict[str, str]] = {
        "stop": "end",
        "length": "length",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
        "function_call": "tool_use",
    }

    def system(self, body: dict) -> Any:
        return None  # system (and developer) prompts are turns of `messages` here

    def chat_request(self, model, messages, params, stream, *, provider, azure_api_version=""):
        body = {"model": model, "messages": messages, **params}
        if stream:
            body["stream"] = True
        if provider == "azure":
            return f"/openai/deployments/{model}/chat/completions", f"api-version={azure_api_version}", body
        return "/v1/chat/completions", "", body

    def error_body(self, status: int, code: str, message: str) -> bytes:
        error = {"message": message, "type": self.error_types.get(status, "api_error"), "param": None, "code": code}
        return dumps({"error": error})

    def collect(self, data: dict, usage: dict[str, Any], model: list[str]) -> None:
        keep_usage(usage, data.get("usage"))
        tier = data.get("service_tier")
        if isinstance(tier, str) and tier:  # what the request was billed as, on every chunk
            usage[TIER_FIELD] = tier
        keep_model(model, data.get("model"))

    def text(self, data: Any) -> str:
        if not isinstance(data, dict):
            return ""
        out = []
        for choice in data.get("choices") or []:
            if isinstance(choice, dict):
                if "delta" in choice or "message" in choice:
                    part = choice.get("delta") if "delta" in choice else choice.get("message")
                    out.append(((part or {}).get("content")) or "")
                else:  # legacy completions
                    out.append(choice.get("text") or "")
        return "".join(out)

    def finished(self, event: Any) -> tuple[str, str]:
        if event == DONE:
            return "", ""
        return super().finished(event)

    def ended(self, event: Any) -> tuple[str, str]:
        if isinstance(event, dict) and "choices" in event:
            return Outcome.UPSTREAM_CUT, "ended the stream without data: [DONE]"
        return "", ""

    def usage_fields(self, tokens: Tokens) -> dict[str, Any]:
        # prompt_tokens counts every prompt token, cached ones (and, translated, cache writes) included.
        usage: dict[str, Any] = {
            "prompt_tokens": tokens.input,
            "completion_tokens": tokens.output,
            "total_tokens": tokens.total,
            "prompt_tokens_details": {"cached_tokens": tokens.cache_read},
        }
        if tokens.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": tokens.reasoning}
        return usage

    def done_event(self) -> bytes:
        """The event that ends a chat stream."""
        return sse_event(DONE)

    def stream_error(self, kind: str, message: str) -> bytes:
        """An error event in the middle of a chat stream: a chunk holding only `error`, which the SDKs raise."""
        return sse_event({"error": {"message": message, "type": kind or "api_error", "param": None, "code": None}})

    def tokens(self, raw: dict) -> Tokens:
        return Tokens(
            count(raw.get("prompt_tokens")),
            count(raw.get("completion_tokens")),
            detail(raw, "prompt_tokens_details", "cached_tokens"),
            0,
            detail(raw, "completion_tokens_details", "reasoning_tokens"),
            tier=tier_of(raw, TIER_FIELD),
            tools=tool_counts(counted_tools(raw)),
        )


class HiddenUsage:
    """For a chat stream whose client did not ask for usage but the gateway did: drop the usage-only final chunk
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


def ask_for_usage(body: bytes, parsed: dict) -> bytes | None:
    """The body of a chat stream with `stream_options.include_usage` added, or None when it already asks (or
    cannot be asked). Usage is otherwise never reported on a stream."""
    options = parsed.get("stream_options")
    if options is None:
        # Prepending a key leaves every message byte where it was.
        return b'{"stream_options":{"include_usage":true},' + body.lstrip()[1:]
    if isinstance(options, dict) and not options.get("include_usage"):
        return orjson.dumps({**parsed, "stream_options": {**options, "include_usage": True}})
    return None
