"""Strict rendering of a prompt version: every {{variable}} must be given (and of its declared type), extra
ones are reported, and the result comes out ready for the provider (OpenAI messages, or Anthropic's system
plus messages)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from proxy.formats import WireFormat

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TYPES = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "json": lambda v: True,
}


class RenderError(Exception):
    """Variables missing or of the wrong type; the message names each one."""

    def __init__(self, missing: list[str], wrong_type: dict[str, str]):
        self.missing = missing
        self.wrong_type = wrong_type
        parts = []
        if missing:
            parts.append("missing variable" + ("s" if len(missing) > 1 else "") + ": " + ", ".join(missing))
        if wrong_type:
            parts.append("; ".join(f"{name} must be a {kind}" for name, kind in wrong_type.items()))
        super().__init__("Cannot render the prompt: " + "; ".join(parts) + ".")


@dataclass
class Rendered:
    messages: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    unused: list[str] = field(default_factory=list)  # variables given that the prompt does not use

    def chat(self) -> list[dict[str, Any]]:
        """As OpenAI-style chat messages: the rendered messages, or the text template as one user message."""
        return self.messages or [{"role": "user", "content": self.text}]

    def followed_by(self, user_message: str) -> Rendered:
        """The prompt with a user turn after it (the prompt page's "User message"), as chat messages."""
        if not user_message:
            return self
        return Rendered([*self.chat(), {"role": "user", "content": user_message}], "", self.unused)


def placeholders(messages: list[dict], template: str) -> list[str]:
    found = []
    for source in [template, *(m.get("content") for m in messages)]:
        if isinstance(source, str):
            found.extend(PLACEHOLDER.findall(source))
        elif isinstance(source, list):  # content parts
            for part in source:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    found.extend(PLACEHOLDER.findall(part["text"]))
    return list(dict.fromkeys(found))


def _fill(text: str, values: dict[str, Any]) -> str:
    def value(match: re.Match) -> str:
        given = values[match.group(1)]
        return given if isinstance(given, str) else json.dumps(given)

    return PLACEHOLDER.sub(value, text)


def render(messages: list[dict], template: str, declared: dict[str, str], values: dict[str, Any]) -> Rendered:
    needed = placeholders(messages, template)
    missing = [name for name in needed if name not in values]
    wrong = {
        name: kind
        for name, kind in declared.items()
        if name in values and not _TYPES.get(kind, _TYPES["json"])(values[name])
    }
    if missing or wrong:
        raise RenderError(missing, wrong)
    filled = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            content = _fill(content, values)
        elif isinstance(content, list):
            content = [
                {**p, "text": _fill(p["text"], values)} if isinstance(p, dict) and isinstance(p.get("text"), str) else p
                for p in content
            ]
        filled.append({**message, "content": content})
    return Rendered(filled, _fill(template, values) if template else "", sorted(set(values) - set(needed)))


def for_provider(rendered: Rendered, fmt: WireFormat) -> dict[str, Any]:
    """The request fields a rendered prompt becomes in a provider's wire format: OpenAI-style `messages`,
    Anthropic's `system` + `messages`, … (proxy/formats)."""
    return fmt.prompt_fields(rendered.messages, rendered.text)
