"""Routes across wire formats: an OpenAI chat client answered by an Anthropic model and an Anthropic client by an
OpenAI model get requests, answers and streams each side's SDK takes as its own (checked with the official SDKs'
parsers), and what one side cannot say is refused by name unless the route drops it."""

import re

import anthropic
import httpx2
import openai
import orjson
import pytest
from anthropic.lib.streaming import MessageStream
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from proxy import formats
from proxy.errors import ProxyError

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["location"],
}


def to_anthropic(drop=False):
    return formats.translator(formats.OPENAI, formats.ANTHROPIC, drop_unsupported=drop)


def to_openai(drop=False, provider="openai"):
    return formats.translator(formats.ANTHROPIC, formats.OPENAI, drop_unsupported=drop, target_provider=provider)


def refusal(translator, body) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        translator.request(body, "target-model")
    return caught.value


def sse(*events, named=False) -> bytes:
    out = b""
    for event in events:
        if event == "[DONE]":
            out += b"data: [DONE]\n\n"
        else:
            head = b"event: " + event["type"].encode() + b"\n" if named else b""
            out += head + b"data: " + orjson.dumps(event) + b"\n\n"
    return out


def run_stream(editor, data: bytes, cut: int) -> bytes:
    out = b"".join(editor.feed(data[i : i + cut]) for i in range(0, len(data), cut))
    return out + editor.flush()


def same_timestamps(stream: bytes) -> bytes:
    return re.sub(rb'"created":\d+', b'"created":0', stream)


def openai_stream(data: bytes) -> list[ChatCompletionChunk]:
    """The chunks the openai SDK reads off these stream bytes (it raises on an error event, as it would live)."""
    response = httpx2.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=data,
        request=httpx2.Request("POST", "http://gateway/v1/chat/completions"),
    )
    client = openai.OpenAI(api_key="sk-test", base_url="http://gateway/v1")
    return list(openai.Stream(cast_to=ChatCompletionChunk, response=response, client=client))


def anthropic_stream(data: bytes) -> MessageStream:
    response = httpx2.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=data,
        request=httpx2.Request("POST", "http://gateway/v1/messages"),
    )
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url="http://gateway")
    raw = anthropic.Stream(cast_to=RawMessageStreamEvent, response=response, client=client)
    return MessageStream(raw, output_format=anthropic.NOT_GIVEN)


# --- which pairs translate --------------------------------------------------------------------------------


def test_only_openai_chat_and_anthropic_messages_translate_into_each_other():
    assert formats.translator(formats.OPENAI, formats.ANTHROPIC) is not None
    assert formats.translator(formats.ANTHROPIC, formats.OPENAI) is not None
    assert formats.translator(formats.OPENAI, formats.OPENAI) is None
    assert formats.translator(formats.RESPONSES, formats.ANTHROPIC) is None
    assert formats.translator(formats.OPENAI, formats.GEMINI) is None


def test_each_request_gets_its_own_translator():
    assert to_anthropic() is not to_anthropic()


# --- OpenAI chat client, Anthropic target: the request ----------------------------------------------------


def test_an_openai_conversation_with_tools_and_images_becomes_the_same_anthropic_conversation():
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the weather where these were taken?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Rome", "unit": "celsius"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C, clear"}]},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "max_completion_tokens": 300,
        "stop": "END",
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-42",
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "Current weather", "parameters": WEATHER_SCHEMA},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    translated = to_anthropic().request(body, "claude-sonnet-4-5")
    assert translated == {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "You are a weather bot."}, {"type": "text", "text": "Answer in English."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the weather where these were taken?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
                    {
                        "type": "tool_use",
                        "id": "call_2",
                        "name": "get_weather",
                        "input": {"location": "Rome", "unit": "celsius"},
                    },
                ],
            },
            {
                "role": "user",  # both results and the next question in one turn: Anthropic alternates roles
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_2",
                        "content": [{"type": "text", "text": "24C, clear"}],
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "max_tokens": 300,
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"user_id": "user-42"},
        "tools": [{"name": "get_weather", "input_schema": WEATHER_SCHEMA, "description": "Current weather"}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
    }


def test_an_openai_request_without_a_length_gets_the_anthropic_max_tokens_it_requires():
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    assert to_anthropic().request(body, "claude-haiku-4-5") == {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": formats.translate.DEFAULT_MAX_TOKENS,
    }
    legacy = {**body, "max_tokens": 77, "stop": ["a", "b"]}
    assert to_anthropic().request(legacy, "m")["max_tokens"] == 77
    assert to_anthropic().request(legacy, "m")["stop_sequences"] == ["a", "b"]


