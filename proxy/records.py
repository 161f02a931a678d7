"""What the proxy hands over when a request finishes: a plain record, passed to a sink without blocking.

The observability app provides the real sink (queue, batch, insert). Until then the default counts."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class ProxyRecord:
    request_id: str
    provider: str
    endpoint: str
    method: str
    path: str
    org_id: int | None = None
    app_id: int | None = None
    team_id: int | None = None
    key_id: int | None = None
    model: str = ""  # as requested
    response_model: str = ""  # as the provider answered
    stream: bool = False
    status: int = 0
    # how the exchange ended: ok, upstream_error (the provider answered 4xx/5xx), gateway_error (Ingate refused
    # it), upstream_unreachable, upstream_timeout, client_disconnect, upstream_cut (the stream broke off)
    outcome: str = "ok"
    error_type: str = ""  # Ingate's code for errors it raised itself (invalid_gateway_key, upstream_timeout, …)
    error: str = ""
    passthrough: bool = False  # the client's own provider key was forwarded
    prompt_version_id: int | None = None  # X-Ingate-Prompt: the version that was rendered in
    started_at: float = 0.0  # wall clock, seconds since the epoch
    overhead_ms: float = 0.0  # request arrival -> upstream request sent
    upstream_ms: float = 0.0  # upstream request sent -> response headers
    ttfb_ms: float | None = None  # request arrival -> first body byte to the client
    total_ms: float = 0.0
    request_bytes: int = 0
    response_bytes: int = 0
    usage: dict[str, Any] = field(default_factory=dict)  # raw usage fields as the provider sent them
    request_headers: dict[str, str] = field(default_factory=dict)  # attribution headers (session, user, agent)
    body: Any = None  # the parsed JSON request body, when there was one
    # Kept only for orgs that store full bodies, capped at their size limit; the response decoded.
    request_body: bytes = b""
    response_body: bytes = b""
    bodies_truncated: bool = False


class RecordSink(Protocol):
    def submit(self, record: ProxyRecord) -> None:
        """Take the record without blocking and without raising."""


class CountingSink:
    """Counts records by outcome; keeps the last few, without their request bodies, for inspection."""

    def __init__(self, keep: int = 100):
        self.counts: collections.Counter[str] = collections.Counter()
        self.recent: collections.deque[ProxyRecord] = collections.deque(maxlen=keep)

    def submit(self, record: ProxyRecord) -> None:
        self.counts[record.outcome] += 1
        record.body = record.request_body = record.response_body = None  # megabytes, for all anyone here reads
        self.recent.append(record)
