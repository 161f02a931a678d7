"""Google's Gemini API (`…/models/{model}:generateContent` and its verbs): `contents` of `parts`,
`systemInstruction`, `generationConfig`; streams as SSE (`alt=sse`) without an end marker, the last chunk
carrying a finishReason; usage in `usageMetadata`, thoughts and tool-use prompts counted apart."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from ..records import Outcome
from . import parts
from .base import TIER_FIELD, Tokens, UnfinishedStream, WireFormat, count, dumps, keep_model, keep_usage, tier_of

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

    def transcript(self, body: dict) -> list[dict]:
        turns = []
        system = self.system(body)
        if isinstance(system, dict):
            turns.append(parts.turn("system", _shown(system.get("parts"))))
        for content in self.messages(body):
            if isinstance(content, dict):
                turns.append(_turn(content))
        return turns

    def answer_transcript(self, data: Any) -> list[dict]:
        candidates = data.get("candidates") if isinstance(data, dict) else None
        return [
            _turn(c["content"]) for c in candidates or [] if isinstance(c, dict) and isinstance(c.get("content"), dict)
        ]

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

    def stream_error(self, kind: str, message: str) -> bytes:
        """Gemini ends a failing stream with its error object as the last chunk."""
        return self.event({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})

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

    # --- the response cache

    cache_neutral_fields: ClassVar[frozenset[str]] = frozenset()  # the verb, not the body, says it streams

    def temperature(self, body: dict) -> float:
        config = body.get("generationConfig") or body.get("generation_config")
        return self._temperature(config.get("temperature") if isinstance(config, dict) else None)

    def uncacheable(self, body: dict, *, allow_files: bool) -> str:
        if allow_files:
            return ""
        for turn in self.messages(body):
            for part in (turn.get("parts") if isinstance(turn, dict) else None) or []:
                if not isinstance(part, dict):
                    continue
                if "fileData" in part or "file_data" in part:
                    return "files"
                inline = part.get("inlineData") or part.get("inline_data")
                if isinstance(inline, dict):
                    mime = str(inline.get("mimeType") or inline.get("mime_type") or "")
                    if mime.startswith("audio/"):
                        return "audio"
                    if not mime.startswith("image/"):
                        return "files"  # documents and video: files sent inline
        return ""

    def assemble(self, stream: bytes) -> dict:
        chunks = [chunk for chunk in self._chunks(stream) if isinstance(chunk, dict)]
        if not chunks:
            raise UnfinishedStream("the stream holds no chunk")
        candidates: dict[int, dict] = {}
        rest: dict[str, Any] = {}
        for chunk in chunks:
            for name, value in chunk.items():
                if name != "candidates":
                    rest[name] = value  # the last chunk's usageMetadata is the whole answer's
            for candidate in chunk.get("candidates") or []:
                if isinstance(candidate, dict):
                    _add_candidate(candidates.setdefault(candidate.get("index", 0), {}), candidate)
        answer = {"candidates": [candidates[i] for i in sorted(candidates)]} if candidates else {}
        answer.update(rest)
        return answer

    def _chunks(self, stream: bytes) -> list[Any]:
        if not stream.lstrip().startswith(b"["):
            return self.checked_events(stream)
        try:  # without alt=sse, a stream is one JSON array of responses
            chunks = orjson.loads(stream)
        except ValueError:
            raise UnfinishedStream("the stream's JSON array is not whole") from None
        if not isinstance(chunks, list) or not chunks:
            raise UnfinishedStream("the stream holds no chunk")
        if any(isinstance(c, dict) and c.get("error") for c in chunks):
            raise UnfinishedStream("the stream ended on an error")
        outcome, why = self.finished(chunks[-1])
        if outcome:
            raise UnfinishedStream(why)
        return chunks

    def replay(self, answer: dict, *, include_usage: bool, alt_sse: bool = True) -> bytes:
        """`alt_sse`: SSE, as `alt=sse` asks (what Google's SDKs ask for); else one JSON array, as Gemini streams
        without it. Usage is on the last chunk, as Gemini reports it, whatever the client asked."""
        candidates = [c for c in answer.get("candidates") or [] if isinstance(c, dict)]
        parts = [_parts(c) for c in candidates]
        count_ = max((len(p) for p in parts), default=0) or 1
        ids = {name: answer[name] for name in ("modelVersion", "responseId") if name in answer}
        chunks = []
        for k in range(count_):
            last = k == count_ - 1
            entries = []
            for candidate, own in zip(candidates, parts, strict=True):
                entry: dict[str, Any] = {}
                if k < len(own):
                    content = candidate.get("content") or {}
                    entry["content"] = {"parts": [own[k]], "role": content.get("role", "model")}
                elif not last:
                    continue
                if last:  # how it finished, and what was said of it, on the last chunk
                    entry.update((name, value) for name, value in candidate.items() if name != "content")
                elif "index" in candidate:
                    entry["index"] = candidate["index"]
                entries.append(entry)
            chunk: dict[str, Any] = {"candidates": entries} if entries else {}
            if k == 0 and "promptFeedback" in answer:
                chunk["promptFeedback"] = answer["promptFeedback"]
            if last:
                chunk.update((n, v) for n, v in answer.items() if n not in ("candidates", "promptFeedback"))
            else:
                chunk.update(ids)
            chunks.append(orjson.dumps(chunk))
        if not alt_sse:
            return b"[" + b",\r\n".join(chunks) + b"]"
        return b"".join(b"data: " + chunk + b"\r\n\r\n" for chunk in chunks)


def _turn(content: dict) -> dict:
    role = content.get("role")
    return parts.turn("assistant" if role == "model" else role or "user", _shown(content.get("parts")))


def _shown(given: Any) -> list[dict]:
    """Gemini parts as transcript parts (proxy/formats/parts.py)."""
    shown = []
    for part in given if isinstance(given, list) else []:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            shown.append((parts.reasoning if part.get("thought") else parts.text)(part["text"]))
        elif isinstance(inline := part.get("inlineData") or part.get("inline_data"), dict):
            shown.append(parts.image_data(inline.get("mimeType") or inline.get("mime_type"), inline.get("data")))
        elif isinstance(file := part.get("fileData") or part.get("file_data"), dict):
            mime = str(file.get("mimeType") or file.get("mime_type") or "")
            uri = file.get("fileUri") or file.get("file_uri")
            shown.append(parts.image(uri) if mime.startswith("image/") else parts.other("file", file))
        elif isinstance(call := part.get("functionCall") or part.get("function_call"), dict):
            shown.append(parts.tool_call(call.get("name"), call.get("id"), call.get("args")))
        elif isinstance(result := part.get("functionResponse") or part.get("function_response"), dict):
            answer = [parts.text(parts.pretty(result.get("response")))]
            shown.append(parts.tool_result(result.get("id"), answer, result.get("name")))
        else:
            shown.append(parts.other(next(iter(part), "part"), part))
    return shown


def _parts(candidate: dict) -> list:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _plain_text(part: dict) -> bool:
    return isinstance(part.get("text"), str) and set(part) <= {"text", "thought", "thoughtSignature"}


def _add_candidate(kept: dict, candidate: dict) -> None:
    """One streamed candidate added to what came before: text parts joined, the other fields as last said."""
    for name, value in candidate.items():
        if name == "content" and isinstance(value, dict):
            content = kept.setdefault("content", {"parts": []})
            content.update((n, v) for n, v in value.items() if n != "parts")
            for part in value.get("parts") or []:
                if isinstance(part, dict):
                    _add_part(content["parts"], part)
        elif name == "citationMetadata" and isinstance(value, dict):
            sources = (kept.get("citationMetadata") or {}).get("citationSources") or []
            kept["citationMetadata"] = {**value, "citationSources": sources + (value.get("citationSources") or [])}
        else:
            kept[name] = value


def _add_part(parts: list[dict], part: dict) -> None:
    last = parts[-1] if parts else None
    if last is not None and _plain_text(last) and _plain_text(part) and last.get("thought") == part.get("thought"):
        last["text"] += part["text"]
        if part.get("thoughtSignature"):
            last["thoughtSignature"] = part["thoughtSignature"]
        return
    parts.append(dict(part))
