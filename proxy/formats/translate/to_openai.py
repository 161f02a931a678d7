"""An Anthropic Messages client answered by an OpenAI chat completions target (OpenAI, Azure or an
OpenAI-compatible provider): the request into OpenAI's, the answer and the stream back into Anthropic's."""

from __future__ import annotations

from typing import Any

import orjson

from ...providers import REGISTRY
from ..openai_chat import DONE
from .base import ANTHROPIC, OPENAI, OPENAI_MAX_STOP, StreamTranslator, Translator, answer_input, invalid, text_of

_ANTHROPIC_TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "stream",
        "tools",
        "tool_choice",
        "metadata",
    }
)
_ANTHROPIC_WHY = {
    "top_k": "has no top_k",
    "thinking": "has no extended thinking budget (its reasoning models take reasoning_effort)",
    "service_tier": "has other service tiers",
    "container": "has no code-execution containers",
    "mcp_servers": "calls no MCP servers itself",
    "context_management": "has no context management",
}
# Anthropic parameters that change nothing at these values.
_ANTHROPIC_NEUTRAL: dict[str, tuple] = {
    "top_k": (None,),
    "thinking": (None, {"type": "disabled"}),
    "service_tier": (None, "auto"),
    "container": (None,),
    "mcp_servers": (None, []),
    "context_management": (None,),
}
# Providers that take the answer's length as `max_completion_tokens` (OpenAI deprecated `max_tokens`, which its
# reasoning models refuse); OpenAI-compatible providers take `max_tokens`.
_MAX_COMPLETION_TOKENS = frozenset({"openai", "azure"})