def test_tool_choice_maps_to_anthropics_choices():
    base = {"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}
    for choice, expected in [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ]:
        assert to_anthropic().request({**base, "tool_choice": choice}, "m")["tool_choice"] == expected


def test_openai_cache_breakpoints_on_parts_survive_as_anthropic_breakpoints():
    body = {
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "Long manual", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "user", "content": "Hi"},
        ]
    }
    system = to_anthropic().request(body, "m")["system"]
    assert system == [{"type": "text", "text": "Long manual", "cache_control": {"type": "ephemeral"}}]


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("n", 2, "`n`"),
        ("logit_bias", {"50256": -100}, "`logit_bias`"),
        ("frequency_penalty", 0.5, "`frequency_penalty`"),
        ("reasoning_effort", "high", "`reasoning_effort`"),
        ("seed", 7, "`seed`"),
        ("temperature", 1.5, "`temperature`"),
        ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}, "`response_format`"),
        ("logprobs", True, "`logprobs`"),
        ("some_vendor_extension", 1, "`some_vendor_extension`"),
    ],
)
def test_openai_parameters_anthropic_lacks_are_refused_by_name(field, value, named):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], field: value}
    error = refusal(to_anthropic(), body)
    assert error.status == 400
    assert error.code == "untranslatable_parameter"
    assert named in error.message and "target-model" in error.message and "drop" in error.message


def test_a_strict_tool_and_an_audio_part_are_refused_by_their_place_in_the_request():
    strict = {
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}],
    }
    assert "`tools[0].function.strict`" in refusal(to_anthropic(), strict).message
    audio = {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}]}
    assert "`messages[0].content[0].type`" in refusal(to_anthropic(), audio).message


def test_a_route_that_drops_untranslatable_parameters_sends_the_rest_and_lists_what_it_dropped():
    body = {
        "messages": [{"role": "user", "content": "Hi", "name": "alice"}],
        "n": 3,
        "temperature": 1.7,
        "response_format": {"type": "json_object"},
        "seed": 1,
    }
    translator = to_anthropic(drop=True)
    translated = translator.request(body, "m")
    assert translated["temperature"] == 1.0  # the nearest the target takes
    assert translated["messages"] == [{"role": "user", "content": "Hi"}]
    assert "n" not in translated and "seed" not in translated
    assert sorted(translator.dropped) == sorted(["messages[0].name", "n", "temperature", "response_format", "seed"])


def test_openai_parameters_at_values_that_change_nothing_and_cache_hints_pass():
    body = {
        "messages": [{"role": "user", "content": "Hi"}],
        "n": 1,
        "logprobs": False,
        "frequency_penalty": 0,
        "store": False,
        "response_format": {"type": "text"},
        "prompt_cache_key": "tenant-1",
    }
    translator = to_anthropic()
    assert translator.request(body, "m")["messages"] == [{"role": "user", "content": "Hi"}]
    assert translator.dropped == []


def test_tool_call_arguments_that_are_not_json_are_the_clients_error():
    body = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
            },
        ]
    }
    error = refusal(to_anthropic(), body)
    assert error.status == 400 and error.code == "invalid_request"
    assert "`messages[1].tool_calls[0].function.arguments`" in error.message


def test_a_translated_anthropic_request_goes_to_the_messages_endpoint_with_its_version_header():
    translator = to_anthropic()
    translator.request({"messages": [{"role": "user", "content": "Hi"}], "stream": True}, "claude-x")
    assert translator.endpoint("claude-x") == ("/v1/messages", "")
    assert translator.headers == [("anthropic-version", "2023-06-01")]


# --- Anthropic client, OpenAI target: the request ---------------------------------------------------------


def test_an_anthropic_conversation_with_tools_and_images_becomes_the_same_openai_conversation():
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Project notes...", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                    {"type": "text", "text": "Weather here?", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "18C"}]},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.7,
        "metadata": {"user_id": "user-42"},
        "tools": [{"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_SCHEMA}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
    }
    assert to_openai().request(body, "gpt-4.1") == {
        "model": "gpt-4.1",
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "You are Claude Code."},
                    {"type": "text", "text": "Project notes..."},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                    {"type": "text", "text": "Weather here?"},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "18C"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 1024,
        "stop": ["\n\nHuman:"],
        "temperature": 0.7,
        "user": "user-42",
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA, "description": "Current weather"},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},  # the Anthropic client needs the usage
    }


