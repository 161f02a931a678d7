"""What the proxy hands over when a request finishes: a plain record, passed to a sink without blocking.

The sink is named in settings (INGATE_RECORD_SINK): observability's RecordPipeline (queue, batch, insert)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    """How an exchange ended: the one list of outcomes (observability's record model labels these)."""

    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"  # the provider answered 4xx/5xx, or its stream ended on an error event
    GATEWAY_ERROR = "gateway_error"  # Ingate refused the request itself
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_CUT = "upstream_cut"  # the stream broke off
    CLIENT_DISCONNECT = "client_disconnect"
    LIMITED = "limited"  # refused by a budget or rate limit (proxy/limits)
    BLOCKED = "blocked"  # a guardrail refused the request or ended the answer (proxy/guardrails)


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
    outcome: Outcome = Outcome.OK
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
    route: str = ""  # the route (virtual model) that chose the upstream; "fallback" for an X-Ingate-Fallback chain
    attempts: list[dict[str, Any]] = field(default_factory=list)  # a routed request's attempts, in order
    cache_hit: bool = False  # answered from the response cache (no upstream call; usage is the original's)
    cache_source: str = ""  # the request id whose answer filled the cache entry
    guardrail: str = ""  # the strongest guardrail decision: "" | flagged | redacted | blocked (proxy/guardrails)
    # Each decision: check, kind, action, direction, a masked hint (never the matched text), count; a moderation or
    # judge decision names the call's own request id.
    guardrail_decisions: list[dict[str, Any]] = field(default_factory=list)


class RecordSink(Protocol):
    """Where records go (INGATE_RECORD_SINK). A sink may also offer, and the proxy then uses:
    `body_capture_bytes(org_id) -> int`, how much of the bodies to keep for an org's records (0 when absent), and
    `price(record) -> float | None`, what a record's usage costs (Ingate's own calls report it). Both block: the
    proxy calls them on its database threads."""

    def submit(self, record: ProxyRecord) -> None:
        """Take the record without blocking and without raising."""
