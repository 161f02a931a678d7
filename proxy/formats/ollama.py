"""Ollama's API (`/api/chat`, `/api/generate`, `/api/embed`, …): NDJSON streams that end with a line carrying
`"done": true` and the counts (`prompt_eval_count`, `eval_count`), and streaming unless told not to."""

from __future__ import annotations

from typing import Any, ClassVar

from ..records import Outcome
from . import parts
from .base import Tokens, UnfinishedStream, WireFormat, count, dumps, keep_model


class Ollama(WireFormat):
    name = "ollama"
    framing = "ndjson"

    def streams(self, body: dict, endpoint: str) -> bool:
        if endpoint in ("chat", "generate"):
            return body.get("stream") is not False  # Ollama streams unless told not to
        return body.get("stream") is True

    def system(self, body: dict) -> Any:
        return body.get("system")

    def transcript(self, body: dict) -> list[dict]:
        if "prompt" in body and "messages" not in body:  # /api/generate
            turns = [parts.turn("system", [parts.text(body["system"])])] if body.get("system") else []
            shown = [parts.text(body.get("prompt") or "")] + [_image(i) for i in body.get("images") or []]
            return [*turns, parts.turn("user", shown)]
        return super().transcript(body)

    def answer_transcript(self, data: Any) -> list[dict]:
        if not isinstance(data, dict):
            return []
        if isinstance(data.get("message"), dict):
            return [self._turn({"role": "assistant", **data["message"]})]
        return (
            [parts.turn("assistant", [parts.text(data["response"])])] if isinstance(data.get("response"), str) else []
        )

    def _turn(self, message: dict) -> dict:
        shown = super()._turn(message)  # Ollama's tool calls carry their arguments as an object: shown alike
        if message.get("thinking"):
            shown["parts"].insert(0, parts.reasoning(message["thinking"]))
        shown["parts"].extend(_image(i) for i in message.get("images") or [])
        return shown

    def chat_request(self, model, messages, params, stream, *, provider, azure_api_version=""):
        options = {k: params.pop(k) for k in ("temperature", "top_p", "seed") if k in params}
        if "max_tokens" in params:
            options["num_predict"] = params.pop("max_tokens")
        body = {"model": model, "messages": messages, "stream": stream, **params}
        if options:
            body["options"] = options
        return "/api/chat", "", body

    def error_body(self, status: int, code: str, message: str) -> bytes:
        return dumps({"error": message})

    def stream_error(self, kind: str, message: str) -> bytes:
        """Ollama ends a failing stream with a line holding only `error`."""
        return self.event({"error": message})

    def interesting(self, event: bytes, have_model: bool) -> bool:
        return not have_model or b"eval_count" in event  # every line names the model; the last one counts

    def collect(self, data: dict, usage: dict[str, Any], model: list[str]) -> None:
        for name in ("prompt_eval_count", "eval_count"):  # the final line's counts
            if name in data:
                usage[name] = data[name]
        keep_model(model, data.get("model"))

    def text(self, data: Any) -> str:
        if not isinstance(data, dict):
            return ""
        message = data.get("message")  # chat
        if isinstance(message, dict):
            return message.get("content") or ""
        response = data.get("response")  # generate
        return response if isinstance(response, str) else ""

    def ended(self, event: Any) -> tuple[str, str]:
        if isinstance(event, dict) and "done" in event and event["done"] is not True:
            return Outcome.UPSTREAM_CUT, 'ended the stream without "done": true'
        return "", ""

    def tokens(self, raw: dict) -> Tokens:
        return Tokens(count(raw.get("prompt_eval_count")), count(raw.get("eval_count")))

    # --- the response cache

    # stream: how the answer is delivered; keep_alive: how long the model stays loaded.
    cache_neutral_fields: ClassVar[frozenset[str]] = frozenset({"stream", "keep_alive"})
    default_temperature: ClassVar[float] = 0.8

    def temperature(self, body: dict) -> float:
        options = body.get("options")
        return self._temperature(options.get("temperature") if isinstance(options, dict) else None)

    def assemble(self, stream: bytes) -> dict:
        lines = [line for line in self.checked_events(stream) if isinstance(line, dict)]
        if not lines or lines[-1].get("done") is not True:
            raise UnfinishedStream('the stream did not end with "done": true')
        answer = dict(lines[-1])
        if isinstance(answer.get("message"), dict):  # chat
            said = [line["message"] for line in lines if isinstance(line.get("message"), dict)]
            message = {"role": answer["message"].get("role") or "assistant", "content": _joined(said, "content")}
            if any(m.get("thinking") for m in said):
                message["thinking"] = _joined(said, "thinking")
            calls = [call for m in said for call in m.get("tool_calls") or []]
            if calls:
                message["tool_calls"] = calls
            message.update((n, v) for n, v in answer["message"].items() if n not in message and n != "tool_calls")
            answer["message"] = message
        else:  # generate
            answer["response"] = _joined(lines, "response")
            if any(line.get("thinking") for line in lines):
                answer["thinking"] = _joined(lines, "thinking")
        return answer

    def replay(self, answer: dict, *, include_usage: bool) -> bytes:
        # The counts are on the final line, as Ollama reports them, whatever the client asked.
        head = {name: answer[name] for name in ("model", "created_at") if name in answer}
        lines: list[dict] = []
        message = answer.get("message")
        if isinstance(message, dict):  # chat
            role = message.get("role") or "assistant"
            if message.get("thinking"):
                lines.append({**head, "message": {"role": role, "content": "", "thinking": message["thinking"]}})
            if message.get("content"):
                lines.append({**head, "message": {"role": role, "content": message["content"]}})
            if message.get("tool_calls"):
                lines.append({**head, "message": {"role": role, "content": "", "tool_calls": message["tool_calls"]}})
            final = {**answer, "message": {"role": role, "content": ""}}
        else:  # generate
            if answer.get("thinking"):
                lines.append({**head, "response": "", "thinking": answer["thinking"]})
            if answer.get("response"):
                lines.append({**head, "response": answer["response"]})
            final = {**answer, "response": ""}
            final.pop("thinking", None)
        return b"".join(self.event({**line, "done": False}) for line in lines) + self.event(final)


def _image(data: Any) -> dict:
    """Ollama sends images as bare base64 (no media type): PNG and JPEG alike render as an image/png data URL."""
    return (
        parts.image(data) if isinstance(data, str) and data.startswith("data:") else parts.image_data("image/png", data)
    )


def _joined(parts: list[dict], name: str) -> str:
    return "".join(p[name] for p in parts if isinstance(p.get(name), str))
