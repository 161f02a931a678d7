"""OpenAI's chat completions (and legacy completions, embeddings, moderations, models): the format Azure
OpenAI and every OpenAI-compatible provider (Groq, Mistral, DeepSeek, vLLM, …) speak too."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from ..records import Outcome
from .base import (
    TIER_FIELD,
    Tokens,
    UnfinishedStream,
    WireFormat,
    count,
    counted_tools,
    detail,
    dumps,
    keep_model,
    keep_usage,
    sse_event,
    tier_of,
    tool_counts,
)

DONE = b"[DONE]"


class OpenAIChat(WireFormat):
    name = "openai"
    error_types: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
        502: "upstream_error",
        504: "upstream_timeout",
    }

    stop_reasons: ClassVar[dict[str, str]] = {
        "stop": "end",
        "length": "length",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
        "function_call": "tool_use",
    }

    def system(self, body: dict) -> Any:
        return None  # system (and developer) prompts are turns of `messages` here

    def chat_request(self, model, messages, params, stream, *, provider, azure_api_version=""):
        body = {"model": model, "messages": messages, **params}
        if stream:
            body["stream"] = True
        if provider == "azure":
            return f"/openai/deployments/{model}/chat/completions", f"api-version={azure_api_version}", body
        return "/v1/chat/completions", "", body

    def error_body(self, status: int, code: str, message: str) -> bytes:
        error = {"message": message, "type": self.error_types.get(status, "api_error"), "param": None, "code": code}
        return dumps({"error": error})

    def collect(self, data: dict, usage: dict[str, Any], model: list[str]) -> None:
        keep_usage(usage, data.get("usage"))
        tier = data.get("service_tier")
        if isinstance(tier, str) and tier:  # what the request was billed as, on every chunk
            usage[TIER_FIELD] = tier
        keep_model(model, data.get("model"))

    def text(self, data: Any) -> str:
        if not isinstance(data, dict):
            return ""
        out = []
        for choice in data.get("choices") or []:
            if isinstance(choice, dict):
                if "delta" in choice or "message" in choice:
                    part = choice.get("delta") if "delta" in choice else choice.get("message")
                    out.append(((part or {}).get("content")) or "")
                else:  # legacy completions
                    out.append(choice.get("text") or "")
        return "".join(out)

    def finished(self, event: Any) -> tuple[str, str]:
        if event == DONE:
            return "", ""
        return super().finished(event)

    def ended(self, event: Any) -> tuple[str, str]:
        if isinstance(event, dict) and "choices" in event:
            return Outcome.UPSTREAM_CUT, "ended the stream without data: [DONE]"
        return "", ""

    def usage_fields(self, tokens: Tokens) -> dict[str, Any]:
        # prompt_tokens counts every prompt token, cached ones (and, translated, cache writes) included.
        usage: dict[str, Any] = {
            "prompt_tokens": tokens.input,
            "completion_tokens": tokens.output,
            "total_tokens": tokens.total,
            "prompt_tokens_details": {"cached_tokens": tokens.cache_read},
        }
        if tokens.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": tokens.reasoning}
        return usage

    def done_event(self) -> bytes:
        """The event that ends a chat stream."""
        return sse_event(DONE)

    def stream_error(self, kind: str, message: str) -> bytes:
        """An error event in the middle of a chat stream: a chunk holding only `error`, which the SDKs raise."""
        return sse_event({"error": {"message": message, "type": kind or "api_error", "param": None, "code": None}})

    def tokens(self, raw: dict) -> Tokens:
        return Tokens(
            count(raw.get("prompt_tokens")),
            count(raw.get("completion_tokens")),
            detail(raw, "prompt_tokens_details", "cached_tokens"),
            0,
            detail(raw, "completion_tokens_details", "reasoning_tokens"),
            tier=tier_of(raw, TIER_FIELD),
            tools=tool_counts(counted_tools(raw)),
        )

    # --- the response cache

    # user, metadata, store, safety_identifier: who asked and what is kept, not what is answered; service_tier:
    # price and speed; prompt_cache_key, prompt_cache_retention: the provider's prompt cache; stream,
    # stream_options: how the answer is delivered.
    cache_neutral_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "user",
            "metadata",
            "store",
            "service_tier",
            "prompt_cache_key",
            "prompt_cache_retention",
            "safety_identifier",
            "stream",
            "stream_options",
        }
    )

    def uncacheable(self, body: dict, *, allow_files: bool) -> str:
        if allow_files:
            return ""
        modalities = body.get("modalities")
        if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
            return "audio"  # an answer spoken back
        for message in self.messages(body):
            content = message.get("content") if isinstance(message, dict) else None
            for part in content if isinstance(content, list) else ():
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "input_audio":
                    return "audio"
                if kind == "file":
                    return "files"
        return ""

    def assemble(self, stream: bytes) -> dict:
        chunks = [event for event in self.checked_events(stream) if isinstance(event, dict)]
        if not chunks:
            raise UnfinishedStream("the stream holds no chunk")
        first = chunks[0]
        legacy = first.get("object") == "text_completion"
        answer: dict[str, Any] = {
            "id": first.get("id"),
            "object": "text_completion" if legacy else "chat.completion",
            "created": first.get("created"),
            "model": first.get("model"),
        }
        choices: dict[int, dict] = {}
        calls: dict[int, dict[int, dict]] = {}
        extra: dict[str, Any] = {}
        for chunk in chunks:
            if isinstance(chunk.get("usage"), dict):
                extra["usage"] = chunk["usage"]
            for name in ("service_tier", "system_fingerprint"):
                if name in chunk:
                    extra[name] = chunk[name]
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0)
                if legacy:
                    _add_text_choice(choices, index, choice)
                else:
                    _add_chat_choice(choices, calls.setdefault(index, {}), index, choice)
        answer["choices"] = [_chat_choice_done(choices[i], calls.get(i, {})) for i in sorted(choices)]
        for name in ("usage", "service_tier", "system_fingerprint"):
            if name in extra:
                answer[name] = extra[name]
        return answer

    def replay(self, answer: dict, *, include_usage: bool) -> bytes:
        legacy = answer.get("object") == "text_completion"
        base: dict[str, Any] = {
            "id": answer.get("id"),
            "object": "text_completion" if legacy else "chat.completion.chunk",
            "created": answer.get("created"),
            "model": answer.get("model"),
        }
        for name in ("service_tier", "system_fingerprint"):
            if name in answer:
                base[name] = answer[name]
        usage = answer.get("usage") if include_usage else None
        # Asked for, usage is named on every chunk (null) and filled on a last chunk without choices.
        named = {"usage": None} if isinstance(usage, dict) else {}
        out = []
        choices = [c for c in answer.get("choices") or [] if isinstance(c, dict)]
        for choice in sorted(choices, key=lambda c: c.get("index", 0)):
            pieces = _text_pieces(choice) if legacy else _chat_pieces(choice)
            out.extend(self.event({**base, "choices": [piece], **named}) for piece in pieces)
        if isinstance(usage, dict):
            out.append(self.event({**base, "choices": [], "usage": usage}))
        out.append(self.done_event())
        return b"".join(out)

    def strip_usage(self, stream: bytes) -> bytes:
        hidden = HiddenUsage()
        return hidden.feed(stream) + hidden.flush()


# Strings a chat stream sends in parts, joined by `assemble`; the other fields of a delta are set as they come.
_JOINED = frozenset({"content", "refusal", "arguments", "input", "reasoning_content"})


def _merge_delta(into: dict, delta: dict) -> None:
    for name, value in delta.items():
        if name == "index" or value is None:
            continue
        if name in _JOINED and isinstance(value, str):
            into[name] = (into.get(name) or "") + value
        elif isinstance(value, dict):
            _merge_delta(into.setdefault(name, {}), value)
        elif name == "annotations" and isinstance(value, list):
            into.setdefault(name, []).extend(value)
        else:
            into[name] = value


def _merge_logprobs(choice: dict, logprobs: Any) -> None:
    if not isinstance(logprobs, dict):
        return
    kept = choice.get("logprobs")
    if not isinstance(kept, dict):
        choice["logprobs"] = kept = {}
    for name, value in logprobs.items():
        if isinstance(value, list):
            kept.setdefault(name, []).extend(value)
        elif name not in kept:
            kept[name] = value


def _add_chat_choice(choices: dict[int, dict], calls: dict[int, dict], index: int, choice: dict) -> None:
    kept = choices.setdefault(
        index,
        {"index": index, "message": {"role": "assistant", "content": None, "refusal": None}, "logprobs": None},
    )
    delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
    for call in delta.get("tool_calls") or []:
        if isinstance(call, dict):
            _merge_delta(calls.setdefault(call.get("index", len(calls)), {}), call)
    _merge_delta(kept["message"], {k: v for k, v in delta.items() if k != "tool_calls"})
    _merge_logprobs(kept, choice.get("logprobs"))
    if choice.get("finish_reason") is not None:
        kept["finish_reason"] = choice["finish_reason"]


def _add_text_choice(choices: dict[int, dict], index: int, choice: dict) -> None:
    kept = choices.setdefault(index, {"text": "", "index": index, "logprobs": None})
    if isinstance(choice.get("text"), str):
        kept["text"] += choice["text"]
    _merge_logprobs(kept, choice.get("logprobs"))
    if choice.get("finish_reason") is not None:
        kept["finish_reason"] = choice["finish_reason"]


def _chat_choice_done(choice: dict, calls: dict[int, dict]) -> dict:
    choice.setdefault("finish_reason", None)
    if "message" not in choice:
        return choice  # a legacy completion's
    message = choice["message"]
    if calls:
        message["tool_calls"] = [_tool_call_done(call) for _, call in sorted(calls.items())]
    if message.get("content") == "" and (calls or message.get("refusal") or message.get("function_call")):
        message["content"] = None  # as OpenAI answers a turn of tool calls or a refusal without streaming
    return {
        "index": choice["index"],
        "message": message,
        "logprobs": choice["logprobs"],
        "finish_reason": choice["finish_reason"],
    }


def _tool_call_done(call: dict) -> dict:
    done = {"id": call.get("id"), "type": call.get("type") or "function"}
    done.update((name, value) for name, value in call.items() if name not in done)
    if isinstance(done.get("function"), dict):
        done["function"].setdefault("arguments", "")
    return done


def _chat_pieces(choice: dict) -> list[dict]:
    """One choice of a chat completion as the choices of the chunks OpenAI streams it in."""
    index = choice.get("index", 0)
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}

    def piece(delta: dict, finish: Any = None, logprobs: Any = None) -> dict:
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}

    content = message.get("content")
    first = {"role": message.get("role") or "assistant", "content": None if content is None else "", "refusal": None}
    pieces = [piece(first)]
    if isinstance(content, str) and content:
        pieces.append(piece({"content": content}, logprobs=choice.get("logprobs")))
    if message.get("annotations"):
        pieces.append(piece({"annotations": message["annotations"]}))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        pieces.append(piece({"refusal": message["refusal"]}))
    for i, call in enumerate(message.get("tool_calls") or []):
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        if isinstance(function, dict):  # the call, then its arguments, as OpenAI streams them
            head = {**call, "function": {**function, "arguments": ""}}
            pieces.append(piece({"tool_calls": [{"index": i, **head}]}))
            if function.get("arguments"):
                arguments = {"function": {"arguments": function["arguments"]}}
                pieces.append(piece({"tool_calls": [{"index": i, **arguments}]}))
        else:
            pieces.append(piece({"tool_calls": [{"index": i, **call}]}))
    if isinstance(message.get("function_call"), dict):
        pieces.append(piece({"function_call": message["function_call"]}))
    pieces.append(piece({}, choice.get("finish_reason")))
    return pieces


def _text_pieces(choice: dict) -> list[dict]:
    """One choice of a legacy completion as the choices of the chunks OpenAI streams it in."""
    index = choice.get("index", 0)
    return [
        {"text": choice.get("text") or "", "index": index, "logprobs": choice.get("logprobs"), "finish_reason": None},
        {"text": "", "index": index, "logprobs": None, "finish_reason": choice.get("finish_reason")},
    ]


class HiddenUsage:
    """For a chat stream whose client did not ask for usage but the gateway did: drop the usage-only final chunk
    and the `"usage":null` OpenAI then adds to every chunk, so the client gets what it asked for."""

    def __init__(self):
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._buffer + chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:  # hold a partial event until its end arrives
            self._buffer = data
            return b""
        complete, self._buffer = data[: cut + 2], data[cut + 2 :]
        if b'"usage"' not in complete:
            return complete
        events = complete.split(b"\n\n")[:-1]
        kept = [e for e in events if not (b'"choices":[]' in e and b'"usage":{' in e)]
        return b"".join(e.replace(b',"usage":null', b"") + b"\n\n" for e in kept)

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def ask_for_usage(body: bytes, parsed: dict) -> bytes | None:
    """The body of a chat stream with `stream_options.include_usage` added, or None when it already asks (or
    cannot be asked). Usage is otherwise never reported on a stream."""
    options = parsed.get("stream_options")
    if options is None:
        # Prepending a key leaves every message byte where it was.
        return b'{"stream_options":{"include_usage":true},' + body.lstrip()[1:]
    if isinstance(options, dict) and not options.get("include_usage"):
        return orjson.dumps({**parsed, "stream_options": {**options, "include_usage": True}})
    return None
