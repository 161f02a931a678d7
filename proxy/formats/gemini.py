"""Google's Gemini API (`…/models/{model}:generateContent` and its verbs): `contents` of `parts`,
`systemInstruction`, `generationConfig`; streams as SSE (`alt=sse`) without an end marker, the last chunk
carrying a finishReason; usage in `usageMetadata`, thoughts and tool-use prompts counted apart."""

from __future__ import annotations

from typing import Any, ClassVar

from ..records import Outcome
from .base import TIER_FIELD, Tokens, WireFormat, count, dumps, keep_model, keep_usage, tier_of

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _contents(messages: list[dict]) -> list[dict]:
    return [
        {"role": "model" if m.get("role") == "assistant" else "user", "parts": [{"text": m.get("content") or ""}]}
        for m in messages
        if m.get("role") != "system"
    ]


class Gemini(WireFormat):
    name = "gemini"
    needs_turn = True  # generateContent wants at least one entry in `contents`
    usage_in_last_event = True  # each chunk's usageMetadata is the total so far
    error_types: ClassVar[dict[int, str]] = _STATUS

    def streams(self, body: dict, endpoint: str) -> bool:
        return endpoint.endswith("streamGenerateContent")  # the verb says it, not the body

    def messages(self, body: dict) -> list:
        contents = body.get("contents")
        return contents if isinstance(contents, list) else []

    def system(self, body: dict) -> Any:
        return body.get("systemInstruction") or body.get("system_instruction")

    def tools(self, body: dict) -> list[str]:
        names = []
        for tool in body.get("tools") or []:
            if isinstance(tool, dict):
                declared = tool.get("functionDeclarations") or tool.get("function_declarations")
                names.extend(d.get("name") for d in declared or [] if isinstance(d, dict))
                names.extend(name for name in tool if name not in ("functionDeclarations", "function_declarations"))
        return names

    def chat_messages(self, body: dict) -> list[dict]:
        messages = []
        system = self.system(body)
        if isinstance(system, dict):
            text = " ".join(p.get("text", "") for p in system.get("parts") or [] if isinstance(p, dict))
            if text:
                messages.append({"role": "system", "content": text})
        for turn in self.messages(body):
            if isinstance(turn, dict):
                text = " ".join(p.get("text", "") for p in turn.get("parts", []) if isinstance(p, dict))
                messages.append({"role": "assistant" if turn.get("role") == "model" else "user", "content": text})
        return messages

    def with_prompt(self, body: dict, messages: list[dict], text: str) -> dict:
        merged = dict(body)
        prompt = messages or [{"role": "user", "content": text}]
        merged["contents"] = _contents(prompt) + self.messages(body)
        system = "\n\n".join(
            m["content"] for m in prompt if m.get("role") == "system" and isinstance(m.get("content"), str)
        )
        if system:
            own = self.system(body)
            parts = [{"text": system}] + (own.get("parts") or [] if isinstance(own, dict) else [])
            merged.pop("system_instruction", None)
            merged["systemInstruction"] = {"parts": parts}
        return merged

    def chat_request(self, model, messages, params, stream, *, provider, azure_api_version=""):
        system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
        config = {}
        if "temperature" in params:
            config["temperature"] = params.pop("temperature")
        if "max_tokens" in params:
            config["maxOutputTokens"] = params.pop("max_tokens")
        body = {"contents": _contents(messages), **params}
        if config:
            body["generationConfig"] = config
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        verb = "streamGenerateContent" if stream else "generateContent"
        return f"/v1beta/models/{model}:{verb}", "alt=sse" if stream else "", body

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return dumps({"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}})

    def interesting(self, event: bytes, have_model: bool) -> bool:
        return not have_model  # the first chunk names the model; the usage is read off the last one

    def collect(self, data: dict, usage: dict[str, Any], model: list[str]) -> None:
        keep_usage(usage, data.get("usageMetadata"))
        keep_model(model, data.get("modelVersion") or data.get("model"))

    def text(self, data: Any) -> str:
        if not isinstance(data, dict):
            return ""
        out = []
        for candidate in data.get("candidates") or []:
            for part in ((candidate or {}).get("content") or {}).get("parts") or []:
                if isinstance(part, dict) and not part.get("thought"):
                    out.append(part.get("text") or "")
        return "".join(out)

    def ended(self, event: Any) -> tuple[str, str]:
        candidates = event.get("candidates") if isinstance(event, dict) else None
        if not isinstance(candidates, list):
            return "", ""
        finished = any(isinstance(c, dict) and c.get("finishReason") for c in candidates)
        return ("", "") if finished else (Outcome.UPSTREAM_CUT, "ended the stream without a finishReason")

    def tokens(self, raw: dict) -> Tokens:
        thoughts = count(raw.get("thoughtsTokenCount"))
        # Tokens the model read back from its tools (search results, code output) are billed as input.
        tool_prompt = count(raw.get("toolUsePromptTokenCount"))
        return Tokens(
            count(raw.get("promptTokenCount")) + tool_prompt,
            count(raw.get("candidatesTokenCount")) + thoughts,
            count(raw.get("cachedContentTokenCount")),
            0,
            thoughts,
            tier=tier_of(raw, "serviceTier", TIER_FIELD),
        )
