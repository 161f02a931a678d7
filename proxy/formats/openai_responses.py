"""OpenAI's Responses API (`/v1/responses`): `input` and `instructions` instead of messages, typed stream events
(`response.output_text.delta`, … `response.completed`), and server-side tools as output items."""

from __future__ import annotations

from typing import Any

from ..records import Outcome
from .base import (
    TIER_FIELD,
    TOOL_CALLS_FIELD,
    Tokens,
    count,
    counted_tools,
    detail,
    keep_model,
    keep_usage,
    tier_of,
    tool_counts,
)
from .openai_chat import OpenAIChat

# Events a Responses stream ends with.
ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Output item types billed per call, by the tool kind they are recorded as.
BILLED_OUTPUT_ITEMS = {"web_search_call": "web_search", "file_search_call": "file_search"}


def _tool_calls(output: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in output:
        kind = BILLED_OUTPUT_ITEMS.get(item.get("type")) if isinstance(item, dict) else None
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


class OpenAIResponses(OpenAIChat):
    name = "openai-responses"

    def messages(self, body: dict) -> list:
        items = body.get("input")
        if isinstance(items, str):
            return [{"role": "user", "content": items}]
        return items if isinstance(items, list) else []

    def system(self, body: dict) -> Any:
        return body.get("instructions")

    def chat_messages(self, body: dict) -> list[dict]:
        messages = [m for m in super().chat_messages(body) if "role" in m]  # items, not tool calls
        instructions = body.get("instructions")
        if isinstance(instructions, str) and instructions:
            messages.insert(0, {"role": "system", "content": instructions})
        return messages

    def with_prompt(self, body: dict, messages: list[dict], text: str) -> dict:
        merged = dict(body)
        prompt = messages or [{"role": "user", "content": text}]
        merged["input"] = prompt + self.messages(body)
        return merged

    def collect(self, data: dict, usage: dict[str, Any], model: list[str]) -> None:
        inner = data.get("response")  # stream events carry the response; a whole answer is one
        response = inner if isinstance(inner, dict) else data
        keep_usage(usage, response.get("usage"))
        tier = response.get("service_tier")
        if isinstance(tier, str) and tier:
            usage[TIER_FIELD] = tier
        output = response.get("output")
        if isinstance(output, list) and output:
            calls = _tool_calls(output)
            if calls:
                usage[TOOL_CALLS_FIELD] = calls
        keep_model(model, response.get("model"))

    def text(self, data: Any) -> str:
        if not isinstance(data, dict):
            return ""
        if data.get("type") == "response.output_text.delta":
            return data.get("delta") or ""
        out = []
        for item in data.get("output") or []:
            if isinstance(item, dict) and item.get("type") == "message":
                out.extend(
                    part.get("text") or ""
                    for part in item.get("content") or []
                    if isinstance(part, dict) and part.get("type") == "output_text"
                )
        return "".join(out)

    def finished(self, event: Any) -> tuple[str, str]:
        return super(OpenAIChat, self).finished(event)  # no [DONE]: the typed events say how it ended

    def ended(self, event: Any) -> tuple[str, str]:
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str) or kind in ENDS:
            return "", ""
        if kind.startswith("response."):
            return Outcome.UPSTREAM_CUT, "ended the stream without response.completed"
        return "", ""

    def tokens(self, raw: dict) -> Tokens:
        return Tokens(
            count(raw.get("input_tokens")),
            count(raw.get("output_tokens")),
            detail(raw, "input_tokens_details", "cached_tokens"),
            0,
            detail(raw, "output_tokens_details", "reasoning_tokens"),
            tier=tier_of(raw, TIER_FIELD),
            tools=tool_counts(counted_tools(raw)),
        )
