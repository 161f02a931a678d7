"""Who and what a request belongs to, with no client configuration where possible: Ingate's own headers
first, then what coding agents and SDKs already send (Claude Code's session header and metadata.user_id,
Codex's session-id, any x-<vendor>-session-id, OpenAI's `user`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_PROPERTY_PREFIX = "x-ingate-property-"
# Claude Code before 1.0.x: user_<hash>_account_<uuid>_session_<uuid>
_LEGACY_CLAUDE_SESSION = re.compile(r"_session_([0-9a-fA-F-]{36})")
_VENDOR_SESSION = re.compile(r"^x-[a-z0-9-]+-session-id$")
# Known clients by user-agent product token, most specific first.
_CLIENTS = (
    ("claude-cli", "claude-code"),
    ("claude-code", "claude-code"),
    ("aider", "aider"),
    ("cursor", "cursor"),
    ("codex", "codex"),
    ("openai/python", "openai-python"),
    ("openai/js", "openai-node"),
    ("anthropic/python", "anthropic-python"),
    ("anthropic/js", "anthropic-node"),
    ("google-genai-sdk", "google-genai"),
    ("ollama-python", "ollama-python"),
    ("python-httpx", "httpx"),
    ("curl", "curl"),
)


@dataclass(slots=True)
class Attribution:
    session_id: str = ""
    session_path: str = ""
    session_name: str = ""
    user_id: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    client: str = ""


def client_of(user_agent: str) -> str:
    lowered = user_agent.lower()
    for token, name in _CLIENTS:
        if token in lowered:
            return name
    return lowered.split("/", 1)[0][:64] if lowered else ""


def _metadata_user(body: Any) -> tuple[str, str]:
    """(user id, session id) from Anthropic's metadata.user_id, which Claude Code fills in two formats."""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    raw = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(raw, str) or not raw:
        return "", ""
    if raw.startswith("{"):  # newer Claude Code: a JSON string
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw[:200], ""
        if isinstance(parsed, dict):
            user = parsed.get("account_uuid") or parsed.get("device_id") or parsed.get("user_id") or ""
            return str(user)[:200], str(parsed.get("session_id") or "")[:200]
    match = _LEGACY_CLAUDE_SESSION.search(raw)
    if match:
        return raw[: match.start()][:200], match.group(1)
    return raw[:200], ""


def end_user(header: str, body: Any, meta_user: str | None = None) -> str:
    """The end user a request is for: X-Ingate-User-Id, else OpenAI's `user`, else Anthropic's metadata.user_id
    (as Claude Code fills it). The records' user_id, and what user-scoped budgets and rate limits count by."""
    if header:
        return header[:200]
    openai_user = body.get("user") if isinstance(body, dict) and isinstance(body.get("user"), str) else ""
    if openai_user:
        return openai_user[:200]
    return (meta_user if meta_user is not None else _metadata_user(body)[0])[:200]


def attribute(headers: dict[str, str], body: Any) -> Attribution:
    """`headers`: lower-cased names (the proxy passes x-ingate-*, user-agent and session headers)."""
    found = Attribution(client=client_of(headers.get("user-agent", "")))
    meta_user, meta_session = _metadata_user(body)
    session = (
        headers.get("x-ingate-session-id")
        or headers.get("x-claude-code-session-id")
        or meta_session
        or headers.get("session-id")  # Codex
        or next((v for k, v in headers.items() if _VENDOR_SESSION.match(k) and k != "x-ingate-session-id"), "")
    )
    found.session_path = headers.get("x-ingate-session-path", "")[:500]
    if not session and found.session_path:
        session = found.session_path.strip("/").split("/")[0]
    found.session_id = session[:200]
    found.session_name = headers.get("x-ingate-session-name", "")[:200]
    found.user_id = end_user(headers.get("x-ingate-user-id", ""), body, meta_user)
    found.properties = {
        name[len(_PROPERTY_PREFIX) :]: value[:500]
        for name, value in headers.items()
        if name.startswith(_PROPERTY_PREFIX)
    }
    return found