def test_an_openai_compatible_target_gets_max_tokens_and_openai_and_azure_get_max_completion_tokens():
    body = {"max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
    assert to_openai(provider="groq").request(body, "llama")["max_tokens"] == 50
    assert to_openai(provider="azure").request(body, "gpt")["max_completion_tokens"] == 50


def test_a_translated_openai_request_goes_to_chat_completions_and_azures_deployment():
    translator = to_openai()
    translator.request({"max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}, "gpt-4.1")
    assert translator.endpoint("gpt-4.1") == ("/v1/chat/completions", "")
    assert translator.endpoint("prod-gpt", provider="azure", azure_api_version="2024-10-21") == (
        "/openai/deployments/prod-gpt/chat/completions",
        "api-version=2024-10-21",
    )
    assert translator.headers == []


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "`thinking`"),
        ({"top_k": 5}, "`top_k`"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "`stop_sequences`"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "`tools[0]`"),
        ({"metadata": {"user_id": "u", "session": "s"}}, "`metadata.session`"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}],
                    }
                ]
            },
            "`messages[0].content[0].is_error`",
        ),
    ],
)
def test_anthropic_parameters_openai_lacks_are_refused_by_name(extra, named):
    body = {"max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}], **extra}
    error = refusal(to_openai(), body)
    assert error.status == 400 and error.code == "untranslatable_parameter"
    assert named in error.message


def test_a_dropping_route_sends_an_anthropic_request_without_what_openai_lacks():
    body = {
        "max_tokens": 100,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": True}]}],
    }
    translator = to_openai(drop=True)
    translated = translator.request(body, "gpt")
    assert "thinking" not in translated
    assert translated["messages"] == [{"role": "tool", "tool_call_id": "t", "content": ""}]
    assert translator.dropped == ["thinking", "messages[0].content[0].is_error"]


# --- whole answers --------------------------------------------------------------------------------------

ANTHROPIC_MESSAGE = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig"},
        {"type": "text", "text": "I'll check the weather."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "get_weather",
            "input": {"location": "Paris"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 50,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 2000,
        "output_tokens": 30,
    },
}

OPENAI_COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Boston, MA"}'},
                    }
                ],
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}


def test_an_anthropic_message_becomes_a_chat_completion_the_openai_sdk_reads_with_all_prompt_tokens():
    translator = to_anthropic()
    translator.request({"messages": [{"role": "user", "content": "Weather?"}]}, "claude-sonnet-4-5")
    completion = ChatCompletion.model_validate(orjson.loads(translator.response(orjson.dumps(ANTHROPIC_MESSAGE), 200)))
    choice = completion.choices[0]
    assert completion.model == "claude-sonnet-4-5-20250929"  # the model that answered
    assert choice.message.content == "I'll check the weather."  # thinking stays out
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name, orjson.loads(call.function.arguments)) == (
        "toolu_01A09q90qw90lq917835lq9",
        "get_weather",
        {"location": "Paris"},
    )
    # OpenAI's prompt_tokens counts cache reads and writes; Anthropic's input_tokens does not.
    assert completion.usage.prompt_tokens == 3050
    assert completion.usage.prompt_tokens_details.cached_tokens == 2000
    assert completion.usage.completion_tokens == 30 and completion.usage.total_tokens == 3080


def test_a_chat_completion_becomes_an_anthropic_message_the_anthropic_sdk_reads_with_cache_reads_apart():
    translator = to_openai()
    translator.request({"max_tokens": 100, "messages": [{"role": "user", "content": "Weather?"}]}, "gpt-4o")
    message = Message.model_validate(orjson.loads(translator.response(orjson.dumps(OPENAI_COMPLETION), 200)))
    assert message.model == "gpt-4o-2024-08-06"
    assert message.stop_reason == "tool_use"
    assert message.content[0].text == "Checking."
    assert message.content[1].type == "tool_use" and message.content[1].input == {"location": "Boston, MA"}
    assert message.usage.input_tokens == 93 and message.usage.cache_read_input_tokens == 1024
    assert message.usage.output_tokens == 46