class AnthropicToOpenAI(Translator):
    """An Anthropic Messages client answered by an OpenAI chat completions target (OpenAI, Azure, or any
    OpenAI-compatible provider)."""

    client = ANTHROPIC
    target = OPENAI

    def __init__(self, *, drop_unsupported: bool, target_provider: str = ""):
        super().__init__(drop_unsupported=drop_unsupported)
        self.target_provider = target_provider

    def _request(self, body: dict, target_model: str) -> dict:
        for name, value in body.items():
            if name in _ANTHROPIC_TRANSLATED:
                continue
            if name in _ANTHROPIC_NEUTRAL:
                if value not in _ANTHROPIC_NEUTRAL[name]:
                    self.unsupported(name, _ANTHROPIC_WHY[name])
            else:
                self.unsupported(name, "has no such parameter")
        messages = self._system(body.get("system"))
        turns = body.get("messages")
        if not isinstance(turns, list) or not turns:
            raise invalid("`messages` must be a non-empty list.")
        for i, turn in enumerate(turns):
            messages.extend(self._turn(turn, i))
        out: dict[str, Any] = {"model": target_model, "messages": messages}
        max_tokens = body.get("max_tokens")
        if max_tokens is not None:
            field = "max_completion_tokens" if self.target_provider in _MAX_COMPLETION_TOKENS else "max_tokens"
            out[field] = max_tokens
        stop = body.get("stop_sequences")
        if isinstance(stop, list) and stop:
            if len(stop) > OPENAI_MAX_STOP:
                self.unsupported("stop_sequences", f"takes at most {OPENAI_MAX_STOP} stop sequences")
                stop = stop[:OPENAI_MAX_STOP]
            out["stop"] = stop
        for name in ("temperature", "top_p"):
            if body.get(name) is not None:
                out[name] = body[name]
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            for name in metadata:
                if name != "user_id":
                    self.unsupported(f"metadata.{name}", "keeps a user id only")
            if isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
                out["user"] = metadata["user_id"]
        self._tools(body, out)
        if self.stream_requested:
            out["stream"] = True
            spec = REGISTRY.get(self.target_provider)
            # Usage is reported on an OpenAI stream only when asked for; the Anthropic client needs it.
            if spec is None or spec.stream_usage_option:
                out["stream_options"] = {"include_usage": True}
        return out

    def _system(self, system: Any) -> list[dict]:
        if system is None or system == "" or system == []:
            return []
        if isinstance(system, str):
            return [{"role": "system", "content": system}]
        if not isinstance(system, list):
            raise invalid("`system` must be a string or a list of text blocks.")
        parts = []
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise invalid(f"`system[{i}]` must be a text block.")
            parts.append({"type": "text", "text": block.get("text") or ""})  # cache_control: OpenAI caches itself
        return [{"role": "system", "content": parts[0]["text"] if len(parts) == 1 else parts}]

    def _turn(self, turn: Any, i: int) -> list[dict]:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise invalid(f"`messages[{i}]` must be an object with role user or assistant.")
        role, content = turn["role"], turn.get("content")
        if isinstance(content, str):
            return [{"role": role, "content": content}]
        if not isinstance(content, list):
            raise invalid(f"`messages[{i}].content` must be a string or a list of content blocks.")
        return self._assistant(content, i) if role == "assistant" else self._user(content, i)

    def _user(self, content: list, i: int) -> list[dict]:
        """A user turn: each tool_result a `tool` message (in order), the other blocks user messages."""
        out: list[dict] = []
        parts: list[dict] = []
        for j, block in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "tool_result":
                if parts:
                    out.append({"role": "user", "content": parts})
                    parts = []
                out.append(self._tool_result(block, where))
                continue
            part = self._part(block, where)
            if part is not None:
                parts.append(part)
        if parts:
            text_only = all(p["type"] == "text" for p in parts)
            out.append({"role": "user", "content": "".join(p["text"] for p in parts) if text_only else parts})
        return out

    def _part(self, block: Any, where: str) -> dict | None:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            if block.get("citations"):
                self.unsupported(f"{where}.citations", "has no citations")
            return {"type": "text", "text": block.get("text") or ""}
        if kind == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64":
                url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            elif source.get("type") == "url":
                url = source.get("url")
            else:
                self.unsupported(f"{where}.source", "takes images inline or by URL only (no uploaded file ids)")
                return None
            return {"type": "image_url", "image_url": {"url": url}}
        if kind == "document":
            source = block.get("source") or {}
            if source.get("type") == "text":
                return {"type": "text", "text": source.get("data") or ""}
            if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
                file = {"file_data": f"data:application/pdf;base64,{source.get('data')}"}
                file["filename"] = block.get("title") or "document.pdf"
                return {"type": "file", "file": file}
            self.unsupported(f"{where}.source", "takes documents as inline PDF or text only")
            return None
        self.unsupported(f"{where}.type", f"has no content block of type {kind!r}")
        return None

    def _tool_result(self, block: dict, where: str) -> dict:
        if block.get("is_error"):
            self.unsupported(f"{where}.is_error", "cannot mark a tool result as an error")
        content = block.get("content")
        if isinstance(content, list):
            texts = []
            for k, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "text":
                    texts.append(part.get("text") or "")
                else:
                    self.unsupported(f"{where}.content[{k}]", "takes text only in a tool result")
            content = "".join(texts)
        return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": content or ""}

    def _assistant(self, content: list, i: int) -> list[dict]:
        texts, calls = [], []
        for j, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                function = {"name": block.get("name"), "arguments": arguments}
                calls.append({"id": block.get("id"), "type": "function", "function": function})
            elif kind in ("thinking", "redacted_thinking"):
                self.unsupported(f"messages[{i}].content[{j}]", "takes no thinking blocks back")
            else:
                self.unsupported(f"messages[{i}].content[{j}].type", f"has no content block of type {kind!r}")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
        if calls:
            message["tool_calls"] = calls
        return [message]

    def _tools(self, body: dict, out: dict) -> None:
        tools = body.get("tools")
        if isinstance(tools, list) and tools:
            translated = []
            for i, tool in enumerate(tools):
                if not isinstance(tool, dict) or tool.get("type") not in (None, "custom") or "name" not in tool:
                    kind = tool.get("type") if isinstance(tool, dict) else None
                    self.unsupported(f"tools[{i}]", f"has no server tool {kind!r} (function tools only)")
                    continue
                function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
                if tool.get("description"):
                    function["description"] = tool["description"]
                translated.append({"type": "function", "function": function})
            if translated:
                out["tools"] = translated
        choice = body.get("tool_choice")
        if choice is None:
            return
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise invalid("`tool_choice.type` must be auto, any, tool or none.")
        kind = choice["type"]
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        else:
            out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
        if choice.get("disable_parallel_tool_use") and out.get("tools"):
            out["parallel_tool_calls"] = False

    # the answer

    def _response(self, data: dict) -> dict:
        choices = data.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        content: list[dict] = []
        text = message.get("content")
        if isinstance(text, list):
            text = text_of(text)
        if text:
            content.append({"type": "text", "text": text})
        if message.get("refusal"):
            content.append({"type": "text", "text": message["refusal"]})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": answer_input(function.get("arguments")),
                }
            )
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return {
            "id": data.get("id"),
            "type": "message",
            "role": "assistant",
            "model": data.get("model") or self._model,
            "content": content,
            "stop_reason": ANTHROPIC.stop_reason_of(OPENAI.shared_stop(choice.get("finish_reason"))),
            "stop_sequence": None,
            "usage": ANTHROPIC.usage_fields(OPENAI.tokens(usage)),
        }

    def stream(self) -> OpenAIToAnthropicStream:
        return OpenAIToAnthropicStream(self._model)


