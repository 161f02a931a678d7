"""The text of a request or an answer as guardrails see it, in every wire format: the strings of a JSON body
(messages, system prompts, tools, tool calls and results, under whatever keys the format uses), joined into one
text so each check scans once; redaction written back into those strings; placeholders (`<EMAIL_1>`) kept per
request and put back in answers, streamed ones included, where a placeholder may be split across events."""

from __future__ import annotations

import bisect
import re
from typing import Any

import orjson

# Request fields that carry what a user or a tool wrote, in some format: OpenAI chat/completions/responses/
# embeddings, Anthropic, Gemini, Ollama. Model names, settings and ids are elsewhere and never scanned.
REQUEST_ROOTS = (
    "messages",
    "contents",
    "input",
    "prompt",
    "suffix",
    "system",
    "instructions",
    "systemInstruction",
    "system_instruction",
    "tools",
)
# Keys whose string values are structure, not text (roles, ids, types, media); skipped at any depth.
SKIP = frozenset(
    {
        "model", "role", "type", "id", "tool_call_id", "tool_use_id", "call_id", "object", "status",
        "finish_reason", "stop_reason", "finishReason", "mime_type", "mimeType", "media_type", "data",
        "image_url", "url", "file_id", "file_data", "signature", "encrypted_content", "cache_control",
        "logprobs", "system_fingerprint", "created_at", "created", "index", "responseId", "modelVersion",
    }
)  # fmt: skip
# Keys whose strings are JSON documents or fragments of one (tool-call arguments): values put back are escaped.
JSON_TEXT = frozenset({"arguments", "partial_json"})
SEPARATOR = "\n\n"

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]{0,40}_\d{1,6})>")
_PARTIAL = re.compile(r"<[A-Z0-9_]{0,48}$")  # what may be the start of a placeholder at the end of a string


def spans(pattern, text: str) -> list[tuple[int, int]]:
    """(start, end) in characters of every match of an RE2 pattern. RE2 matches UTF-8 bytes; its Python binding
    converts each match's offsets by rescanning the text (quadratic on a long prompt with many matches), so the
    text is encoded once and offsets are carried forward here instead."""
    data = text.encode()
    if len(data) == len(text):  # ASCII: bytes are characters
        return [m.span() for m in pattern.finditer(data)]
    out = []
    byte_at = char_at = 0
    for match in pattern.finditer(data):
        start, end = match.span()
        char_at += len(data[byte_at:start].decode())
        char_end = char_at + len(data[start:end].decode())
        out.append((char_at, char_end))
        byte_at, char_at = end, char_end
    return out


class Slot:
    """Where one string lives: its container and key, so redaction can write it back."""

    __slots__ = ("container", "key", "json_text")

    def __init__(self, container: Any, key: Any, json_text: bool):
        self.container, self.key, self.json_text = container, key, json_text

    def get(self) -> str:
        return self.container[self.key]

    def set(self, value: str) -> None:
        self.container[self.key] = value


def slots(value: Any, roots: tuple[str, ...] | None = None) -> list[Slot]:
    """Every text string of a parsed body (under `roots` at the top, or anywhere), in document order."""
    out: list[Slot] = []
    if roots is not None and isinstance(value, dict):
        for key in roots:
            if key in value:
                _walk(value, key, out, False)
        return out
    if isinstance(value, dict | list):
        for key in value if isinstance(value, dict) else range(len(value)):
            _walk(value, key, out, False)
    return out


def _walk(container: Any, key: Any, out: list[Slot], json_text: bool) -> None:
    value = container[key]
    if isinstance(value, str):
        if value:
            out.append(Slot(container, key, json_text or key in JSON_TEXT))
    elif isinstance(value, dict):
        for k in value:
            if k not in SKIP:
                _walk(value, k, out, json_text)
    elif isinstance(value, list):
        for i in range(len(value)):
            _walk(value, i, out, json_text)


class Joined:
    """The strings of some slots as one text (SEPARATOR between them), and the way back from offsets to slots."""

    def __init__(self, found: list[Slot]):
        self.slots = found
        self.starts: list[int] = []
        parts: list[str] = []
        at = 0
        for slot in found:
            self.starts.append(at)
            text = slot.get()
            parts.append(text)
            at += len(text) + len(SEPARATOR)
        self.text = SEPARATOR.join(parts)

    def rewrite(self, spans: list[tuple[int, int, str]]) -> None:
        """Replace spans (start, end, replacement) of the joined text in the slots; spans that straddle two strings
        are cut to the first."""
        if not spans:
            return
        per_slot: dict[int, list[tuple[int, int, str]]] = {}
        for start, end, new in spans:
            i = bisect.bisect_right(self.starts, start) - 1
            base = self.starts[i]
            length = len(self.slots[i].get())
            per_slot.setdefault(i, []).append((start - base, min(end - base, length), new))
        for i, edits in per_slot.items():
            slot = self.slots[i]
            text = slot.get()
            for start, end, new in sorted(edits, reverse=True):
                text = text[:start] + new + text[end:]
            slot.set(text)


class Vault:
    """One request's placeholders: the same value gets the same placeholder, each label counts from 1."""

    __slots__ = ("by_value", "by_placeholder", "counts")

    def __init__(self):
        self.by_value: dict[tuple[str, str], str] = {}
        self.by_placeholder: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.by_placeholder)

    def placeholder(self, label: str, value: str) -> str:
        found = self.by_value.get((label, value))
        if found is None:
            n = self.counts.get(label, 0) + 1
            self.counts[label] = n
            found = f"<{label}_{n}>"
            self.by_value[(label, value)] = found
            self.by_placeholder[found[1:-1]] = value
        return found

    def restore(self, text: str, json_text: bool = False) -> str:
        if "<" not in text:
            return text

        def back(match: re.Match) -> str:
            value = self.by_placeholder.get(match.group(1))
            if value is None:
                return match.group(0)
            return orjson.dumps(value).decode()[1:-1] if json_text else value

        return PLACEHOLDER.sub(back, text)

    def pending_tail(self, text: str) -> int:
        """How many characters at the end of `text` may be the start of one of this request's placeholders (0
        when none): held back until the next piece says."""
        match = _PARTIAL.search(text, max(0, len(text) - 50))
        if match is None:
            return 0
        start = match.group(0)
        if any(f"<{p}>".startswith(start) for p in self.by_placeholder):
            return len(start)
        return 0


def restore_document(vault: Vault, data: Any) -> None:
    """Put this request's values back into every string of a parsed answer (tool-call arguments included)."""
    for slot in slots(data):
        text = slot.get()
        restored = vault.restore(text, slot.json_text)
        if restored != text:
            slot.set(restored)


def mask(value: str) -> str:
    """A hint of a match that does not give it away: its first two characters and its length."""
    value = value.strip()
    return f"{value[:2]}… ({len(value)} chars)" if len(value) > 4 else f"… ({len(value)} chars)"