@pytest.mark.parametrize(
    ("anthropic_reason", "openai_reason"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"), ("stop_sequence", "stop")],
)
def test_stop_reasons_map_to_finish_reasons(anthropic_reason, openai_reason):
    translator = to_anthropic()
    translator.request({"messages": [{"role": "user", "content": "Hi"}]}, "m")
    message = {**ANTHROPIC_MESSAGE, "stop_reason": anthropic_reason}
    assert orjson.loads(translator.response(orjson.dumps(message), 200))["choices"][0]["finish_reason"] == openai_reason


@pytest.mark.parametrize(
    ("openai_reason", "anthropic_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal")],
)
def test_finish_reasons_map_to_stop_reasons(openai_reason, anthropic_reason):
    translator = to_openai()
    translator.request({"max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}, "m")
    completion = {**OPENAI_COMPLETION, "choices": [{**OPENAI_COMPLETION["choices"][0], "finish_reason": openai_reason}]}
    assert orjson.loads(translator.response(orjson.dumps(completion), 200))["stop_reason"] == anthropic_reason


def test_an_anthropic_error_reaches_an_openai_client_as_the_exception_its_sdk_raises_with_the_message():
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}'
    translated = to_anthropic().response(body, 429)
    response = httpx2.Response(
        429, content=translated, request=httpx2.Request("POST", "http://gateway/v1/chat/completions")
    )
    error = openai.OpenAI(api_key="sk-test")._make_status_error_from_response(response)
    assert isinstance(error, openai.RateLimitError)
    assert error.body["message"] == "Number of request tokens has exceeded your per-minute rate limit"
    assert error.body["code"] == "rate_limit_error"


def test_an_openai_error_reaches_an_anthropic_client_as_the_exception_its_sdk_raises_with_the_message():
    body = b'{"error":{"message":"This model\'s maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}'
    translated = to_openai().response(body, 400)
    assert orjson.loads(translated)["type"] == "error"
    response = httpx2.Response(400, content=translated, request=httpx2.Request("POST", "http://gateway/v1/messages"))
    error = anthropic.Anthropic(api_key="sk-ant-test")._make_status_error_from_response(response)
    assert isinstance(error, anthropic.BadRequestError)
    assert "maximum context length is 128000 tokens" in error.message


def test_an_answer_that_is_not_json_is_a_bad_gateway_not_a_crash():
    with pytest.raises(ProxyError) as caught:
        to_anthropic().response(b"<html>502</html>", 200)
    assert caught.value.status == 502 and caught.value.code == "untranslatable_response"


def test_the_whole_body_editor_translates_an_error_that_arrives_in_pieces():
    editor = to_anthropic().editor(503, streamed=False)
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert editor.feed(body[:10]) == b"" and editor.feed(body[10:]) == b""
    assert orjson.loads(editor.flush())["error"]["message"] == "Overloaded"


# --- streams ----------------------------------------------------------------------------------------------

# Anthropic's documented stream of a text answer followed by a tool call (with a ping and a thinking block).
ANTHROPIC_STREAM = sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "stop_sequence": None,
            "usage": {"input_tokens": 472, "cache_read_input_tokens": 100, "output_tokens": 2},
            "content": [],
            "stop_reason": None,
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
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
        "delta": {"type": "input_json_delta", "partial_json": ' "San Francisco, CA"'},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "}"}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 89},
    },
    {"type": "message_stop"},
    named=True,
)


def openai_client_stream(include_usage: bool):
    translator = to_anthropic()
    body = {"messages": [{"role": "user", "content": "Weather in SF?"}], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    translator.request(body, "claude-sonnet-4-5")
    return translator.stream()


@pytest.mark.parametrize("cut", [1, 7, 64, len(ANTHROPIC_STREAM)])
def test_an_anthropic_stream_reaches_an_openai_client_as_chunks_its_sdk_assembles(cut):
    out = run_stream(openai_client_stream(include_usage=True), ANTHROPIC_STREAM, cut)
    assert out.endswith(b"data: [DONE]\n\n")
    chunks = openai_stream(out)
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    completion = state.get_final_completion()
    choice = completion.choices[0]
    assert choice.message.content == "Okay, let me check the weather."
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"location": "San Francisco, CA"}
    assert completion.model == "claude-sonnet-4-5-20250929"
    assert chunks[-1].choices == []  # the usage chunk, last before [DONE]
    assert completion.usage.prompt_tokens == 572 and completion.usage.completion_tokens == 89
    assert completion.usage.prompt_tokens_details.cached_tokens == 100


