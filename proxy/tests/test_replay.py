"""The response cache's wire formats: a stored stream becomes the answer the provider gives without streaming,
and a stored answer becomes the stream the provider would send, read back by the official SDKs as the same text,
tool calls, stop reason and usage (usage only where the client asked for it)."""

import anthropic
import httpx2
import openai
import orjson
import pytest
from anthropic.lib.streaming import MessageStream
from anthropic.types import RawMessageStreamEvent
from google.genai import types as genai_types
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from proxy import formats
from proxy.formats import replay
from proxy.formats.base import Events, stream_events


def sse(*events, named=False) -> bytes:
    out = b""
    for event in events:
        if event == "[DONE]":
            out += b"data: [DONE]\n\n"
        else:
            head = b"event: " + event["type"].encode() + b"\n" if named else b""
            out += head + b"data: " + orjson.dumps(event) + b"\n\n"
    return out


def ndjson(*lines) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def http_response(data: bytes, path: str) -> httpx2.Response:
    return httpx2.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=data,
        request=httpx2.Request("POST", f"http://gateway{path}"),
    )


def openai_chunks(data: bytes) -> list[ChatCompletionChunk]:
    client = openai.OpenAI(api_key="sk-test", base_url="http://gateway/v1")
    response = http_response(data, "/v1/chat/completions")
    return list(openai.Stream(cast_to=ChatCompletionChunk, response=response, client=client))


def openai_completion(data: bytes):
    state = ChatCompletionStreamState()
    for chunk in openai_chunks(data):
        state.handle_chunk(chunk)
    return state.get_final_completion()


def anthropic_message(data: bytes):
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url="http://gateway")
    raw = anthropic.Stream(cast_to=RawMessageStreamEvent, response=http_response(data, "/v1/messages"), client=client)
    return MessageStream(raw, output_format=anthropic.NOT_GIVEN).get_final_message()


def openai_response(data: bytes):
    client = openai.OpenAI(api_key="sk-test", base_url="http://gateway/v1")
    events = openai.Stream(cast_to=ResponseStreamEvent, response=http_response(data, "/v1/responses"), client=client)
    state = ResponseStreamState(input_tools=openai.omit, text_format=openai.omit)
    final = None
    for event in events:
        for handled in state.handle_event(event):
            if handled.type == "response.completed":
                final = handled.response
    assert final is not None, "the SDK saw no response.completed"
    return final


def parsed_in_cuts(data: bytes, cut: int) -> list[bytes]:
    events = Events()
    payloads = [p for i in range(0, len(data), cut) for p in events.feed(data[i : i + cut])]
    return payloads + events.flush()


# --- OpenAI chat completions ------------------------------------------------------------------------------


def chunk(delta=None, finish=None, usage=None, choices=True):
    return {
        "id": "chatcmpl-AWbDKiZ8xS4",
        "object": "chat.completion.chunk",
        "created": 1732200000,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_0705bf87c0",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}] if choices else [],
        "usage": usage,
    }


CHAT_USAGE = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
# OpenAI's stream of a text answer then two parallel tool calls, with stream_options.include_usage: every chunk
# names `"usage": null`, and a last chunk with no choices carries the usage before [DONE].
CHAT_STREAM = sse(
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Checking"}),
    chunk({"content": " both."}),
    chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location"'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Paris"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"location": "Rome"}'}}]}),
    chunk({}, finish="tool_calls"),
    chunk(usage=CHAT_USAGE, choices=False),
    "[DONE]",
)
# The same answer as OpenAI returns it without streaming.
CHAT_ANSWER = {
    "id": "chatcmpl-AWbDKiZ8xS4",
    "object": "chat.completion",
    "created": 1732200000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking both.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Rome"}'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": CHAT_USAGE,
    "service_tier": "default",
    "system_fingerprint": "fp_0705bf87c0",
}


def test_an_openai_chat_stream_with_tool_calls_and_usage_assembles_into_the_completion_openai_returns_whole():
    assert replay.assemble(formats.OPENAI, CHAT_STREAM) == CHAT_ANSWER


