"""Records visible to tests: the requests the fake provider received and the clients that went away."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased, so look-ups need no case folding
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def query_params(self) -> dict[str, list[str]]:
        return parse_qs(self.query)


@dataclass(slots=True)
class Disconnect:
    """The client went away before the response finished (mid-stream, or during a delay/hang)."""

    path: str
    chunks_sent: int  # content chunks already written (0 also when it left before the headers)
    stream: bool
