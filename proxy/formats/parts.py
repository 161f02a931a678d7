"""A conversation as a person reads it, the same whatever wire format carried it: turns of a role and parts
(text, image, tool call, tool result, reasoning, anything else). Each format's `transcript` and
`answer_transcript` build these from its own shapes; the request page renders them as chat bubbles.

Every value here comes from a client or a provider: it is data to show, escaped by whoever renders it."""

from __future__ import annotations

import json
from typing import Any

# Long tool arguments and unknown parts are cut for the page; the pretty-printed body below it is whole.
LIMIT = 20_000


def _cut(text: str) -> str:
    return text if len(text) <= LIMIT else text[:LIMIT] + f"… ({len(text) - LIMIT:,} more characters)"


def pretty(value: Any) -> str:
    """JSON as indented text; a string that holds JSON (tool arguments) is parsed first."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return _cut(value)
    return _cut(json.dumps(value, indent=2, ensure_ascii=False))


def text(value: Any) -> dict:
    return {"kind": "text", "text": _cut(value if isinstance(value, str) else pretty(value))}


def reasoning(value: Any) -> dict:
    return {"kind": "reasoning", "text": _cut(value if isinstance(value, str) else pretty(value))}


def image(url: Any) -> dict:
    """An image by URL: a data URL of an image is shown inline; an http(s) URL only when the reader asks (the
    page does not fetch it by itself); any other scheme (javascript:, file:) is shown as text, never linked."""
    url = url if isinstance(url, str) else ""
    if url.startswith("data:image/") and ";base64," in url[:100]:
        return {"kind": "image", "url": url, "inline": True}
    if url.startswith(("https://", "http://")):
        return {"kind": "image", "url": url, "inline": False}
    return {"kind": "other", "label": "image", "json": _cut(url[:200] or "(no URL)")}


def image_data(mime: Any, data: Any) -> dict:
    """Base64 image bytes with their media type (Anthropic's and Gemini's inline images, Ollama's `images`)."""
    mime = mime if isinstance(mime, str) and mime.startswith("image/") else ""
    if not mime or not isinstance(data, str):
        return other(mime or "file", {"mime_type": mime or None, "bytes (base64)": len(data or "")})
    return image(f"data:{mime};base64,{data}")


def tool_call(name: Any, call_id: Any, arguments: Any) -> dict:
    return {"kind": "tool_call", "name": str(name or "?"), "id": str(call_id or ""), "arguments": pretty(arguments)}


def tool_result(call_id: Any, content: list[dict], name: Any = "") -> dict:
    """What a tool answered; `content` is parts (text, images) of its own."""
    return {"kind": "tool_result", "id": str(call_id or ""), "name": str(name or ""), "parts": content}


def other(label: Any, value: Any) -> dict:
    return {"kind": "other", "label": str(label or "part"), "json": pretty(value)}


def turn(role: Any, parts: list[dict]) -> dict:
    return {"role": str(role or "user"), "parts": parts}


def openai_content(content: Any) -> list[dict]:
    """OpenAI-style content (a string, or parts: text, image_url, input_image, …) as parts. Also read by the
    Responses API's message items, which use the same parts under other type names."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [text(content)]
    if not isinstance(content, list):
        return [other("content", content)]
    out = []
    for part in content:
        if isinstance(part, str):
            out.append(text(part))
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
            out.append(text(part["text"]))
        elif kind == "refusal":
            out.append(text(part.get("refusal") or ""))
        elif kind in ("image_url", "input_image"):
            url = part.get("image_url")
            out.append(image(url.get("url") if isinstance(url, dict) else url))
        else:
            out.append(other(kind, part))
    return out
