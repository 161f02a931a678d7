"""Stream framing of the wire formats: an event a format builds is read back by the splitter as it was, whichever
way the bytes are cut (what replaying or translating a stream relies on)."""

import orjson
import pytest

from proxy import formats


@pytest.mark.parametrize("fmt", [formats.OPENAI, formats.ANTHROPIC, formats.GEMINI, formats.OLLAMA])
def test_events_a_format_builds_split_back_into_the_same_payloads_across_chunk_cuts(fmt):
    events = [{"type": "content_block_delta", "delta": {"text": "Hel"}}, {"type": "message_stop", "n": 2}]
    stream = b"".join(fmt.event(event, event["type"]) for event in events)
    splitter = formats.Events()
    payloads = [p for start in range(0, len(stream), 5) for p in splitter.feed(stream[start : start + 5])]
    payloads += splitter.flush()
    assert [orjson.loads(p) for p in payloads] == events
    assert stream.endswith(b"\n" if fmt.framing == "ndjson" else b"\n\n")
