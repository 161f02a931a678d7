"""OpenTelemetry export through the running gateway: each proxied request arrives at an OTLP/HTTP receiver on
loopback as one span with the GenAI attributes and Ingate's own, as a child of the caller's `traceparent`; a
collector that is down costs the requests nothing; without an endpoint nothing is traced."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from observability.otel import SEMCONV_SCHEMA, Tracing

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
STAGES_WITH_TRACING = "observability.otel.Tracing"


class Receiver:
    """A collector's OTLP/HTTP traces endpoint: decodes each ExportTraceServiceRequest and keeps its spans."""

    def __init__(self):
        self.spans: list = []
        self.scopes: list = []
        self.resources: list = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    receiver.resources.append(resource_spans.resource)
                    for scope_spans in resource_spans.scope_spans:
                        receiver.scopes.append(scope_spans)
                        receiver.spans.extend(scope_spans.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def attrs(span) -> dict:
    found = {}
    for kv in span.attributes:
        value = kv.value
        found[kv.key] = getattr(value, value.WhichOneof("value"))
    return found


def tracing_stage(gateway) -> Tracing:
    return next(stage for stage in gateway.app.stages if isinstance(stage, Tracing))


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def traced(gateway, settings, receiver):
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url
    settings.OTEL_BSP_SCHEDULE_DELAY = 50
    settings.INGATE_PROXY_STAGES = [*settings.INGATE_PROXY_STAGES, STAGES_WITH_TRACING]  # rebuilds the stages
    return gateway


def wait_for_spans(receiver, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while len(receiver.spans) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return receiver.spans


def test_a_request_arrives_as_one_span_with_genai_attributes_in_the_callers_trace(traced, gateway_key, receiver):
    key, plaintext = gateway_key
    client = openai.OpenAI(
        api_key=plaintext,
        base_url=traced.url + "/v1",
        max_retries=0,
        default_headers={
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
            "x-ingate-session-id": "sess-42",
            "x-fake-reasoning-tokens": "3",
            "x-fake-cached-tokens": "2",
        },
    )
    answer = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "say hello to the tracer"}]
    )
    assert answer.status_code == 200
    usage = answer.parse().usage
    tracing_stage(traced).flush()
    (span,) = wait_for_spans(receiver, 1)

    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_ID
    assert span.name == "chat gpt-4o-mini"
    found = attrs(span)
    assert found["gen_ai.operation.name"] == "chat"
    assert found["gen_ai.provider.name"] == "openai"
    assert found["gen_ai.request.model"] == "gpt-4o-mini"
    assert found["gen_ai.response.model"]
    assert found["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert found["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert found["gen_ai.usage.cache_read.input_tokens"] == 2
    assert found["gen_ai.usage.reasoning.output_tokens"] == 3
    assert found["gen_ai.response.time_to_first_chunk"] > 0
    assert found["ingate.org"] == "acme" and found["ingate.org_id"] == key.org_id
    assert found["ingate.app_id"] == key.app_id and found["ingate.key_prefix"] == key.prefix
    assert found["ingate.session_id"] == "sess-42"
    assert found["ingate.cost_usd"] > 0
    assert found["ingate.request_id"] == answer.headers["x-ingate-request-id"]
    assert span.end_time_unix_nano > span.start_time_unix_nano
    assert receiver.scopes[0].schema_url == SEMCONV_SCHEMA


def test_a_streamed_anthropic_request_is_a_span_with_its_cache_tokens_and_no_parent_without_traceparent(
    traced, gateway_key, receiver
):
    client = anthropic.Anthropic(
        api_key=gateway_key[1],
        base_url=traced.url,
        max_retries=0,
        default_headers={"x-fake-cached-tokens": "4", "x-fake-cache-write-tokens": "6"},
    )
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    tracing_stage(traced).flush()
    (span,) = wait_for_spans(receiver, 1)
    found = attrs(span)
    assert not span.parent_span_id
    assert found["gen_ai.provider.name"] == "anthropic" and found["gen_ai.request.stream"] is True
    assert found["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert found["gen_ai.usage.cache_read.input_tokens"] == 4
    assert found["gen_ai.usage.cache_creation.input_tokens"] == 6


def test_a_refused_request_is_a_span_with_an_error_status(traced, gateway_key, receiver, fake):
    client = openai.OpenAI(
        api_key=gateway_key[1], base_url=traced.url + "/v1", max_retries=0, default_headers={"x-fake-status": "500"}
    )
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    tracing_stage(traced).flush()
    (span,) = wait_for_spans(receiver, 1)
    assert span.status.code == 2  # STATUS_CODE_ERROR
    found = attrs(span)
    assert found["http.response.status_code"] == 500 and found["ingate.outcome"] == "upstream_error"
    assert found["error.type"] == "server_error"  # the provider's own error type


def test_a_collector_that_is_down_neither_slows_nor_fails_requests(gateway, gateway_key, settings):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = f"http://127.0.0.1:{closed}"
    settings.OTEL_EXPORTER_OTLP_TIMEOUT = 3.0
    settings.OTEL_BSP_SCHEDULE_DELAY = 10
    settings.INGATE_PROXY_STAGES = [*settings.INGATE_PROXY_STAGES, STAGES_WITH_TRACING]
    client = openai.OpenAI(api_key=gateway_key[1], base_url=gateway.url + "/v1", max_retries=0)
    slowest = 0.0
    for _ in range(20):
        started = time.monotonic()
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        slowest = max(slowest, time.monotonic() - started)
        assert answer.choices[0].message.content
    assert slowest < 1.0  # each export try waits up to 3 s for the collector, on its own thread
    assert gateway.wait_for_records(20) and gateway.app.sink.counts["ok"] == 20
    tracing_stage(gateway).provider.shutdown()  # its exporter would go on retrying after the test


def test_nothing_is_traced_without_an_endpoint(gateway, settings):
    assert settings.OTEL_EXPORTER_OTLP_ENDPOINT == ""
    assert STAGES_WITH_TRACING not in settings.INGATE_PROXY_STAGES
    assert not any(isinstance(stage, Tracing) for stage in gateway.app.stages)


def test_a_malformed_traceparent_starts_a_new_trace_and_the_request_goes_through(traced, gateway_key, receiver):
    client = openai.OpenAI(
        api_key=gateway_key[1],
        base_url=traced.url + "/v1",
        max_retries=0,
        default_headers={"traceparent": "00-not-a-trace-01"},
    )
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].message.content
    tracing_stage(traced).flush()
    (span,) = wait_for_spans(receiver, 1)
    assert not span.parent_span_id and len(span.trace_id) == 16
