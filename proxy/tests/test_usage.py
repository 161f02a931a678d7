"""What the proxy reads off responses on the side: usage, the answering model, provider error messages."""

import gzip

import pytest

from proxy import formats
from proxy.formats import HiddenUsage
from proxy.usage import UsageTap

provider_error = formats.OPENAI.read_error  # every format reads an error body of any shape


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            b'{"error": {"message": "Rate limit", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}',
            ("requests", "Rate limit"),
        ),
        (
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
            ("overloaded_error", "Overloaded"),
        ),
        (
            b'{"error": {"code": 400, "message": "Bad key", "status": "INVALID_ARGUMENT"}}',
            ("INVALID_ARGUMENT", "Bad key"),
        ),
        (b'{"error": "model \\"x\\" not found"}', ("", 'model "x" not found')),
        (b"<html>502 Bad Gateway</html>", ("", "<html>502 Bad Gateway</html>")),
    ],
)
def test_provider_errors_are_read_in_every_shape(body, expected):
    assert provider_error(body) == expected
    assert provider_error(gzip.compress(body), "gzip") == expected


def test_the_tap_reads_usage_split_across_chunks_and_compressed():
    events = (
        b'data: {"id":"1","model":"gpt-4o-mini-2024-07-18","choices":[{"delta":{"content":"hi"}}]}\n\n'
        b'data: {"id":"1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\ndata: [DONE]\n\n'
    )
    packed = gzip.compress(events)
    tap = UsageTap(formats.OPENAI, "text/event-stream", "gzip")
    for start in range(0, len(packed), 7):
        tap.feed(packed[start : start + 7])
    tap.finish()
    assert tap.usage == {"prompt_tokens": 3, "completion_tokens": 1}
    assert tap.model == "gpt-4o-mini-2024-07-18"


def test_hidden_usage_drops_only_the_chunk_the_gateway_asked_for_even_when_split():
    stream = (
        b'data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\ndata: [DONE]\n\n'
    )
    edit = HiddenUsage()
    out = b"".join(edit.feed(stream[i : i + 5]) for i in range(0, len(stream), 5)) + edit.flush()
    assert out == b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: [DONE]\n\n'
