"""Reads usage off a response as it passes, without holding the stream back: decompresses on the side when
the upstream compressed it, splits SSE / NDJSON lines, and hands each event to the request's wire format
(proxy/formats), which keeps the raw usage fields and judges how the stream ended. Normalising usage into
tokens and pricing it is the observability app's job."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from .formats import WireFormat, event_payload
from .records import Outcome

# A non-streamed body larger than this is not parsed for usage (e.g. base64 images); it is still relayed.
_MAX_PARSED_BODY = 4 * 1024 * 1024


class UsageTap:
    """`keep`: also keep up to this many bytes of the decoded response, for orgs that store bodies."""

    def __init__(self, fmt: WireFormat, content_type: str, content_encoding: str, keep: int = 0):
        self.fmt = fmt
        self.streamed = "event-stream" in content_type or "ndjson" in content_type
        self._json = "json" in content_type
        encoding = content_encoding.strip().lower()
        # wbits 47: accept a gzip or zlib header (32 + 15); raw deflate streams use -15.
        self._inflate = zlib.decompressobj(47) if encoding in ("gzip", "x-gzip", "deflate") else None
        self._readable = encoding in ("", "identity", "gzip", "x-gzip", "deflate")
        self._pending = b""
        self._size = 0
        self.usage: dict[str, Any] = {}
        self._model: list[str] = []
        self._keep = keep
        self.kept = bytearray()
        self.truncated = False
        self._last: bytes | None = None  # the stream's last event, for how it ended

    @property
    def model(self) -> str:
        return self._model[0] if self._model else ""

    def feed(self, chunk: bytes) -> None:
        if not self._readable:
            return
        try:
            data = self._inflate.decompress(chunk) if self._inflate else chunk
        except zlib.error:
            self._readable = False
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        if self._keep:
            room = self._keep - len(self.kept)
            self.kept += data[:room]
            self.truncated = self.truncated or len(data) > room
        if self.streamed:
            self._lines(data)
        elif self._json:
            self._size += len(data)
            if self._size <= _MAX_PARSED_BODY:
                self._pending += data

    def _lines(self, data: bytes) -> None:
        buffer = self._pending + data
        *lines, self._pending = buffer.split(b"\n")
        # The loop of every streamed chunk: blank lines and `event:` names are passed over without a call.
        for line in lines:
            if line[:5] == b"data:" or line[:1] == b"{":
                self._line(line)

    def _line(self, line: bytes) -> None:
        line = event_payload(line)
        first = line[:1]
        if first != b"{" and first != b"[":
            return
        self._last = line
        # Only events that can carry what the record needs are parsed: most of a stream is text deltas.
        if first == b"{" and self.fmt.interesting(line, bool(self._model)):
            self._collect(line)

    def _collect(self, raw: bytes) -> None:
        try:
            data = orjson.loads(raw)
        except ValueError:
            return  # a provider's odd line is not the gateway's problem; the client got it untouched
        if isinstance(data, dict):
            self.fmt.collect(data, self.usage, self._model)

    def finish(self) -> None:
        if not self._readable:
            return
        if self._inflate is not None:
            try:
                tail = self._inflate.flush()
            except zlib.error:
                return
            if tail:
                self._take(tail)
        if self.streamed:
            if self._pending:
                self._line(self._pending)
            if self.fmt.usage_in_last_event and self._last and self._last[:1] == b"{":
                self._collect(self._last)  # cumulative usage: the last event has it all
        elif self._pending and self._size <= _MAX_PARSED_BODY:
            self._collect(self._pending)
        self._pending = b""

    def unfinished(self) -> tuple[str, str]:
        """After finish(), for a stream that ended without its format's end: ("upstream_cut", why) when it
        just stopped, ("upstream_error", the message) when it ended on an error event; ("", "") otherwise."""
        if not self.streamed or not self._readable:
            return "", ""
        last = self._last
        if last is None:
            return Outcome.UPSTREAM_CUT, "ended the stream before sending any event"
        if last.startswith(b"{"):
            try:
                event = orjson.loads(last)
            except ValueError:
                return Outcome.UPSTREAM_CUT, "ended the stream in the middle of an event"
        else:
            event = last  # [DONE], or a line that is not an object
        return self.fmt.finished(event)
