"""What every translation between two wire formats shares: the per-request `Translator` (request, whole
answer, stream editor), the stream editor's event loop on the formats' own SSE splitter, and content helpers."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from ...codes import ErrorCode
from ...errors import ProxyError
from ..anthropic import AnthropicMessages
from ..base import Events, WireFormat
from ..openai_chat import DONE, OpenAIChat

# max_tokens for an Anthropic target when the OpenAI request sets none (Anthropic requires it; every current
# Claude model can write at least this many tokens).
DEFAULT_MAX_TOKENS = 4096
# OpenAI takes at most this many stop sequences.
OPENAI_MAX_STOP = 4

OPENAI = OpenAIChat()
ANTHROPIC = AnthropicMessages()


class Translator:
    """One request's translation. Call `request` first (it notes what the answer needs: the stream's usage
    option, the model asked for), then `response` for a whole answer or `stream()` for a streamed one."""

    client: ClassVar[WireFormat]
    target: ClassVar[WireFormat]

    def __init__(self, *, drop_unsupported: bool):
        self.drop_unsupported = drop_unsupported
        self.dropped: list[str] = []  # what was dropped from the request, for the record
        self.stream_requested = False
        self._model = ""

    # --- the request

    def request(self, body: dict, target_model: str) -> dict:
        """The target-format request body for `body` in the client's format, for `target_model`. Raises
        ProxyError 400 (untranslatable_parameter) naming what the target cannot take, unless dropping."""
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        self._model = target_model
        self.stream_requested = body.get("stream") is True
        return self._request(body, target_model)

    def _request(self, body: dict, target_model: str) -> dict:
        raise NotImplementedError

    def endpoint(self, target_model: str, *, provider: str = "", azure_api_version: str = "") -> tuple[str, str]:
        """(path, query) of the target's endpoint for the translated request (Azure's has the deployment)."""
        path, query, _ = self.target.chat_request(
            target_model, [], {}, self.stream_requested, provider=provider, azure_api_version=azure_api_version
        )
        return path, query

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Headers the target needs beyond the credential. The client's own format headers (anthropic-version,
        anthropic-beta) are the client's and must not be forwarded to another format's target."""
        return []

    def unsupported(self, name: str, why: str) -> None:
        """Refuse the request for `name`, or note it dropped when the route drops what cannot be translated."""
        if self.drop_unsupported:
            self.dropped.append(name)
            return
        raise ProxyError(
            400,
            ErrorCode.UNTRANSLATABLE_PARAMETER,
            f"`{name}` cannot be translated: this route sends the request to {self._model or 'a model'} over "
            f"{TITLES[self.target.name]}, which {why}. Remove `{name}`, or configure the route to drop what "
            "cannot be translated.",
        )

    # --- the answer

    def response(self, body: bytes, status: int) -> bytes:
        """A whole (not streamed) answer of the target, success or error, in the client's format; the status
        stays as the target gave it. An error keeps the target's message in the client's error shape."""
        if status >= 400:
            kind, message = self.target.read_error(body)
            message = message or f"The upstream model answered with HTTP {status}."
            return self.client.error_body(status, kind, message)
        try:
            data = orjson.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProxyError(
                502, ErrorCode.UNTRANSLATABLE_RESPONSE, "The upstream model's answer is not a JSON object."
            )
        return orjson.dumps(self._response(data))

    def _response(self, data: dict) -> dict:
        raise NotImplementedError

    def stream(self) -> StreamTranslator:
        """An editor (feed/flush, as proxy.exchange.Editor) turning the target's SSE stream into the client's,
        event by event as the bytes arrive."""
        raise NotImplementedError

    def editor(self, status: int, streamed: bool) -> StreamTranslator | WholeBody:
        """The editor for an answer as it starts: the stream translator for a successful stream, else one that
        holds the body and translates it whole at its end (errors arrive as JSON even on a stream request)."""
        return self.stream() if streamed and status < 400 else WholeBody(self, status)

    @staticmethod
    def response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The target's response headers for a translated answer: its content-length no longer holds."""
        return [(name, value) for name, value in headers if name.lower() != b"content-length"]


TITLES = {"openai": "OpenAI's chat completions API", "anthropic": "Anthropic's Messages API"}


def invalid(message: str) -> ProxyError:
    return ProxyError(400, ErrorCode.INVALID_REQUEST, message)


class WholeBody:
    """An editor that holds a whole answer and translates it at its end (for answers that are not streamed)."""

    def __init__(self, translator: Translator, status: int):
        self._translator = translator
        self._status = status
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        self._parts.append(chunk)
        return b""

    def flush(self) -> bytes:
        body, self._parts = b"".join(self._parts), []
        try:
            return self._translator.response(body, self._status)
        except ProxyError as exc:  # headers are gone already: the client's error shape is all that can change
            return self._translator.client.error_body(exc.status, exc.code, exc.message)


class StreamTranslator:
    """Turns a target's SSE stream into the client's, event by event: a partial event is held only until its end
    arrives. Matches proxy.exchange.Editor (feed, flush). A stream that stops without its end marker is not
    given one, so the client sees it cut as the target cut it."""

    def __init__(self):
        self._events = Events()
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._on(payload) for payload in self._events.feed(chunk))

    def flush(self) -> bytes:
        return b"".join(self._on(payload) for payload in self._events.flush()) + self._end()

    def _on(self, payload: bytes) -> bytes:
        if self.done:
            return b""
        if payload == DONE:
            return self._event(DONE)
        try:
            data = orjson.loads(payload)
        except ValueError:
            return b""  # not an event of the format (a provider's comment or keep-alive)
        return self._event(data) if isinstance(data, dict) else b""

    def _event(self, data: Any) -> bytes:
        raise NotImplementedError

    def _end(self) -> bytes:
        return b""


# --- helpers for content --------------------------------------------------------------------------------


def json_object(text: Any, where: str) -> dict:
    """A tool call's arguments (a JSON string) as the object Anthropic's tool_use `input` is."""
    if isinstance(text, dict):
        return text
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except (ValueError, TypeError):
        raise invalid(f"`{where}` is not valid JSON, so it cannot become an Anthropic tool_use input.") from None
    if not isinstance(value, dict):
        raise invalid(f"`{where}` is not a JSON object, so it cannot become an Anthropic tool_use input.")
    return value


def answer_input(text: Any) -> Any:
    """Arguments an OpenAI model wrote, as a tool_use `input`: the object, or the text as written when a model
    wrote something that is not a JSON object (the answer is the model's; it is not refused)."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = orjson.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a base64 data: URL, else None."""
    if not url.startswith("data:"):
        return None
    head, _, data = url[5:].partition(",")
    media_type, _, encoding = head.partition(";")
    return (media_type, data) if encoding == "base64" and data else None


def text_of(content: Any) -> str:
    """The text of OpenAI message content: a string, or text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""
