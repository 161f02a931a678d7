"""What route handlers build: whole or streamed replies, JSON/SSE encoding, and the `_Call` they are given."""

from __future__ import annotations

import itertools
import json
import re
import time
import zlib
from collections.abc import Callable
from typing import Any

from .options import completion_tokens, prompt_tokens

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

_PIECE_RE = re.compile(r"\s*\S+\s*$|\s*\S+")


def _split(text: str, n: int) -> list[str]:
    """n pieces that join back to text: whole words while there are enough, else slices of characters."""
    words = _PIECE_RE.findall(text)
    if n <= len(words):
        return ["".join(words[i * len(words) // n : (i + 1) * len(words) // n]) for i in range(n)]
    size = len(text)
    return [text[i * size // n : (i + 1) * size // n] for i in range(n)]


_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}fake{next(_ids):020d}"


_dump = json.JSONEncoder(separators=(",", ":")).encode


def _dumps(obj: Any) -> bytes:
    return _dump(obj).encode()


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _vector(text: str, dims: int) -> list[float]:
    # Deterministic per input, so tests can compare vectors that went through the gateway.
    seed = zlib.crc32(text.encode())
    return [((seed * (i + 7919)) % 2001 - 1000) / 1000.0 for i in range(dims)]


_DATED_RE = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{3})$")


def _dated(model: str, suffix: str) -> str:
    # Providers answer with a pinned snapshot name; tests use the difference to tell requested from served.
    return model if _DATED_RE.search(model) else model + suffix


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and isinstance(value[0], int):
        return [" ".join(map(str, value))]  # one pre-tokenised input
    if isinstance(value, list):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    return [""]


# ---------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"
NDJSON = "application/x-ndjson"


class Reply:
    __slots__ = ("status", "content_type", "body", "headers")

    def __init__(self, body: bytes, content_type: str = JSON, status: int = 200, headers=None):
        self.status = status
        self.content_type = content_type
        self.body = body
        self.headers: list[tuple[str, str]] = headers or []


class StreamReply:
    """head events, then the counted content chunks, then tail events."""

    __slots__ = ("content_type", "head", "chunks", "tail", "headers")

    def __init__(self, content_type: str, head: list[bytes], chunks: list[bytes], tail: list[bytes]):
        self.content_type = content_type
        self.head = head
        self.chunks = chunks
        self.tail = tail
        self.headers: list[tuple[str, str]] = []


def _json(obj: Any, status: int = 200) -> Reply:
    return Reply(_dumps(obj), JSON, status)


def _sse(obj: Any, event: str | None = None) -> bytes:
    return _sse_raw(_dumps(obj), event)


def _sse_raw(payload: bytes, event: str | None = None) -> bytes:
    data = b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data


_HOLE = "\x00hole\x00"
_HOLE_JSON = _dumps(_HOLE)


def _template(obj: Any) -> Callable[..., bytes]:
    """Serialise obj once; the returned function fills each _HOLE in it, in order, with a JSON value.
    A stream repeats one envelope per chunk, and encoding it afresh was most of a stream's cost."""
    parts = _dumps(obj).split(_HOLE_JSON)

    def fill(*values: Any) -> bytes:
        out = [parts[0]]
        for value, part in zip(values, parts[1:], strict=True):
            out += (_dumps(value), part)
        return b"".join(out)

    return fill


class _Call:
    """What a route handler sees."""

    __slots__ = ("provider", "method", "path", "query", "headers", "body", "data", "opts", "params", "_prompt")

    def __init__(self, provider, method, path, query, headers, body, opts, params):
        self.provider = provider
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.opts = opts
        self.params = params
        self.data: Any = {}
        self._prompt: int | None = None

    def stream_pieces(self) -> list[str]:
        return _split(self.opts.text, self.opts.chunks)

    def prompt_tokens(self) -> int:
        if self._prompt is None:  # several usage blocks per stream need it
            self._prompt = prompt_tokens(self.data)
        return self._prompt

    def answer_tokens(self) -> int:
        return completion_tokens(self.opts.text)
