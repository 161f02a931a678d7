"""OpenAI's Responses API (`/v1/responses`): `input` and `instructions` instead of messages, typed stream events
(`response.output_text.delta`, … `response.completed`), and server-side tools as output items."""

from __future__ import annotations

from typing import Any

from ..records import Outcome
from . import parts
from .base import (
    TIER_FIELD,
    TOOL_CALLS_FIELD,
    Tokens,
    UnfinishedStream,
    count,
    counted_tools,
    detail,
    keep_model,
    keep_usage,
    sse_event,
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

    def transcript(self, body: dict) -> list[dict]:
        turns = []
        instructions = body.get("instructions")
        if isinstance(instructions, str) and instructions:
            turns.append(parts.turn("system", [parts.text(instructions)]))
        return turns + [_item_turn(item) for item in self.messages(body) if isinstance(item, dict)]

    def answer_transcript(self, data: Any) -> list[dict]:
        output = data.get("output") if isinstance(data, dict) else None
        return [_item_turn(item) for item in output or [] if isinstance(item, dict)]

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

    def stream_error(self, kind: str, message: str) -> bytes:
        """The Responses API's `error` stream event (type, code, message, param, sequence_number)."""
        error = {"type": "error", "code": kind or "api_error", "message": message, "param": None, "sequence_number": 0}
        return sse_event(error, "error")

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

    # --- the response cache

    def uncacheable(self, body: dict, *, allow_files: bool) -> str:
        if body.get("background") is True:
            return "background"  # answered later, by polling: there is no answer to keep
        if body.get("conversation") is not None:
            return "conversation"  # the conversation's items change from one request to the next
        if allow_files:
            return ""
        for tool in body.get("tools") or []:
            if isinstance(tool, dict) and tool.get("type") == "file_search":
                return "files"
        for item in self.messages(body):
            content = item.get("content") if isinstance(item, dict) else None
            for part in content if isinstance(content, list) else ():
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "input_audio":
                    return "audio"
                if kind == "input_file":
                    return "files"
        return ""

    def assemble(self, stream: bytes) -> dict:
        events = [event for event in self.checked_events(stream) if isinstance(event, dict)]
        end = events[-1] if events else {}
        if end.get("type") not in ("response.completed", "response.incomplete"):
            raise UnfinishedStream(f"the stream ended with {end.get('type')}, not response.completed")
        response = dict(end.get("response") or {})
        if response.get("output") is None:  # the items as each was done, when the end does not repeat them
            done = {
                e.get("output_index"): e.get("item") for e in events if e.get("type") == "response.output_item.done"
            }
            response["output"] = [done[i] for i in sorted(done, key=lambda i: i if isinstance(i, int) else 0)]
        return response

    def replay(self, answer: dict, *, include_usage: bool) -> bytes:
        # Usage is always on the stream's last event, response.completed, whatever the client asked.
        started = {**answer, "status": "in_progress", "output": [], "usage": None}
        for name in ("completed_at", "incomplete_details", "error"):
            if name in started:
                started[name] = None
        events: list[dict] = [
            {"type": "response.created", "response": started},
            {"type": "response.in_progress", "response": started},
        ]
        for index, item in enumerate(answer.get("output") or []):
            if isinstance(item, dict):
                events.extend(_item_events(index, item))
        ending = "response.incomplete" if answer.get("status") == "incomplete" else "response.completed"
        events.append({"type": ending, "response": answer})
        return b"".join(
            sse_event({"type": event["type"], "sequence_number": n, **event}, event["type"])
            for n, event in enumerate(events)
        )

    def strip_usage(self, stream: bytes) -> bytes:
        return stream  # a Responses stream always reports usage: clients do not ask for it


def _item_turn(item: dict) -> dict:
    """One input or output item as a transcript turn (proxy/formats/parts.py)."""
    kind = item.get("type")
    if "role" in item and kind in (None, "message"):
        return parts.turn(item["role"], parts.openai_content(item.get("content")))
    if kind in ("function_call", "custom_tool_call"):
        arguments = item.get("arguments") if kind == "function_call" else item.get("input")
        return parts.turn("assistant", [parts.tool_call(item.get("name"), item.get("call_id"), arguments)])
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        shown = parts.openai_content(output) if isinstance(output, str | list) else [parts.other("output", output)]
        return parts.turn("tool", [parts.tool_result(item.get("call_id"), shown)])
    if kind == "reasoning":
        summary = [s.get("text") for s in item.get("summary") or [] if isinstance(s, dict)]
        return parts.turn(
            "assistant", [parts.reasoning("\n\n".join(t for t in summary if t) or "(reasoning kept hidden)")]
        )
    return parts.turn("assistant" if kind and kind.endswith("_call") else "user", [parts.other(kind, item)])


def _item_events(index: int, item: dict) -> list[dict]:
    """The events a Responses stream sends one output item in: added, its parts and deltas, done."""
    kind = item.get("type")
    item_id = item.get("id")
    at = {"item_id": item_id, "output_index": index}
    added = {**item, "status": "in_progress"} if "status" in item else dict(item)
    middle: list[dict] = []
    if kind == "message":
        added["content"] = []
        for content_index, part in enumerate(item.get("content") or []):
            if isinstance(part, dict):
                middle.extend(_part_events({**at, "content_index": content_index}, part))
    elif kind == "function_call":
        added["arguments"] = ""
        arguments = item.get("arguments") or ""
        middle.append({"type": "response.function_call_arguments.delta", **at, "delta": arguments})
        middle.append({"type": "response.function_call_arguments.done", **at, "arguments": arguments})
    elif kind == "custom_tool_call":
        added["input"] = ""
        text = item.get("input") or ""
        middle.append({"type": "response.custom_tool_call_input.delta", **at, "delta": text})
        middle.append({"type": "response.custom_tool_call_input.done", **at, "input": text})
    elif kind == "reasoning":
        added["summary"] = []  # its summary arrives whole with the item's done
    return [
        {"type": "response.output_item.added", "output_index": index, "item": added},
        *middle,
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]


def _part_events(at: dict, part: dict) -> list[dict]:
    kind = part.get("type")
    if kind == "output_text":
        text = part.get("text") or ""
        logprobs = part.get("logprobs") or []
        return [
            {"type": "response.content_part.added", **at, "part": {**part, "text": "", "annotations": []}},
            {"type": "response.output_text.delta", **at, "delta": text, "logprobs": logprobs},
            *(
                {"type": "response.output_text.annotation.added", **at, "annotation_index": i, "annotation": a}
                for i, a in enumerate(part.get("annotations") or [])
            ),
            {"type": "response.output_text.done", **at, "text": text, "logprobs": logprobs},
            {"type": "response.content_part.done", **at, "part": part},
        ]
    if kind == "refusal":
        refusal = part.get("refusal") or ""
        return [
            {"type": "response.content_part.added", **at, "part": {**part, "refusal": ""}},
            {"type": "response.refusal.delta", **at, "delta": refusal},
            {"type": "response.refusal.done", **at, "refusal": refusal},
            {"type": "response.content_part.done", **at, "part": part},
        ]
    return [
        {"type": "response.content_part.added", **at, "part": part},
        {"type": "response.content_part.done", **at, "part": part},
    ]