def test_a_tool_call_turn_without_text_assembles_with_null_content_as_openai_answers_it():
    stream = sse(
        chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"index": 0, "id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            }
        ),
        chunk({}, finish="tool_calls"),
        "[DONE]",
    )
    message = replay.assemble(formats.OPENAI, stream)["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


def test_a_chat_stream_without_usage_assembles_into_a_completion_without_usage():
    stream = sse(chunk({"role": "assistant", "content": "Hi"}), chunk({}, finish="stop"), "[DONE]")
    answer = replay.assemble(formats.OPENAI, stream)
    assert "usage" not in answer and answer["choices"][0]["message"]["content"] == "Hi"


@pytest.mark.parametrize("cut", [1, 9, 200])
def test_a_replayed_chat_completion_is_read_by_the_openai_sdk_as_the_same_answer_with_its_usage(cut):
    stream = replay.replay(formats.OPENAI, CHAT_ANSWER, include_usage=True)
    assert stream.endswith(b"data: [DONE]\n\n")
    assert parsed_in_cuts(stream, cut) == parsed_in_cuts(stream, len(stream))
    chunks = openai_chunks(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 2006  # usage where OpenAI puts it
    assert all(c.usage is None for c in chunks[:-1])
    completion = openai_completion(stream)
    choice = completion.choices[0]
    assert choice.message.content == "Checking both." and choice.finish_reason == "tool_calls"
    calls = [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert calls == [("call_1", "get_weather", {"location": "Paris"}), ("call_2", "get_weather", {"location": "Rome"})]
    assert completion.usage.completion_tokens == 300 and completion.usage.prompt_tokens_details.cached_tokens == 1920
    assert (completion.id, completion.model) == ("chatcmpl-AWbDKiZ8xS4", "gpt-4o-2024-08-06")


def test_a_replayed_chat_completion_has_no_usage_for_a_client_that_did_not_ask_for_it():
    stream = replay.replay(formats.OPENAI, CHAT_ANSWER, include_usage=False)
    assert b'"usage"' not in stream
    assert all(c.choices for c in openai_chunks(stream))
    assert openai_completion(stream).choices[0].message.content == "Checking both."


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_replayed_chat_completion_assembles_back_into_the_same_answer(include_usage):
    again = replay.assemble(formats.OPENAI, replay.replay(formats.OPENAI, CHAT_ANSWER, include_usage=include_usage))
    expected = CHAT_ANSWER if include_usage else {k: v for k, v in CHAT_ANSWER.items() if k != "usage"}
    assert again == expected


def test_a_refusal_and_several_choices_replay_and_assemble_back_unchanged():
    answer = {
        **CHAT_ANSWER,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                "logprobs": None,
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "Sure.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            },
        ],
    }
    stream = replay.replay(formats.OPENAI, answer, include_usage=True)
    assert replay.assemble(formats.OPENAI, stream) == answer
    completion = openai_completion(stream)
    assert (
        completion.choices[0].message.refusal == "I can't help with that."
        and completion.choices[1].message.content == "Sure."
    )


def test_a_stored_chat_stream_loses_its_usage_for_a_client_that_did_not_ask_and_keeps_everything_else():
    stripped = replay.strip_usage(formats.OPENAI, CHAT_STREAM)
    assert b'"usage"' not in stripped and stripped.endswith(b"data: [DONE]\n\n")
    assert replay.assemble(formats.OPENAI, stripped) == {k: v for k, v in CHAT_ANSWER.items() if k != "usage"}


def test_a_legacy_completions_stream_assembles_and_replays_as_text_completions():
    base = {"id": "cmpl-7a", "object": "text_completion", "created": 1700000000, "model": "gpt-3.5-turbo-instruct"}
    stream = sse(
        {**base, "choices": [{"text": "Hello", "index": 0, "logprobs": None, "finish_reason": None}]},
        {**base, "choices": [{"text": " world", "index": 0, "logprobs": None, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}},
        "[DONE]",
    )
    answer = replay.assemble(formats.OPENAI, stream)
    assert answer == {
        **base,
        "choices": [{"text": "Hello world", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    assert replay.assemble(formats.OPENAI, replay.replay(formats.OPENAI, answer, include_usage=True)) == answer


@pytest.mark.parametrize(
    "stream",
    [
        CHAT_STREAM[: CHAT_STREAM.index(b"data: [DONE]")],  # cut before [DONE]
        CHAT_STREAM[: CHAT_STREAM.index(b'data: {"id"', 300)]
        + sse({"error": {"message": "The server had an error", "type": "server_error"}}),
        b"",
    ],
    ids=["cut", "error", "empty"],
)
def test_a_chat_stream_that_did_not_end_whole_is_not_assembled(stream):
    with pytest.raises(formats.UnfinishedStream):
        replay.assemble(formats.OPENAI, stream)


# --- Anthropic Messages -----------------------------------------------------------------------------------

# Anthropic's documented stream of a thinking block, a text answer and a tool call (with a ping).
ANTHROPIC_STREAM = sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 472,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 100,
                "output_tokens": 2,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Weather tool."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Okay, let me check"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": " the weather."}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {},
        },
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"location":'}},
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": ' "San Francisco, CA"}'},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 89},
    },
    {"type": "message_stop"},
    named=True,
)
ANTHROPIC_ANSWER = {
    "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "Weather tool.", "signature": "EqQB"},
        {"type": "text", "text": "Okay, let me check the weather."},
        {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {"location": "San Francisco, CA"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 472,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 100,
        "output_tokens": 89,
    },
}


def test_an_anthropic_stream_with_thinking_text_and_tool_use_assembles_into_the_message_anthropic_returns_whole():
    assert replay.assemble(formats.ANTHROPIC, ANTHROPIC_STREAM) == ANTHROPIC_ANSWER


@pytest.mark.parametrize("cut", [1, 13, 500])
def test_a_replayed_anthropic_message_is_read_by_the_anthropic_sdk_as_the_same_message(cut):
    stream = replay.replay(formats.ANTHROPIC, ANTHROPIC_ANSWER, include_usage=False)
    assert stream.startswith(b"event: message_start\n")
    assert stream.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert parsed_in_cuts(stream, cut) == parsed_in_cuts(stream, len(stream))
    message = anthropic_message(stream)
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert (message.content[0].thinking, message.content[0].signature) == ("Weather tool.", "EqQB")
    assert message.content[1].text == "Okay, let me check the weather."
    assert message.content[2].input == {"location": "San Francisco, CA"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        472,
        100,
        89,
    )


def test_a_replayed_anthropic_message_reports_input_usage_at_its_start_and_output_usage_at_its_end():
    events = [e for e in stream_events(replay.replay(formats.ANTHROPIC, ANTHROPIC_ANSWER, include_usage=False))]
    start, delta = events[0], events[-2]
    assert start["message"]["usage"]["input_tokens"] == 472 and start["message"]["usage"]["output_tokens"] == 1
    assert delta["type"] == "message_delta" and delta["usage"]["output_tokens"] == 89
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


def test_a_replayed_anthropic_message_assembles_back_into_the_same_message():
    stream = replay.replay(formats.ANTHROPIC, ANTHROPIC_ANSWER, include_usage=True)
    assert replay.assemble(formats.ANTHROPIC, stream) == ANTHROPIC_ANSWER


@pytest.mark.parametrize(
    "stream",
    [
        ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: message_stop")],
        ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: message_delta")]
        + sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, named=True),
    ],
    ids=["cut", "error"],
)
def test_an_anthropic_stream_that_did_not_end_whole_is_not_assembled(stream):
    with pytest.raises(formats.UnfinishedStream):
        replay.assemble(formats.ANTHROPIC, stream)


# --- OpenAI Responses -------------------------------------------------------------------------------------

RESPONSE_USAGE = {
    "input_tokens": 291,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 23,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 314,
}
MESSAGE_ITEM = {
    "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
    "type": "message",
    "status": "completed",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Let me check Paris.", "annotations": [], "logprobs": []}],
}
CALL_ITEM = {
    "id": "fc_67ca09c6bedc8190a7abfec07b1a1332096610f474011cc0",
    "type": "function_call",
    "status": "completed",
    "call_id": "call_unLAR8MvFNptuiZK6K6HCy5k",
    "name": "get_current_weather",
    "arguments": '{"location":"Paris, France","unit":"celsius"}',
}
RESPONSE = {
    "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
    "object": "response",
    "created_at": 1741476777,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-4o-2024-08-06",
    "output": [MESSAGE_ITEM, CALL_ITEM],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": RESPONSE_USAGE,
    "user": None,
    "metadata": {},
}


def responses_stream(response: dict) -> bytes:
    """A Responses stream as OpenAI documents it: typed, named events numbered in order, ending with
    response.completed, which carries the whole response."""
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    at = {"item_id": MESSAGE_ITEM["id"], "output_index": 0, "content_index": 0}
    call = {"item_id": CALL_ITEM["id"], "output_index": 1}
    events = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**MESSAGE_ITEM, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **at, "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", **at, "delta": "Let me", "logprobs": []},
        {"type": "response.output_text.delta", **at, "delta": " check Paris.", "logprobs": []},
        {"type": "response.output_text.done", **at, "text": "Let me check Paris.", "logprobs": []},
        {"type": "response.content_part.done", **at, "part": MESSAGE_ITEM["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE_ITEM},
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {**CALL_ITEM, "status": "in_progress", "arguments": ""},
        },
        {"type": "response.function_call_arguments.delta", **call, "delta": '{"location":"Paris, France",'},
        {"type": "response.function_call_arguments.delta", **call, "delta": '"unit":"celsius"}'},
        {"type": "response.function_call_arguments.done", **call, "arguments": CALL_ITEM["arguments"]},
        {"type": "response.output_item.done", "output_index": 1, "item": CALL_ITEM},
        {"type": "response.completed", "response": response},
    ]
    return sse(*({**e, "sequence_number": n} for n, e in enumerate(events)), named=True)


def test_a_responses_stream_assembles_into_the_response_its_completed_event_carries():
    assert replay.assemble(formats.RESPONSES, responses_stream(RESPONSE)) == RESPONSE


def test_a_responses_stream_whose_end_leaves_out_the_output_assembles_it_from_the_items_as_they_were_done():
    assert replay.assemble(formats.RESPONSES, responses_stream({**RESPONSE, "output": None})) == RESPONSE


@pytest.mark.parametrize("cut", [1, 17, 400])
def test_a_replayed_response_is_read_by_the_openai_sdk_as_the_same_response(cut):
    stream = replay.replay(formats.RESPONSES, RESPONSE, include_usage=False)
    assert stream.startswith(b"event: response.created\n") and b"[DONE]" not in stream
    assert parsed_in_cuts(stream, cut) == parsed_in_cuts(stream, len(stream))
    final = openai_response(stream)
    assert final.output_text == "Let me check Paris."
    call = final.output[1]
    assert (call.call_id, call.name, orjson.loads(call.arguments)) == (
        "call_unLAR8MvFNptuiZK6K6HCy5k",
        "get_current_weather",
        {"location": "Paris, France", "unit": "celsius"},
    )
    assert final.status == "completed" and final.usage.input_tokens == 291 and final.usage.output_tokens == 23
    numbers = [e["sequence_number"] for e in stream_events(stream)]
    assert numbers == list(range(len(numbers)))


def test_a_replayed_response_assembles_back_into_the_same_response_and_the_sdk_sees_each_text_delta():
    stream = replay.replay(formats.RESPONSES, RESPONSE, include_usage=False)
    assert replay.assemble(formats.RESPONSES, stream) == RESPONSE
    deltas = [e["delta"] for e in stream_events(stream) if e["type"] == "response.output_text.delta"]
    assert deltas == ["Let me check Paris."]


def test_an_incomplete_response_replays_ending_with_response_incomplete():
    incomplete = {**RESPONSE, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    stream = replay.replay(formats.RESPONSES, incomplete, include_usage=False)
    assert stream_events(stream)[-1]["type"] == "response.incomplete"
    assert replay.assemble(formats.RESPONSES, stream) == incomplete


def test_a_responses_stream_that_failed_or_was_cut_is_not_assembled():
    whole = responses_stream(RESPONSE)
    cut = whole[: whole.index(b"event: response.completed")]
    failed = cut + sse(
        {"type": "response.failed", "sequence_number": 99, "response": {**RESPONSE, "status": "failed"}}, named=True
    )
    for stream in (cut, failed):
        with pytest.raises(formats.UnfinishedStream):
            replay.assemble(formats.RESPONSES, stream)


# --- Gemini generateContent / streamGenerateContent -------------------------------------------------------

GEMINI_IDS = {"modelVersion": "gemini-2.5-flash", "responseId": "mOBBaKGJJ8ir1MkP2p6k8QQ"}
GEMINI_USAGE = {
    "promptTokenCount": 31,
    "candidatesTokenCount": 24,
    "totalTokenCount": 120,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}],
    "thoughtsTokenCount": 65,
}
FUNCTION_PART = {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "CiQBVKhc"}
# Gemini's alt=sse stream: text in pieces, a function call whole, the finishReason and the final usage last.
GEMINI_STREAM = b"".join(
    b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
    for chunk in [
        {
            "candidates": [{"content": {"parts": [{"text": "Checking the"}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 31, "totalTokenCount": 96, "thoughtsTokenCount": 65},
            **GEMINI_IDS,
        },
        {
            "candidates": [{"content": {"parts": [{"text": " weather."}], "role": "model"}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 31, "totalTokenCount": 99, "thoughtsTokenCount": 65},
            **GEMINI_IDS,
        },
        {
            "candidates": [
                {"content": {"parts": [FUNCTION_PART], "role": "model"}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": GEMINI_USAGE,
            **GEMINI_IDS,
        },
    ]
)
GEMINI_ANSWER = {
    "candidates": [
        {
            "content": {"parts": [{"text": "Checking the weather."}, FUNCTION_PART], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": GEMINI_USAGE,
    **GEMINI_IDS,
}


def gemini_chunks(stream: bytes) -> list:
    return [genai_types.GenerateContentResponse.model_validate(e) for e in stream_events(stream)]


def test_a_gemini_stream_assembles_into_one_response_with_its_parts_joined_and_the_last_usage():
    assert replay.assemble(formats.GEMINI, GEMINI_STREAM) == GEMINI_ANSWER


def test_a_gemini_stream_without_alt_sse_a_json_array_assembles_the_same():
    array = b"[" + b",\r\n".join(orjson.dumps(e) for e in stream_events(GEMINI_STREAM)) + b"]"
    assert replay.assemble(formats.GEMINI, array) == GEMINI_ANSWER


@pytest.mark.parametrize("cut", [1, 23, 300])
def test_a_replayed_gemini_response_is_read_by_google_genai_as_the_same_answer_with_usage_on_the_last_chunk(cut):
    stream = replay.replay(formats.GEMINI, GEMINI_ANSWER, include_usage=False)
    assert parsed_in_cuts(stream, cut) == parsed_in_cuts(stream, len(stream))
    chunks = gemini_chunks(stream)
    assert "".join(c.text or "" for c in chunks) == "Checking the weather."
    calls = [call for c in chunks for call in c.function_calls or []]
    assert [(call.name, call.args) for call in calls] == [("get_weather", {"location": "Paris"})]
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    assert chunks[-1].usage_metadata.prompt_token_count == 31 and chunks[-1].usage_metadata.thoughts_token_count == 65
    assert all(c.usage_metadata is None for c in chunks[:-1])
    assert all(c.model_version == "gemini-2.5-flash" for c in chunks)


def test_a_replayed_gemini_response_assembles_back_into_the_same_response_in_either_framing():
    for alt_sse in (True, False):
        stream = replay.replay(formats.GEMINI, GEMINI_ANSWER, include_usage=False, alt_sse=alt_sse)
        assert stream.startswith(b"data: ") is alt_sse
        assert replay.assemble(formats.GEMINI, stream) == GEMINI_ANSWER


def test_a_gemini_stream_without_a_finish_reason_is_not_assembled():
    cut = GEMINI_STREAM[: GEMINI_STREAM.rindex(b"data: ")]
    with pytest.raises(formats.UnfinishedStream):
        replay.assemble(formats.GEMINI, cut)


# --- Ollama chat / generate -------------------------------------------------------------------------------

OLLAMA_END = {
    "done_reason": "stop",
    "done": True,
    "total_duration": 4883583458,
    "load_duration": 1334875,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 342546000,
    "eval_count": 282,
    "eval_duration": 4535599000,
}
WEATHER_CALL = {"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Toronto"}}}
# Ollama's NDJSON chat stream (from its streaming tool-calling announcement): text, a tool call, then the counts.
OLLAMA_STREAM = ndjson(
    {
        "model": "qwen3",
        "created_at": "2025-05-27T22:54:57.641643Z",
        "message": {"role": "assistant", "content": "Let me"},
        "done": False,
    },
    {
        "model": "qwen3",
        "created_at": "2025-05-27T22:54:57.673559Z",
        "message": {"role": "assistant", "content": " check."},
        "done": False,
    },
    {
        "model": "qwen3",
        "created_at": "2025-05-27T22:54:58.100509Z",
        "message": {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL]},
        "done": False,
    },
    {
        "model": "qwen3",
        "created_at": "2025-05-27T22:54:58.200509Z",
        "message": {"role": "assistant", "content": ""},
        **OLLAMA_END,
    },
)
OLLAMA_ANSWER = {
    "model": "qwen3",
    "created_at": "2025-05-27T22:54:58.200509Z",
    "message": {"role": "assistant", "content": "Let me check.", "tool_calls": [WEATHER_CALL]},
    **OLLAMA_END,
}


def test_an_ollama_chat_stream_assembles_into_the_final_object_with_the_message_joined():
    assert replay.assemble(formats.OLLAMA, OLLAMA_STREAM) == OLLAMA_ANSWER


@pytest.mark.parametrize("cut", [1, 31, 1000])
def test_a_replayed_ollama_chat_answer_is_ndjson_ending_with_the_counts_and_assembles_back(cut):
    stream = replay.replay(formats.OLLAMA, OLLAMA_ANSWER, include_usage=False)
    assert parsed_in_cuts(stream, cut) == parsed_in_cuts(stream, len(stream))
    lines = [orjson.loads(line) for line in stream.splitlines()]
    assert all(line["done"] is False and "eval_count" not in line for line in lines[:-1])
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 282 and lines[-1]["prompt_eval_count"] == 26
    assert "".join(line["message"]["content"] for line in lines) == "Let me check."
    assert replay.assemble(formats.OLLAMA, stream) == OLLAMA_ANSWER


def test_an_ollama_generate_stream_with_thinking_assembles_and_replays_back():
    head = {"model": "deepseek-r1", "created_at": "2025-06-01T10:00:00Z"}
    stream = ndjson(
        {**head, "response": "", "thinking": "Sky color?", "done": False},
        {**head, "response": "The sky", "done": False},
        {**head, "response": " is blue.", "done": False},
        {**head, "response": "", "context": [1, 2, 3], **OLLAMA_END},
    )
    answer = replay.assemble(formats.OLLAMA, stream)
    assert answer == {
        **head,
        "response": "The sky is blue.",
        "context": [1, 2, 3],
        **OLLAMA_END,
        "thinking": "Sky color?",
    }
    assert replay.assemble(formats.OLLAMA, replay.replay(formats.OLLAMA, answer, include_usage=False)) == answer


def test_an_ollama_stream_without_its_done_line_is_not_assembled():
    with pytest.raises(formats.UnfinishedStream):
        replay.assemble(formats.OLLAMA, OLLAMA_STREAM[: OLLAMA_STREAM.rindex(b'{"model"')])


# --- serving a cache entry --------------------------------------------------------------------------------


def test_a_non_streaming_client_answered_from_a_stored_stream_gets_the_assembled_json():
    body = replay.answer_from_entry(formats.ANTHROPIC, ANTHROPIC_STREAM, entry_streamed=True, client_streams=False)
    assert orjson.loads(body) == ANTHROPIC_ANSWER


def test_a_streaming_client_answered_from_a_stored_stream_gets_the_stored_bytes_less_usage_it_did_not_ask_for():
    asked = replay.answer_from_entry(
        formats.OPENAI, CHAT_STREAM, entry_streamed=True, client_streams=True, include_usage=True
    )
    assert asked == CHAT_STREAM
    not_asked = replay.answer_from_entry(formats.OPENAI, CHAT_STREAM, entry_streamed=True, client_streams=True)
    assert b'"usage"' not in not_asked and openai_completion(not_asked).choices[0].message.content == "Checking both."


def test_a_streaming_client_answered_from_a_stored_answer_gets_it_replayed_with_usage_when_asked():
    entry = orjson.dumps(CHAT_ANSWER)
    body = replay.answer_from_entry(
        formats.OPENAI, entry, entry_streamed=False, client_streams=True, include_usage=True
    )
    assert openai_completion(body).usage.total_tokens == 2306


def test_a_gemini_client_without_alt_sse_answered_from_a_stored_sse_stream_gets_a_json_array():
    body = replay.answer_from_entry(
        formats.GEMINI, GEMINI_STREAM, entry_streamed=True, client_streams=True, alt_sse=False
    )
    assert body.startswith(b"[") and replay.assemble(formats.GEMINI, body) == GEMINI_ANSWER
    assert replay.media_type(formats.GEMINI, True, alt_sse=False) == "application/json"
    assert replay.media_type(formats.OLLAMA, True) == "application/x-ndjson"
    assert replay.media_type(formats.ANTHROPIC, True) == "text/event-stream"
