"""What is kept of request and response bodies, by the org's setting: nothing, their shape (metadata), or
the bodies themselves, size-capped, with streamed answers reassembled into readable text. What a body holds is
read by its wire format (proxy/formats)."""

from __future__ import annotations

import json
from typing import Any

from proxy import formats
from proxy.formats import WireFormat, parts

_PARAMETERS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "stream",
    "reasoning_effort",
    "response_format",
    "tool_choice",
    "stop",
    "seed",
    "thinking",
)


def request_metadata(body: Any, size: int, fmt: WireFormat = formats.OPENAI) -> dict[str, Any]:
    """The shape of a request without its text: how many messages of which role, tools, parameters."""
    meta: dict[str, Any] = {"bytes": size}
    if not isinstance(body, dict):
        return meta
    messages = fmt.messages(body)
    if messages:
        roles: dict[str, int] = {}
        for message in messages:
            role = message.get("role", "user") if isinstance(message, dict) else "item"
            roles[role] = roles.get(role, 0) + 1
        meta["messages"] = roles
    system = fmt.system(body)
    if system:
        meta["system_chars"] = len(json.dumps(system)) if not isinstance(system, str) else len(system)
    tools = fmt.tools(body)
    if tools:
        meta["tools"] = tools[:50]
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


def reassemble(raw: bytes, fmt: WireFormat) -> str:
    """A streamed answer (SSE or NDJSON) as the text it spelled out, in its wire format; other bodies as text."""
    text = raw.decode("utf-8", errors="replace")
    events = [payload for payload in map(formats.event_payload, raw.splitlines()) if payload.startswith(b"{")]
    if not events or len(events) == 1 and len(text.splitlines()) <= 2:
        return text
    pieces = []
    for payload in events:
        try:
            pieces.append(fmt.text(json.loads(payload)))
        except ValueError:
            continue
    return "".join(pieces)


def stored_bodies(
    mode: str,
    *,
    fmt: WireFormat,
    parsed: Any,
    request: bytes,
    response: bytes,
    request_size: int,
    streamed: bool,
    truncated: bool,
    shape: dict | None = None,
) -> dict[str, Any] | None:
    """The RequestBody values for an org's body mode, or None when nothing is kept. `shape`: the request's
    metadata when the gateway already worked it out (the body itself did not travel)."""
    if mode == "off":
        return None
    metadata = shape if shape is not None else request_metadata(parsed, request_size, fmt)
    if mode != "full":
        return {"metadata": metadata, "request": "", "response": "", "truncated": False}
    return {
        "metadata": metadata,
        "request": request.decode("utf-8", errors="replace"),
        "response": reassemble(response, fmt) if streamed else response.decode("utf-8", errors="replace"),
        "truncated": truncated,
    }


def _parsed(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None  # cut by the size cap, or not JSON at all: shown as it was kept


def conversation(*, provider: str, endpoint: str, streamed: bool, request: str, response: str) -> dict[str, Any]:
    """What the request page shows of kept bodies: the conversation as turns of parts (proxy/formats/parts.py),
    read by the wire format the request spoke, the answer's turns, and both bodies pretty-printed."""
    fmt = formats.of_provider(provider, endpoint)
    asked, answered = _parsed(request), _parsed(response)
    turns = fmt.transcript(asked) if isinstance(asked, dict) else []
    if isinstance(answered, dict):
        answer = fmt.answer_transcript(answered)
    elif response and streamed:  # kept reassembled: the text the stream spelled out
        answer = [parts.turn("assistant", [parts.text(response)])]
    else:
        answer = []
    return {
        "turns": turns,
        "answer": answer,
        "request": json.dumps(asked, indent=2, ensure_ascii=False) if asked is not None else request,
        "response": json.dumps(answered, indent=2, ensure_ascii=False) if answered is not None else response,
    }


def _plain(turn: dict) -> str:
    return "\n\n".join(p["text"] for p in turn["parts"] if p["kind"] == "text")


def playground_fields(turns: list[dict]) -> dict[str, str]:
    """The playground's inputs for a kept conversation: its system prompt and its last user message (the
    playground sends one system prompt and one message; earlier turns are not carried)."""
    system = "\n\n".join(_plain(t) for t in turns if t["role"] in ("system", "developer"))
    users = [_plain(t) for t in turns if t["role"] == "user" and _plain(t)]
    return {"system": system, "user": users[-1] if users else ""}
