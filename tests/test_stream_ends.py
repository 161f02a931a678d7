"""A stream the upstream ends cleanly but without its format's end marker ([DONE], response.completed,
message_stop, a last finishReason, "done": true) was cut short all the same, and is recorded as broken off."""

import httpx
import pytest

from proxy import formats
from proxy.usage import UsageTap

# (path, body, extra headers) for one streamed request in each format, with 4 content chunks.
STREAMS = {
    "openai_chat": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        {},
    ),
    "openai_responses": ("/v1/responses", {"model": "gpt-4o-mini", "stream": True, "input": "hi"}, {}),
    "anthropic": (
        "/v1/messages",
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        {"anthropic-version": "2023-06-01"},
    ),
    "gemini_sse": (
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        {},
    ),
    "ollama": ("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}, {}),
}


def _stream(gateway, auth, name: str, switches: dict) -> str:
    path, body, headers = STREAMS[name]
    with httpx.stream("POST", gateway.url + path, json=body, headers={**auth, **headers, **switches}) as response:
        assert response.status_code == 200
        for _ in response.iter_bytes():
            pass
    return response.headers["x-ingate-request-id"]


@pytest.fixture
def auth(gateway_key):
    return {"authorization": f"Bearer {gateway_key[1]}"}


def _record(gateway, request_id):
    records = gateway.wait_for_records(1)
    return next(r for r in records if r.request_id == request_id)


@pytest.mark.parametrize("name", STREAMS)
def test_a_stream_ended_cleanly_before_its_end_marker_is_recorded_as_broken_off(gateway, auth, fake, name):
    request_id = _stream(gateway, auth, name, {"x-fake-cut-after": "2", "x-fake-clean-cut": "1"})
    record = _record(gateway, request_id)
    assert record.stream and record.outcome == "upstream_cut", (record.outcome, record.error)
    assert record.error.startswith("The upstream ") and "ended the stream" in record.error


@pytest.mark.parametrize("name", STREAMS)
def test_a_stream_that_reaches_its_end_marker_is_recorded_as_ok(gateway, auth, fake, name):
    record = _record(gateway, _stream(gateway, auth, name, {}))
    assert (record.stream, record.outcome, record.error) == (True, "ok", "")


def _tap(body: bytes, content_type: str = "text/event-stream", fmt=formats.OPENAI) -> UsageTap:
    tap = UsageTap(fmt, content_type, "")
    for start in range(0, len(body), 7):  # lines split across chunks, as they arrive
        tap.feed(body[start : start + 7])
    tap.finish()
    return tap


def test_an_error_event_ending_a_stream_is_an_upstream_error_with_its_message():
    body = (
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3}}}\n\n'
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    assert _tap(body, fmt=formats.ANTHROPIC).unfinished() == ("upstream_error", "Overloaded")


def test_an_empty_or_half_sent_stream_is_broken_off_and_an_unknown_format_is_not_judged():
    assert _tap(b"").unfinished()[0] == "upstream_cut"
    assert _tap(b'data: {"choices":[{"delta":{"content":"hel').unfinished()[0] == "upstream_cut"
    assert _tap(b'data: {"type":"speech.audio.delta","audio":"AAA"}\n\n').unfinished() == ("", "")
    assert _tap(b'{"status":"success"}\n', "application/x-ndjson", formats.OLLAMA).unfinished() == ("", "")
    assert _tap(b'{"choices":[]}', "application/json").unfinished() == ("", "")  # not a stream
