"""Ollama's API (`/api/chat`, `/api/generate`, `/api/embed`, …): NDJSON streams that end with a line carrying
`"done": true` and the counts (`prompt_eval_count`, `eval_count`), and streaming unless told not to."""

from __future__ import annotations

from typing import Any

from ..records import Outcome
from .base import Tokens, WireFormat, count, dumps, keep_model


class Ollama(WireFormat):
    name = "ollama"
    framing = "ndjson"

    def streams(self, body: dict, endpoint: str) -> bool:
        if endpoint in ("chat", "generate"):
            return body.get("stream") is not False  # Ollama streams unless told not to
        return body.get("stream") is True

    def system(self, body: dict) -> Any:
        return body.get("system")

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