class OpenAIToAnthropicStream(StreamTranslator):
    """OpenAI chat completion chunks as an Anthropic Messages stream: message_start on the first chunk, a text or
    tool_use block per run of text or per tool call (argument deltas as input_json_delta), and message_delta with
    the stop reason and the usage, then message_stop, once OpenAI's usage chunk and [DONE] have come."""

    def __init__(self, model: str):
        super().__init__()
        self._model = model
        self._started = False
        self._block = -1  # index of the open block, -1 when none is open
        self._open = ""  # "text" or "tool"
        self._count = 0  # blocks started so far
        self._tools: dict[Any, int] = {}  # OpenAI tool call index -> block index
        self._stop: str | None = None
        self._usage: dict[str, Any] = {}

    def _start(self, data: dict) -> bytes:
        self._started = True
        message = {
            "id": data.get("id") or "",
            "type": "message",
            "role": "assistant",
            "model": data.get("model") or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # OpenAI reports usage only at the end of the stream: message_delta carries all of it.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return ANTHROPIC.stream_event({"type": "message_start", "message": message})

    def _open_block(self, kind: str, block: dict) -> bytes:
        out = self._close_block()
        self._block, self._open = self._count, kind
        self._count += 1
        return out + ANTHROPIC.stream_event(
            {"type": "content_block_start", "index": self._block, "content_block": block}
        )

    def _close_block(self) -> bytes:
        if self._block < 0:
            return b""
        index, self._block, self._open = self._block, -1, ""
        return ANTHROPIC.stream_event({"type": "content_block_stop", "index": index})

    def _delta(self, index: int, delta: dict) -> bytes:
        return ANTHROPIC.stream_event({"type": "content_block_delta", "index": index, "delta": delta})

    def _event(self, data: Any) -> bytes:
        if data == DONE:
            return self._finish() if self._started else b""
        error = data.get("error")
        if error and "choices" not in data:
            self.done = True
            error = error if isinstance(error, dict) else {"message": str(error)}
            message = str(error.get("message") or "The upstream model's stream ended on an error.")
            kind = str(error.get("type") or "")
            return ANTHROPIC.stream_error("api_error" if kind == "server_error" else kind, message)
        out = [] if self._started else [self._start(data)]
        if isinstance(data.get("usage"), dict):
            self._usage = data["usage"]
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                if self._open != "text":
                    out.append(self._open_block("text", {"type": "text", "text": ""}))
                out.append(self._delta(self._block, {"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or []:
                out.append(self._tool_delta(call))
            if choice.get("finish_reason"):
                out.append(self._close_block())
                self._stop = choice["finish_reason"]
        return b"".join(out)

    def _tool_delta(self, call: Any) -> bytes:
        if not isinstance(call, dict):
            return b""
        function = call.get("function") or {}
        out = b""
        key = call.get("index", 0)
        if key not in self._tools:
            block = {"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or "", "input": {}}
            out = self._open_block("tool", block)
            self._tools[key] = self._block
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out += self._delta(self._tools[key], {"type": "input_json_delta", "partial_json": arguments})
        return out

    def _finish(self) -> bytes:
        self.done = True
        stop = ANTHROPIC.stop_reason_of(OPENAI.shared_stop(self._stop))
        delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}}
        delta["usage"] = ANTHROPIC.usage_fields(OPENAI.tokens(self._usage))
        return self._close_block() + ANTHROPIC.stream_event(delta) + ANTHROPIC.stream_event({"type": "message_stop"})

    def _end(self) -> bytes:
        # A stream that gave its finish reason but no [DONE] (some OpenAI-compatible servers) still ends whole.
        return self._finish() if self._started and self._stop and not self.done else b""
