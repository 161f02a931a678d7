"""An OpenAI chat completions client answered by an Anthropic Messages target: the request into Anthropic's, the
answer and the stream back into OpenAI's."""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..anthropic import API_VERSION
from .base import (
    ANTHROPIC,
    DEFAULT_MAX_TOKENS,
    OPENAI,
    StreamTranslator,
    Translator,
    data_url,
    invalid,
    json_object,
)

# OpenAI parameters that change nothing at these values, so they translate to nothing.
_OPENAI_NEUTRAL: dict[str, tuple] = {
    "n": (1, None),
    "frequency_penalty": (0, 0.0, None),
    "presence_penalty": (0, 0.0, None),
    "logprobs": (False, None),
    "top_logprobs": (0, None),
    "store": (False, None),
    "logit_bias": (None,),
    "seed": (None,),
    "metadata": (None,),
    "modalities": (["text"], None),
    "service_tier": ("auto", None),
    "reasoning_effort": (None,),
    "prediction": (None,),
    "audio": (None,),
    "web_search_options": (None,),
    "functions": (None,),
    "function_call": (None,),
    "verbosity": (None,),
}
# What Anthropic lacks, said for the error message.
_OPENAI_WHY = {
    "n": "returns one choice per request",
    "frequency_penalty": "has no frequency penalty",
    "presence_penalty": "has no presence penalty",
    "logprobs": "returns no log probabilities",
    "top_logprobs": "returns no log probabilities",
    "store": "does not store completions",
    "logit_bias": "has no logit bias",
    "seed": "has no seed",
    "metadata": "keeps no completion metadata (only a user id)",
    "modalities": "answers in text only",
    "service_tier": "has other service tiers",
    "reasoning_effort": "sets extended thinking by a token budget, not an effort",
    "prediction": "has no predicted outputs",
    "audio": "answers in text only",
    "web_search_options": "searches the web through a server tool instead",
    "functions": "takes `tools` only (the legacy `functions` are not translated)",
    "function_call": "takes `tool_choice` only (the legacy `function_call` is not translated)",
    "verbosity": "has no verbosity setting",
    "response_format": "has no JSON mode or response schema",
}
# Caching hints: Anthropic caches at explicit breakpoints instead, so dropping them keeps the answer the same.
_OPENAI_CACHE_HINTS = frozenset({"prompt_cache_key", "prompt_cache_retention"})
_OPENAI_TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "response_format",
    }
)


