"""The response cache's key and its refusals: requests that mean the same get the same key whatever their key
order, whitespace or bookkeeping fields; anything that changes the answer, or whose org it is, changes the key;
answers built on files, audio or changing server state are not cached."""

import orjson
import pytest

from proxy.response_cache import Refusal, cache_key, cacheable, temperature_positive

CHAT = {
    "model": "gpt-4o",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
    "temperature": 0,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
}


def key(body, org=1, namespace="", provider="openai", endpoint="chat.completions", model="gpt-4o"):
    return cache_key(org, namespace, provider, endpoint, model, body)


def reordered(value):
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def test_the_key_is_a_hex_sha256():
    digest = key(CHAT)
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_the_same_request_written_with_other_key_order_and_whitespace_gets_the_same_key():
    pretty = orjson.loads(orjson.dumps(reordered(CHAT), option=orjson.OPT_INDENT_2))
    assert key(pretty) == key(CHAT)


@pytest.mark.parametrize(
    "extra",
    [
        {"user": "user-42"},
        {"metadata": {"trace": "abc"}},
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"store": True},
        {"service_tier": "flex"},
        {"prompt_cache_key": "tenant-7"},
        {"safety_identifier": "hash-of-user"},
    ],
)
def test_openai_fields_that_do_not_change_the_answer_do_not_change_the_key(extra):
    assert key({**CHAT, **extra}) == key(CHAT)


def test_a_streamed_and_a_whole_request_share_a_key_in_every_format():
    anthropic = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
    assert key({**anthropic, "stream": True, "metadata": {"user_id": "u1"}}, endpoint="messages") == key(
        anthropic, endpoint="messages"
    )
    ollama = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}]}
    assert key({**ollama, "stream": False, "keep_alive": "10m"}, endpoint="chat") == key(ollama, endpoint="chat")
    gemini = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    assert key(gemini, provider="gemini", endpoint="streamGenerateContent", model="gemini-2.5-flash") == key(
        gemini, provider="gemini", endpoint="generateContent", model="gemini-2.5-flash"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"org": 2},
        {"namespace": "app-7"},
        {"provider": "azure"},
        {"endpoint": "responses"},
        {"model": "gpt-4o-mini"},
        {"body": {**CHAT, "temperature": 0.7}},
        {"body": {**CHAT, "messages": [*CHAT["messages"][:1], {"role": "user", "content": "Capital of Spain?"}]}},
        {"body": {**CHAT, "seed": 7}},
        {"body": {k: v for k, v in CHAT.items() if k != "tools"}},
    ],
)
def test_anything_that_can_change_the_answer_or_whose_it_is_changes_the_key(change):
    assert key(change.pop("body", CHAT), **change) != key(CHAT)


def test_anthropic_keeps_in_the_key_what_openai_leaves_out_only_where_it_changes_the_answer():
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
    assert key({**body, "user": "x"}, endpoint="messages") != key(body, endpoint="messages")  # not an Anthropic field


def test_a_key_cannot_be_made_without_an_org():
    with pytest.raises(TypeError, match="org id"):
        cache_key(None, "", "openai", "chat.completions", "gpt-4o", CHAT)


@pytest.mark.parametrize(
    "endpoint",
    ["chat.completions", "completions", "responses", "embeddings", "messages", "generateContent", "chat", "generate"],
)
def test_the_listed_endpoints_are_cacheable(endpoint):
    assert cacheable(endpoint, {"model": "m"}) == (True, "")


@pytest.mark.parametrize("endpoint", ["audio", "images", "moderations", "models", "messages.count_tokens", "tags"])
def test_other_endpoints_are_not_cached(endpoint):
    assert cacheable(endpoint, {"model": "m"}) == (False, Refusal.ENDPOINT)


def test_a_body_that_is_not_an_object_is_not_cached():
    assert cacheable("chat.completions", [1, 2]) == (False, Refusal.BODY)


AUDIO_PART = {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}
FILE_PART = {"type": "file", "file": {"file_id": "file-abc"}}


@pytest.mark.parametrize(
    ("endpoint", "body", "reason"),
    [
        ("chat.completions", {"messages": [{"role": "user", "content": [AUDIO_PART]}]}, Refusal.AUDIO),
        ("chat.completions", {"messages": [{"role": "user", "content": [FILE_PART]}]}, Refusal.FILES),
        (
            "chat.completions",
            {"messages": [], "modalities": ["text", "audio"], "audio": {"voice": "alloy"}},
            Refusal.AUDIO,
        ),
        (
            "responses",
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
            Refusal.FILES,
        ),
        ("responses", {"input": "Hi", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, Refusal.FILES),
        (
            "messages",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "file", "file_id": "file_01"}}],
                    }
                ]
            },
            Refusal.FILES,
        ),
        (
            "messages",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "toolu_1",
                                "content": [
                                    {
                                        "type": "document",
                                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
                                    }
                                ],
                            }
                        ],
                    }
                ]
            },
            Refusal.FILES,
        ),
        (
            "generateContent",
            {"contents": [{"parts": [{"fileData": {"fileUri": "https://x/files/1", "mimeType": "application/pdf"}}]}]},
            Refusal.FILES,
        ),
        (
            "generateContent",
            {"contents": [{"parts": [{"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}}]}]},
            Refusal.AUDIO,
        ),
    ],
)
def test_requests_carrying_files_or_audio_are_not_cached_unless_allowed(endpoint, body, reason):
    assert cacheable(endpoint, body) == (False, reason)
    assert cacheable(endpoint, body, allow_files=True) == (True, "")


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        (
            "chat.completions",
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}
                ]
            },
        ),
        (
            "messages",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                            }
                        ],
                    }
                ]
            },
        ),
        ("generateContent", {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}]}]}),
    ],
)
def test_images_and_plain_text_documents_are_cached(endpoint, body):
    assert cacheable(endpoint, body) == (True, "")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"input": "Hi", "background": True}, Refusal.BACKGROUND),
        ({"input": "Hi", "conversation": "conv_1"}, Refusal.CONVERSATION),
    ],
)
def test_responses_answered_later_or_on_a_changing_conversation_are_not_cached_even_when_files_are_allowed(
    body, reason
):
    assert cacheable("responses", body, allow_files=True) == (False, reason)


@pytest.mark.parametrize(
    ("endpoint", "body", "positive"),
    [
        ("chat.completions", {"temperature": 0}, False),
        ("chat.completions", {"temperature": 0.2}, True),
        ("chat.completions", {}, True),  # OpenAI's default is 1
        ("messages", {"temperature": 0.0}, False),
        ("generateContent", {"generationConfig": {"temperature": 0}}, False),
        ("generateContent", {"generationConfig": {"temperature": 0.9}}, True),
        ("chat", {"options": {"temperature": 0}}, False),
        ("chat", {}, True),  # Ollama's default is 0.8
        ("embeddings", {"input": "x"}, False),
        ("", {"options": {"temperature": 0}}, False),
        ("", {"generationConfig": {"temperature": 0.5}}, True),
    ],
)
def test_temperature_positive_reads_the_temperature_where_each_format_keeps_it(endpoint, body, positive):
    assert temperature_positive(body, endpoint) is positive