def test_an_anthropic_stream_translates_the_same_however_its_bytes_are_cut():
    whole = same_timestamps(run_stream(openai_client_stream(True), ANTHROPIC_STREAM, len(ANTHROPIC_STREAM)))
    for cut in (1, 2, 3, 5, 13, 100):
        assert same_timestamps(run_stream(openai_client_stream(True), ANTHROPIC_STREAM, cut)) == whole


def test_an_openai_client_that_did_not_ask_for_usage_gets_no_usage_chunk():
    out = run_stream(openai_client_stream(include_usage=False), ANTHROPIC_STREAM, 50)
    assert b'"usage"' not in out
    assert all(chunk.choices for chunk in openai_stream(out))


def test_each_anthropic_event_is_passed_on_as_soon_as_its_data_line_is_complete():
    editor = openai_client_stream(include_usage=False)
    first_text = ANTHROPIC_STREAM.index(b"Okay, let me check")
    end_of_line = ANTHROPIC_STREAM.index(b"\n", first_text)
    out = editor.feed(ANTHROPIC_STREAM[:end_of_line])
    assert b"Okay, let me check" not in out  # held: the rest of the event may still be on its way
    assert b"Okay, let me check" in editor.feed(b"\n")


def test_an_error_event_in_an_anthropic_stream_is_raised_by_the_openai_sdk_with_its_message():
    cut_stream = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: content_block_stop")] + sse(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, named=True
    )
    out = run_stream(openai_client_stream(True), cut_stream, 9)
    assert b"[DONE]" not in out
    with pytest.raises(openai.APIError, match="Overloaded"):
        openai_stream(out)


def test_an_anthropic_stream_cut_short_is_not_given_an_end_it_did_not_have():
    cut_stream = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: message_delta")]
    out = run_stream(openai_client_stream(True), cut_stream, 30)
    assert b"[DONE]" not in out and b'finish_reason":"tool_calls' not in out


def chunk(delta=None, finish=None, usage=None, choices=True):
    data = {
        "id": "chatcmpl-AWbDKiZ8xS4",
        "object": "chat.completion.chunk",
        "created": 1732200000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_0705bf87c0",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}] if choices else [],
        "usage": usage,
    }
    return data


# OpenAI's stream of a text answer then two parallel tool calls, with usage asked for (as the translator asks).
OPENAI_STREAM = sse(
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
    chunk(
        usage={
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
        },
        choices=False,
    ),
    "[DONE]",
)


def anthropic_client_stream():
    translator = to_openai()
    translator.request(
        {"max_tokens": 500, "messages": [{"role": "user", "content": "Paris and Rome?"}], "stream": True}, "gpt-4o"
    )
    return translator.stream()


@pytest.mark.parametrize("cut", [1, 11, 256, len(OPENAI_STREAM)])
def test_an_openai_stream_reaches_an_anthropic_client_as_events_its_sdk_assembles(cut):
    out = run_stream(anthropic_client_stream(), OPENAI_STREAM, cut)
    message = anthropic_stream(out).get_final_message()
    assert message.model == "gpt-4o-2024-08-06"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Checking both."
    assert (message.content[1].id, message.content[1].input) == ("call_1", {"location": "Paris"})
    assert (message.content[2].id, message.content[2].input) == ("call_2", {"location": "Rome"})
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 86 and message.usage.cache_read_input_tokens == 1920
    assert message.usage.output_tokens == 300


def test_an_openai_stream_translates_the_same_however_its_bytes_are_cut():
    whole = run_stream(anthropic_client_stream(), OPENAI_STREAM, len(OPENAI_STREAM))
    assert whole.startswith(b"event: message_start\n") and whole.endswith(
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    for cut in (1, 2, 3, 5, 13, 100):
        assert run_stream(anthropic_client_stream(), OPENAI_STREAM, cut) == whole


def test_an_error_chunk_in_an_openai_stream_is_raised_by_the_anthropic_sdk_with_its_message():
    first_call = OPENAI_STREAM.rindex(b"data: ", 0, OPENAI_STREAM.index(b'"tool_calls"'))
    broken = OPENAI_STREAM[:first_call] + sse(
        {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}
    )
    out = run_stream(anthropic_client_stream(), broken, 17)
    assert b"event: error" in out and b"message_stop" not in out
    with pytest.raises(anthropic.APIStatusError, match="server had an error"):
        anthropic_stream(out).get_final_message()