class OpenAIToAnthropic(Translator):
    """An OpenAI chat completions client answered by an Anthropic Messages target."""

    client = OPENAI
    target = ANTHROPIC

    def __init__(self, *, drop_unsupported: bool, default_max_tokens: int = DEFAULT_MAX_TOKENS):
        super().__init__(drop_unsupported=drop_unsupported)
        self.default_max_tokens = default_max_tokens
        self.include_usage = False

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("anthropic-version", API_VERSION)]

    def _request(self, body: dict, target_model: str) -> dict:
        for name, value in body.items():
            if name in _OPENAI_TRANSLATED or name in _OPENAI_CACHE_HINTS:
                continue
            if name in _OPENAI_NEUTRAL:
                if value not in _OPENAI_NEUTRAL[name]:
                    self.unsupported(name, _OPENAI_WHY[name])
            else:
                self.unsupported(name, "has no such parameter")
        out: dict[str, Any] = {"model": target_model}
        system, messages = self._messages(body.get("messages"))
        if system:
            out["system"] = system
        out["messages"] = messages
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        out["max_tokens"] = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else self.default_max_tokens
        stop = body.get("stop")
        if isinstance(stop, str):
            out["stop_sequences"] = [stop]
        elif isinstance(stop, list) and stop:
            out["stop_sequences"] = stop
        temperature = body.get("temperature")
        if temperature is not None:
            if isinstance(temperature, (int, float)) and temperature > 1:
                self.unsupported("temperature", "takes a temperature from 0 to 1 (OpenAI's goes to 2)")
                temperature = 1.0  # dropped: the nearest temperature the target takes
            out["temperature"] = temperature
        for name in ("top_p", "top_k"):
            if body.get(name) is not None:
                out[name] = body[name]
        user = body.get("user") or body.get("safety_identifier")
        if isinstance(user, str) and user:
            out["metadata"] = {"user_id": user}
        format_ = body.get("response_format")
        if isinstance(format_, dict) and format_.get("type") not in (None, "text"):
            self.unsupported("response_format", _OPENAI_WHY["response_format"])
        self._tools(body, out)
        if self.stream_requested:
            out["stream"] = True
            options = body.get("stream_options")
            self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return out

    def _tools(self, body: dict, out: dict) -> None:
        tools = body.get("tools")
        if isinstance(tools, list) and tools:
            out["tools"] = [self._tool(tool, i) for i, tool in enumerate(tools)]
            out["tools"] = [t for t in out["tools"] if t]
        choice = body.get("tool_choice")
        translated: dict[str, Any] | None = None
        if choice in ("auto", "none"):
            translated = {"type": choice}
        elif choice == "required":
            translated = {"type": "any"}
        elif isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
            if not name:
                self.unsupported("tool_choice", "can require a function tool by name only")
            else:
                translated = {"type": "tool", "name": name}
        elif choice is not None:
            raise invalid("`tool_choice` must be auto, none, required or a named function.")
        if body.get("parallel_tool_calls") is False and out.get("tools"):
            translated = translated or {"type": "auto"}
            if translated["type"] != "none":
                translated["disable_parallel_tool_use"] = True
        if translated is not None and (out.get("tools") or translated["type"] == "none"):
            out["tool_choice"] = translated

    def _tool(self, tool: Any, i: int) -> dict | None:
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            self.unsupported(f"tools[{i}]", "takes function tools only here")
            return None
        function = tool["function"]
        if function.get("strict"):
            self.unsupported(f"tools[{i}].function.strict", "does not enforce a tool's schema strictly")
        out = {"name": function.get("name"), "input_schema": function.get("parameters") or {"type": "object"}}
        if function.get("description"):
            out["description"] = function["description"]
        return out

    def _messages(self, messages: Any) -> tuple[list[dict], list[dict]]:
        """(system blocks, turns): system and developer messages become the top-level system; a tool's result
        becomes a tool_result block of a user turn; consecutive turns of one role merge (Anthropic alternates)."""
        if not isinstance(messages, list) or not messages:
            raise invalid("`messages` must be a non-empty list.")
        system: list[dict] = []
        turns: list[dict] = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise invalid(f"`messages[{i}]` must be an object.")
            role = message.get("role")
            if message.get("name"):
                self.unsupported(f"messages[{i}].name", "has no participant names")
            if role in ("system", "developer"):
                system.extend(self._blocks(message.get("content"), f"messages[{i}].content", text_only=True))
                continue
            if role == "user":
                blocks = self._blocks(message.get("content"), f"messages[{i}].content")
            elif role == "assistant":
                blocks = self._assistant(message, i)
            elif role == "tool":
                blocks = [self._tool_result(message, i)]
                role = "user"
            else:
                raise invalid(f"`messages[{i}].role` must be system, developer, user, assistant or tool.")
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        for turn in turns:  # a lone text turn goes as a plain string, as people write it
            content = turn["content"]
            if len(content) == 1 and content[0]["type"] == "text" and set(content[0]) == {"type", "text"}:
                turn["content"] = content[0]["text"]
        return system, turns

    def _blocks(self, content: Any, where: str, *, text_only: bool = False) -> list[dict]:
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise invalid(f"`{where}` must be a string or a list of content parts.")
        blocks = []
        for j, part in enumerate(content):
            block = self._part(part, f"{where}[{j}]", text_only)
            if block is not None:
                if isinstance(part, dict) and isinstance(part.get("cache_control"), dict):
                    # A breakpoint some OpenAI-compatible gateways accept on parts: Anthropic has the same.
                    block["cache_control"] = part["cache_control"]
                blocks.append(block)
        return blocks

    def _part(self, part: Any, where: str, text_only: bool) -> dict | None:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            return {"type": "text", "text": part.get("text") or ""}
        if kind == "image_url" and not text_only:
            url = (part.get("image_url") or {}).get("url") or ""
            inline = data_url(url)
            if inline:
                return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
            if url.startswith(("http://", "https://")):
                return {"type": "image", "source": {"type": "url", "url": url}}
            raise invalid(f"`{where}.image_url.url` must be an http(s) URL or a base64 data: URL.")
        if kind == "file" and not text_only:
            file = part.get("file") or {}
            inline = data_url(file.get("file_data") or "")
            if inline and inline[0] == "application/pdf":
                block: dict[str, Any] = {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": inline[1]},
                }
                if file.get("filename"):
                    block["title"] = file["filename"]
                return block
            self.unsupported(f"{where}.file", "takes inline PDF files only here (no uploaded file ids)")
            return None
        self.unsupported(f"{where}.type", f"has no content part of type {kind!r} here")
        return None

    def _assistant(self, message: dict, i: int) -> list[dict]:
        blocks = []
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") in ("text", "refusal"):
                    text = part.get("text") if part["type"] == "text" else part.get("refusal")
                    if text:
                        blocks.append({"type": "text", "text": text})
                else:
                    self.unsupported(f"messages[{i}].content[{j}]", "takes text in an assistant turn")
        elif isinstance(content, str) and content:
            blocks.append({"type": "text", "text": content})
        if isinstance(message.get("refusal"), str) and message["refusal"] and not blocks:
            blocks.append({"type": "text", "text": message["refusal"]})
        for j, call in enumerate(message.get("tool_calls") or []):
            where = f"messages[{i}].tool_calls[{j}]"
            if not isinstance(call, dict) or call.get("type", "function") != "function":
                self.unsupported(where, "takes function tool calls only here")
                continue
            function = call.get("function") or {}
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": json_object(function.get("arguments"), f"{where}.function.arguments"),
                }
            )
        if message.get("function_call"):
            self.unsupported(f"messages[{i}].function_call", _OPENAI_WHY["function_call"])
        return blocks

    def _tool_result(self, message: dict, i: int) -> dict:
        content = message.get("content")
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
        if isinstance(content, str):
            block["content"] = content
        else:
            block["content"] = self._blocks(content, f"messages[{i}].content", text_only=True)
        return block

    # the answer

    def _response(self, data: dict) -> dict:
        text, calls = [], []
        for block in data.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                text.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input")).decode()},
                    }
                )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(text) if text or not calls else None,
            "refusal": None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = calls
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return {
            "id": data.get("id"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": data.get("model") or self._model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": OPENAI.stop_reason_of(ANTHROPIC.shared_stop(data.get("stop_reason"))),
                }
            ],
            "usage": OPENAI.usage_fields(ANTHROPIC.tokens(usage)),
        }

    def stream(self) -> AnthropicToOpenAIStream:
        return AnthropicToOpenAIStream(self._model, self.include_usage)


