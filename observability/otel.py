"""One OpenTelemetry span per proxied request, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

The stage's `done` hook only hands the finished record (and references to what the exchange already holds) to a
queue: a thread of its own turns them into spans with the record's own start and end times, and the SDK's
BatchSpanProcessor sends them from its thread. A collector that is down costs a request nothing; spans beyond
the queue are dropped. Attributes follow the OpenTelemetry GenAI semantic conventions as published in semantic
conventions 1.44.0 (`SEMCONV_SCHEMA`; the GenAI group is still in development status upstream), plus Ingate's
own under `ingate.*`. The client's `traceparent` (and `tracestate`) make the span a child in the caller's trace.

It lives in observability, not proxy: the proxy hands over plain data, and pricing a record is the record
sink's (observability's) business. Settings are read in ingate/settings.py only."""

from __future__ import annotations

import collections
import functools
import logging
import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import close_old_connections
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from proxy import formats
from proxy.attribution import attribute
from proxy.records import Outcome, ProxyRecord
from proxy.stages import Stage

if TYPE_CHECKING:
    from proxy.exchange import Exchange
    from proxy.relay import ProxyApp

log = logging.getLogger(__name__)

SEMCONV_SCHEMA = "https://opentelemetry.io/schemas/1.44.0"
# Registry names -> the values gen_ai.provider.name lists; others go as Ingate names them.
_PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
}
# Ingate's endpoint names -> gen_ai.operation.name.
_OPERATIONS = {
    "chat.completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "chat": "chat",
    "completions": "text_completion",
    "complete": "text_completion",
    "generate": "text_completion",
    "embeddings": "embeddings",
    "embed": "embeddings",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
    "generateContent": "generate_content",
    "streamGenerateContent": "generate_content",
}
# Spans waiting to be built; beyond this the oldest is dropped (the collector has been away a long time).
_MAX_WAITING = 4096
_TRACE_HEADERS = (b"traceparent", b"tracestate")


@functools.cache
def _provider(endpoint: str, headers: tuple[tuple[str, str], ...], service: str) -> TracerProvider:
    """One tracer provider (and exporter thread) per process and configuration, made on first use."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):  # the generic endpoint, as the OTLP exporter spec has it
        url += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=url, headers=dict(headers), timeout=settings.OTEL_EXPORTER_OTLP_TIMEOUT)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=settings.OTEL_BSP_SCHEDULE_DELAY))
    return provider


def operation_of(endpoint: str) -> str:
    return _OPERATIONS.get(endpoint, endpoint)


def attributes(record: ProxyRecord, facts: dict[str, Any], cost: float | None) -> dict[str, Any]:
    """The span's attributes for a finished request: GenAI conventions first, then Ingate's own."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": operation_of(record.endpoint),
        "gen_ai.provider.name": _PROVIDER_NAMES.get(record.provider, record.provider),
        "http.request.method": record.method,
        "http.response.status_code": record.status,
        "ingate.request_id": record.request_id,
        "ingate.outcome": str(record.outcome),
        "ingate.endpoint": record.endpoint,
    }
    if record.model:
        attrs["gen_ai.request.model"] = record.model
    if record.response_model:
        attrs["gen_ai.response.model"] = record.response_model
    if record.stream:
        attrs["gen_ai.request.stream"] = True
    tokens = formats.tokens(record.provider, record.usage)
    if tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = tokens.input
        attrs["gen_ai.usage.output_tokens"] = tokens.output
        if tokens.cache_read:
            attrs["gen_ai.usage.cache_read.input_tokens"] = tokens.cache_read
        if tokens.cache_write:
            attrs["gen_ai.usage.cache_creation.input_tokens"] = tokens.cache_write
        if tokens.reasoning:
            attrs["gen_ai.usage.reasoning.output_tokens"] = tokens.reasoning
    if record.ttfb_ms is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = record.ttfb_ms / 1000  # seconds, as the convention has it
    if record.error_type:
        attrs["error.type"] = record.error_type
    elif record.outcome != Outcome.OK:
        attrs["error.type"] = str(record.outcome)
    for name, value in facts.items():
        if value not in (None, ""):
            attrs[name] = value
    if record.route:
        attrs["ingate.route"] = record.route
    if record.cache_hit:
        attrs["ingate.cache_hit"] = True
    if cost is not None:
        attrs["ingate.cost_usd"] = cost
    who = attribute(record.request_headers, record.body if isinstance(record.body, dict) else None)
    if who.session_id:
        attrs["ingate.session_id"] = who.session_id
    if who.user_id:
        attrs["ingate.user_id"] = who.user_id
    if who.client:
        attrs["ingate.client"] = who.client
    return attrs


class Tracing(Stage):
    """The last stage when OTLP export is configured: `done` queues the finished request; nothing else."""

    def __init__(self, app: ProxyApp):
        super().__init__(app)
        self.endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT
        self._waiting: collections.deque[tuple] = collections.deque(maxlen=_MAX_WAITING)
        self._wake = threading.Event()
        self.handed = 0  # requests queued so far, and spans built: flush() waits for the two to meet
        self.built = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.provider = (
            _provider(self.endpoint, tuple(settings.OTEL_EXPORTER_OTLP_HEADERS.items()), settings.OTEL_SERVICE_NAME)
            if self.endpoint
            else None
        )

    def done(self, ex: Exchange) -> None:
        if self.provider is None or ex.record.org_id is None:
            return
        principal = ex.principal
        self._waiting.append(
            (ex.record, ex.incoming.forward, getattr(principal, "prefix", ""), getattr(principal, "org_slug", ""))
        )
        self.handed += 1
        if self._thread is None:
            self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="ingate-otel", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        tracer = self.provider.get_tracer("ingate", schema_url=SEMCONV_SCHEMA)
        price = getattr(self.app.sink, "price", None)
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            while self._waiting:
                item = self._waiting.popleft()
                try:
                    self._emit(tracer, price, *item)
                except Exception:  # one odd record must not stop the others
                    log.exception("Could not build the span of request %s", item[0].request_id)
                self.built += 1
            close_old_connections()

    def _emit(self, tracer, price, record: ProxyRecord, forward, key_prefix: str, org_slug: str) -> None:
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in forward if name in _TRACE_HEADERS}
        parent = extract(carrier) if carrier else None
        try:
            cost = price(record) if price is not None else None
        except Exception:  # noqa: BLE001  (a span without its cost beats no span)
            cost = None
        facts = {
            "ingate.org": org_slug,
            "ingate.org_id": record.org_id,
            "ingate.app_id": record.app_id,
            "ingate.key_prefix": key_prefix,
        }
        start = int(record.started_at * 1e9)
        name = f"{operation_of(record.endpoint)} {record.model}".strip()
        span = tracer.start_span(
            name, context=parent, kind=SpanKind.CLIENT, start_time=start, attributes=attributes(record, facts, cost)
        )
        if record.outcome != Outcome.OK:
            span.set_status(Status(StatusCode.ERROR, record.error[:200] or str(record.outcome)))
        span.end(end_time=start + int(record.total_ms * 1e6))

    def flush(self, timeout: float = 5.0) -> bool:
        """Build what is queued and export it now (tests; shutdown)."""
        wanted, pause = self.handed, threading.Event()
        for _ in range(int(timeout * 100)):
            if self.built >= wanted or len(self._waiting) == 0 and self._thread is None:
                break
            pause.wait(0.01)
        return self.provider.force_flush(int(timeout * 1000)) if self.provider else True
