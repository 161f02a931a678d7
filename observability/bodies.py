"""What is kept of request and response bodies, by the org's setting: nothing, their shape (metadata), or
the bodies themselves, size-capped, with streamed answers reassembled into readable text."""

from __future__ import annotations

import json
from typing import Any

_PARAMETERS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "max_output_tokens", "stream",
               "reasoning_effort", "response_format", "tool_choice", "stop", "seed", "thinking")


def request_metadata(body: Any, size: int) -> dict[str, Any]:
    """The shape of a request without its text: how many messages of which role, tools, parameters."""
    meta: dict[str, Any] = {"bytes": size}
    if not isinstance(body, dict):
        return meta
    messages = body.get("messages") or body.get("contents") or body.get("input")
    if isinstance(messages, list):
        roles: dict[str, int] = {}
        for message in messages:
            role = message.get("role", "user") if isinstance(message, dict) else "item"
            roles[role] = roles.get(role, 0) + 1
        meta["messages"] = roles
    system = body.get("system") or body.get("instructions") or body.get("systemInstruction")
    if system:
        meta["system_chars"] = len(json.dumps(system)) if not isinstance(system, str) else len(system)
    tools = body.get("tools")
    if isinstance(tools, list):
        meta["tools"] = [(t.get("name") or (t.get("function") or {}).get("name") or t.get("type")) for t in tools if isinstance(t, dict)][:50]
    meta["parameters"] = {k: body[k] for k in _PARAMETERS if k in body}
    return meta


_ROLE_ORDER = {role: n for n, role in enumerate(("system", "developer", "user", "assistant", "tool", "function"))}


def metadata_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """`request_metadata`'s shape as (what, value) lines for a person: the request detail page."""
    rows = []
    if "messages" in meta:
        roles = meta["messages"] or {}
        # In conversation order, whatever order the database kept the keys in (PostgreSQL's jsonb sorts them).
        ordered = sorted(roles, key=lambda role: (_ROLE_ORDER.get(role, len(_ROLE_ORDER)), role))
        rows.append(("Messages", ", ".join(f"{roles[role]} {role}" for role in ordered) or "none"))
    if meta.get("system_chars"):
        rows.append(("System prompt", f"{meta['system_chars']:,} characters"))
    if meta.get("tools"):
        rows.append(("Tools", ", ".join(str(name) for name in meta["tools"])))
    for name, value in (meta.get("parameters") or {}).items():
        rows.append((name, value if isinstance(value, str) else json.dumps(value)))
    if meta.get("bytes") is not None:
        rows.append(("Request size", f"{meta['bytes']:,} bytes"))
    return rows


def _event_text(event: Any) -> str:
    """The text an SSE event or NDJSON line adds to the answer, for each provider's shape."""
    if not isinstance(event, dict):
        return ""
    for choice in event.get("choices") or []:  # OpenAI chat / completions and compatible
        delta = choice.get("delta") or {}
        return (delta.get("content") or "") if isinstance(delta, dict) else (choice.get("text") or "")
    kind = event.get("type", "")
    if kind == "content_block_delta":  # Anthropic
        delta = event.get("delta") or {}
        return delta.get("text") or delta.get("thinking") or delta.get("partial_json") or ""
    if kind == "response.output_text.delta":  # OpenAI Responses
        return event.get("delta") or ""
    if kind == "completion":  # Anthropic legacy
        return event.get("completion") or ""
    for candidate in event.get("candidates") or []:  # Gemini
        parts = (candidate.get("content") or {}).get("parts") or []
        return "".join(p.get("text", "") for p in parts if isinstance(p, dict))
    message = event.get("message")  # Ollama chat / generate
    if isinstance(message, dict):
        return message.get("content") or ""
    response = event.get("response")
    return response if isinstance(response, str) else ""


def reassemble(raw: bytes) -> str:
    """A streamed answer (SSE or NDJSON, any provider) as the text it spelled out; other bodies as text."""
    text = raw.decode("utf-8", errors="replace")
    lines = [line[5:].strip() if line.startswith("data:") else line.strip() for line in text.splitlines()]
    events = [line for line in lines if line.startswith("{")]
    if not events or len(events) == 1 and len(lines) <= 2:
        return text
    pieces = []
    for line in events:
        try:
            pieces.append(_event_text(json.loads(line)))
        except ValueError:
            continue
    return "".join(pieces)


def stored_bodies(mode: str, *, parsed: Any, request: bytes, response: bytes, request_size: int,
                  streamed: bool, truncated: bool, shape: dict | None = None) -> dict[str, Any] | None:
    """The RequestBody values for an org's body mode, or None when nothing is kept. `shape`: the request's
    metadata when the gateway already worked it out (the body itself did not travel)."""
    if mode == "off":
        return None
    metadata = shape if shape is not None else request_metadata(parsed, request_size)
    if mode != "full":
        return {"metadata": metadata, "request": "", "response": "", "truncated": False}
    return {
        "metadata": metadata,
        "request": request.decode("utf-8", errors="replace"),
        "response": reassemble(response) if streamed else response.decode("utf-8", errors="replace"),
        "truncated": truncated,
    }