class AnthropicToOpenAIStream(StreamTranslator):
    """An Anthropic Messages stream as OpenAI chat completion chunks: text and tool-call argument deltas as they
    come, the finish reason on message_delta, the usage chunk (when the client asked) and [DONE] on
    message_stop. Thinking blocks are not passed on (chat completions has no place for them)."""

    def __init__(self, model: str, include_usage: bool):
        super().__init__()
        self._id = ""
        self._model = model
        self._created = int(time.time())
        self._include_usage = include_usage
        self._usage: dict[str, Any] = {}
        self._tools: dict[Any, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._finished = False

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self._include_usage:
            chunk["usage"] = None  # as OpenAI sends every chunk but the last when usage is asked for
        return OPENAI.event(chunk)

    def _event(self, data: Any) -> bytes:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "message_start":
            message = data.get("message") or {}
            self._id = message.get("id") or self._id
            self._model = message.get("model") or self._model
            usage = message.get("usage")
            if isinstance(usage, dict):
                self._usage.update(usage)
            return self._chunk({"role": "assistant", "content": "", "refusal": None})
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tools[data.get("index")] = len(self._tools)
                call = {"index": index, "id": block.get("id"), "type": "function"}
                call["function"] = {"name": block.get("name"), "arguments": ""}
                return self._chunk({"tool_calls": [call]})
            if block.get("type") == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
            return b""
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return self._chunk({"content": delta.get("text") or ""})
            if (
                delta.get("type") == "input_json_delta"
                and delta.get("partial_json")
                and data.get("index") in self._tools
            ):
                call = {"index": self._tools[data.get("index")], "function": {"arguments": delta.get("partial_json")}}
                return self._chunk({"tool_calls": [call]})
            return b""
        if kind == "message_delta":
            usage = data.get("usage")
            if isinstance(usage, dict):  # cumulative counts
                self._usage.update({k: v for k, v in usage.items() if v is not None})
            stop = (data.get("delta") or {}).get("stop_reason")
            self._finished = True
            return self._chunk({}, OPENAI.stop_reason_of(ANTHROPIC.shared_stop(stop)))
        if kind == "message_stop":
            return self._close()
        if kind == "error":
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            self.done = True
            message = str(error.get("message") or "The upstream model's stream ended on an error.")
            return OPENAI.stream_error(str(error.get("type") or ""), message)
        return b""  # ping, content_block_stop, and what chat completions has no place for

    def _close(self) -> bytes:
        self.done = True
        out = b""
        if self._include_usage:
            usage = OPENAI.usage_fields(ANTHROPIC.tokens(self._usage))
            out = OPENAI.event(
                {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [],
                    "usage": usage,
                }
            )
        return out + OPENAI.done_event()

    def _end(self) -> bytes:
        # A stream that said why it stopped but lost its last event still ends as OpenAI ends one.
        return self._close() if self._finished and not self.done else b""
