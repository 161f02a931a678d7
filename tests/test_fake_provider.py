"""Tests of the fake provider itself, through the official SDKs pointed straight at it (no Django)."""

import asyncio
import base64
import gzip
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.fake_provider import DEFAULT_TEXT, FakeProvider, completion_tokens, prompt_tokens

REPO_ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to me"}]
PROMPT_WORDS = 6  # "Be brief." + "Say hello to me"
ANSWER_WORDS = 5  # DEFAULT_TEXT


def openai_client(fake, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=fake.url + "/v1", max_retries=0, **kwargs)


def anthropic_client(fake, **kwargs) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=fake.url, max_retries=0, **kwargs)


def sse_events(raw: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")]


# --- token rule --------------------------------------------------------------------------------


def test_token_rule_counts_words_of_message_text_only():
    assert prompt_tokens({"model": "gpt-4o-mini", "messages": MESSAGES}) == PROMPT_WORDS
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "one two"}]}], "system": "three"}
    assert prompt_tokens(parts) == 3
    assert prompt_tokens({"contents": [{"role": "user", "parts": [{"text": "a b c d"}]}]}) == 4
    assert prompt_tokens({}) == 1
    assert completion_tokens() == ANSWER_WORDS == len(DEFAULT_TEXT.split())


# --- OpenAI ------------------------------------------------------------------------------------


def test_openai_chat_answers_dated_model_with_deterministic_usage(fake):
    completion = openai_client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (6, 5, 11)
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0
    request = fake.last_request
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json()["model"] == "gpt-4o-mini"


def test_openai_chat_cached_and_reasoning_switches_fill_usage_details(fake):
    completion = openai_client(fake).chat.completions.create(
        model="o4-mini",
        messages=MESSAGES,
        extra_headers={"x-fake-cached-tokens": "4", "x-fake-reasoning-tokens": "7"},
    )
    usage = completion.usage
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details.reasoning_tokens == 7
    assert usage.completion_tokens == ANSWER_WORDS + 7


def test_openai_async_chat_stream_with_include_usage_ends_with_usage_chunk(fake):
    async def run():
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=fake.url + "/v1", max_retries=0)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-fake-chunks": "16"},
        )
        chunks = [chunk async for chunk in stream]
        await client.close()
        return chunks

    chunks = asyncio.run(run())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_TEXT
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 16
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == PROMPT_WORDS
    assert chunks[-1].usage.completion_tokens == ANSWER_WORDS
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.model for c in chunks} == {"gpt-4o-mini-2024-07-18"}


def test_openai_chat_stream_without_include_usage_sends_no_usage(fake):
    response = httpx.post(
        fake.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    )
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-request-id"].startswith("req_")
    assert response.text.endswith("data: [DONE]\n\n")
    events = sse_events(response.content)
    assert all("usage" not in e for e in events)
    assert len(events) == 1 + 4 + 1  # role, DEFAULT_CHUNKS contents, finish


def test_openai_sdk_stream_helper_accumulates_text(fake):
    client = openai_client(fake)
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == DEFAULT_TEXT
    assert final.usage.total_tokens == PROMPT_WORDS + ANSWER_WORDS


def test_openai_responses_stream_follows_the_real_event_sequence(fake):
    client = openai_client(fake)
    events = list(client.responses.create(model="gpt-4.1-mini", input="Tell me a joke", stream=True))
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.output_text == DEFAULT_TEXT
    assert completed.model == "gpt-4.1-mini-2024-07-18"
    usage = completed.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (4, 5, 9)
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_openai_responses_create_retrieve_and_delete(fake):
    client = openai_client(fake)
    response = client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "hi there"}])
    assert response.output_text == DEFAULT_TEXT
    assert response.usage.input_tokens == 2
    again = client.responses.retrieve(response.id)
    assert again.id == response.id and again.status == "completed"
    client.responses.delete(response.id)
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/v1/responses"),
        ("GET", f"/v1/responses/{response.id}"),
        ("DELETE", f"/v1/responses/{response.id}"),
    ]


def test_openai_embeddings_base64_default_and_float_decode_to_same_vector(fake):
    client = openai_client(fake)
    via_sdk = client.embeddings.create(model="text-embedding-3-small", input=["alpha beta", "gamma"])
    assert fake.last_request.json()["encoding_format"] == "base64"  # what the SDK asks for by default
    assert len(via_sdk.data) == 2 and len(via_sdk.data[0].embedding) == 16
    assert via_sdk.usage.prompt_tokens == 3
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha beta", "gamma"], encoding_format="float", dimensions=16
    )
    assert floats.data[0].embedding == pytest.approx(via_sdk.data[0].embedding, abs=1e-6)
    raw = httpx.post(
        fake.url + "/v1/embeddings", json={"input": "x", "encoding_format": "base64", "dimensions": 3}
    ).json()
    assert len(struct.unpack("<3f", base64.b64decode(raw["data"][0]["embedding"]))) == 3


def test_openai_legacy_completions_stream_and_not(fake):
    client = openai_client(fake)
    whole = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time")
    assert whole.choices[0].text == DEFAULT_TEXT and whole.usage.prompt_tokens == 4
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="x", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == DEFAULT_TEXT
    assert chunks[-1].usage.completion_tokens == ANSWER_WORDS


def test_openai_models_moderations_images_and_audio(fake):
    client = openai_client(fake)
    assert "gpt-4o-mini" in [m.id for m in client.models.list()]
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    moderation = client.moderations.create(input=["hello", "I will kill it"])
    assert [r.flagged for r in moderation.results] == [False, True]
    image = client.images.generate(model="gpt-image-1", prompt="a cat")
    assert base64.b64decode(image.data[0].b64_json).startswith(b"\x89PNG")
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input="hi")
    assert speech.response.headers["content-type"] == "audio/mpeg" and len(speech.content) > 100
    transcript = client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"ID3fake", "audio/mpeg"))
    assert transcript.text == DEFAULT_TEXT
    assert fake.last_request.headers["content-type"].startswith("multipart/form-data")


def test_openai_compatible_prefix_routes_by_suffix(fake):
    client = openai.OpenAI(api_key="gsk", base_url=fake.url + "/openai/v1", max_retries=0)
    assert client.chat.completions.create(model="llama-3.1-8b", messages=MESSAGES).model == "llama-3.1-8b-2024-07-18"
    assert fake.last_request.path == "/openai/v1/chat/completions"


def test_azure_openai_deployment_name_stands_in_for_model(fake):
    client = openai.AzureOpenAI(api_key="azure-key", azure_endpoint=fake.url, api_version="2024-10-21", max_retries=0)
    completion = client.chat.completions.create(model="my-deployment", messages=MESSAGES)
    request = fake.last_request
    assert request.path == "/openai/deployments/my-deployment/chat/completions"
    assert request.query == "api-version=2024-10-21"
    assert request.headers["api-key"] == "azure-key"
    assert completion.model == "my-deployment-2024-07-18"
    client.embeddings.create(model="embed-deployment", input="hello")
    assert fake.last_request.path == "/openai/deployments/embed-deployment/embeddings"
    no_model = httpx.post(fake.url + "/openai/deployments/dep1/chat/completions?api-version=x", json={"messages": []})
    assert no_model.json()["model"] == "dep1-2024-07-18"
    v1 = openai.OpenAI(api_key="k", base_url=fake.url + "/openai/v1", max_retries=0)
    assert v1.chat.completions.create(model="gpt-4o", messages=MESSAGES).usage.prompt_tokens == PROMPT_WORDS


# --- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_message_usage_includes_cache_fields(fake):
    fake.defaults.update({"cached_tokens": 10, "cache_write_tokens": 3})
    message = anthropic_client(fake).messages.create(
        model="claude-test", max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "Hi there"}]
    )
    assert message.model == "claude-test-20250514"
    assert message.content[0].text == DEFAULT_TEXT
    assert message.stop_reason == "end_turn"
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (4, ANSWER_WORDS)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (10, 3)
    assert "anthropic-version" in fake.last_request.headers


def test_anthropic_stream_reports_usage_in_message_delta(fake):
    client = anthropic_client(fake)
    with client.messages.stream(
        model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == DEFAULT_TEXT and len(texts) == 4
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, ANSWER_WORDS)
    raw = httpx.post(
        fake.url + "/v1/messages",
        headers={"anthropic-version": "2023-06-01", "x-fake-chunks": "2"},
        json={"model": "claude-x", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "a b"}]},
    )
    assert raw.headers["request-id"].startswith("req_")
    names = [line[7:] for line in raw.text.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    events = sse_events(raw.content)
    assert events[0]["message"]["usage"]["output_tokens"] == 1
    assert events[0]["message"]["usage"]["input_tokens"] == 2
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] == ANSWER_WORDS


def test_anthropic_count_tokens_models_batches_and_legacy_complete(fake):
    client = anthropic_client(fake)
    count = client.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "a b c"}])
    assert count.input_tokens == 3
    page = client.models.list()
    assert page.data[0].id.startswith("claude-") and page.has_more is False
    batch = client.messages.batches.create(
        requests=[{"custom_id": "1", "params": {"model": "claude-x", "max_tokens": 5, "messages": MESSAGES[1:]}}]
    )
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 1
    done = client.messages.batches.retrieve(batch.id)
    assert done.processing_status == "ended" and done.request_counts.succeeded == 1
    # The current SDK dropped the legacy Text Completions API, so speak it with httpx.
    legacy_body = {"model": "claude-2.1", "max_tokens_to_sample": 10, "prompt": "\n\nHuman: hi\n\nAssistant:"}
    legacy = httpx.post(fake.url + "/v1/complete", json=legacy_body).json()
    assert legacy["completion"].strip() == DEFAULT_TEXT and legacy["stop_reason"] == "stop_sequence"
    streamed = httpx.post(fake.url + "/v1/complete", json={**legacy_body, "stream": True})
    completions = [e for e in sse_events(streamed.content) if e["type"] == "completion"]
    assert "".join(e["completion"] for e in completions).strip() == DEFAULT_TEXT
    assert completions[-1]["stop_reason"] == "stop_sequence"


# --- Gemini ------------------------------------------------------------------------------------


def test_gemini_generate_stream_count_and_embed_with_google_genai(fake):
    genai = pytest.importorskip("google.genai")
    client = genai.Client(api_key="g-key", http_options=genai.types.HttpOptions(base_url=fake.url))
    response = client.models.generate_content(model="gemini-2.0-flash", contents="Why is the sky blue")
    assert response.text == DEFAULT_TEXT
    assert response.model_version == "gemini-2.0-flash-001"
    usage = response.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (5, 5, 10)
    assert fake.last_request.path.endswith("/models/gemini-2.0-flash:generateContent")
    assert fake.last_request.headers["x-goog-api-key"] == "g-key"

    fake.defaults.update({"reasoning_tokens": 3, "cached_tokens": 2})
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hello there"))
    assert fake.last_request.query == "alt=sse"
    assert "".join(c.text for c in chunks) == DEFAULT_TEXT
    final = chunks[-1].usage_metadata
    assert (final.thoughts_token_count, final.cached_content_token_count, final.total_token_count) == (3, 2, 10)
    assert chunks[-1].candidates[0].finish_reason == "STOP"

    assert client.models.count_tokens(model="gemini-2.0-flash", contents="a b c").total_tokens == 3
    embedded = client.models.embed_content(model="text-embedding-004", contents=["a", "b"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0].values) == 16


def test_gemini_stream_without_alt_sse_is_a_json_array(fake):
    url = fake.url + "/v1/models/gemini-2.0-flash:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    response = httpx.post(url, json=body)
    assert response.headers["content-type"] == "application/json"
    items = json.loads(response.text)
    assert "".join(i["candidates"][0]["content"]["parts"][0]["text"] for i in items) == DEFAULT_TEXT
    assert items[-1]["usageMetadata"]["candidatesTokenCount"] == ANSWER_WORDS
    sse = httpx.post(url + "?alt=sse", json=body)
    assert sse.text.count("\r\n\r\n") == 4 and len(sse_events(sse.content)) == 4


# --- Ollama ------------------------------------------------------------------------------------


def test_ollama_chat_streams_ndjson_by_default(fake):
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "why is the sky blue"}]}
    with httpx.stream("POST", fake.url + "/api/chat", json=body) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert "".join(line["message"]["content"] for line in lines) == DEFAULT_TEXT
    assert [line["done"] for line in lines] == [False] * 4 + [True]
    assert (lines[-1]["prompt_eval_count"], lines[-1]["eval_count"]) == (5, ANSWER_WORDS)
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["total_duration"] > 0

    whole = httpx.post(fake.url + "/api/chat", json={**body, "stream": False}).json()
    assert whole["message"]["content"] == DEFAULT_TEXT and whole["done"] is True
    generated = httpx.post(fake.url + "/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False})
    assert generated.json()["response"] == DEFAULT_TEXT and generated.json()["eval_count"] == ANSWER_WORDS


def test_ollama_embed_tags_and_show(fake):
    embed = httpx.post(fake.url + "/api/embed", json={"model": "nomic-embed-text", "input": ["a", "b c"]}).json()
    assert len(embed["embeddings"]) == 2 and embed["prompt_eval_count"] == 3
    legacy = httpx.post(fake.url + "/api/embeddings", json={"model": "nomic-embed-text", "prompt": "a"}).json()
    assert len(legacy["embedding"]) == 16
    assert httpx.get(fake.url + "/api/tags").json()["models"][0]["name"] == "llama3.2:latest"
    assert "details" in httpx.post(fake.url + "/api/show", json={"model": "llama3.2"}).json()


# --- switches ----------------------------------------------------------------------------------


def test_status_switch_raises_each_sdks_usual_error(fake):
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(fake).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-status": "429"}
        )
    assert caught.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError):
        openai_client(fake).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-fake-status": "500"}
        )

    fake.defaults["status"] = 529
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        anthropic_client(fake).messages.create(model="claude-x", max_tokens=5, messages=MESSAGES[1:])
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"
    fake.defaults["status"] = 429
    with pytest.raises(anthropic.RateLimitError):
        anthropic_client(fake).messages.create(model="claude-x", max_tokens=5, messages=MESSAGES[1:])

    gemini = httpx.post(fake.url + "/v1beta/models/gemini-2.0-flash:generateContent", json={})
    assert gemini.status_code == 429
    assert gemini.json() == {
        "error": {"code": 429, "message": "fake provider error 429 (x-fake-status)", "status": "RESOURCE_EXHAUSTED"}
    }
    ollama = httpx.post(fake.url + "/api/chat", json={}, headers={"x-fake-status": "404"})
    assert ollama.status_code == 404 and ollama.json() == {"error": "fake provider error 404 (x-fake-status)"}


def test_gemini_sdk_raises_client_error_on_status_switch(fake):
    genai = pytest.importorskip("google.genai")
    fake.defaults["status"] = 429
    client = genai.Client(api_key="g", http_options=genai.types.HttpOptions(base_url=fake.url))
    with pytest.raises(genai.errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"


def test_retry_after_switch_adds_header_to_errors(fake):
    response = httpx.post(
        fake.url + "/v1/chat/completions", json={}, headers={"x-fake-status": "429", "x-fake-retry-after": "2"}
    )
    assert response.headers["retry-after"] == "2"


def test_request_headers_override_defaults(fake):
    fake.defaults = {"x-fake-text": "from defaults", "chunks": 2}
    client = openai_client(fake)
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == "from defaults"
    overridden = client.chat.completions.create(model="m", messages=MESSAGES, extra_headers={"x-fake-text": "hi there"})
    assert overridden.choices[0].message.content == "hi there"
    assert overridden.usage.completion_tokens == 2
    utf8 = httpx.post(fake.url + "/v1/chat/completions", json={}, headers={"x-fake-text": "héllo".encode()})
    assert utf8.json()["choices"][0]["message"]["content"] == "héllo"


def test_unknown_path_and_bad_switch_answer_in_openai_error_shape(fake):
    missing = httpx.post(fake.url + "/v2/nothing", json={})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Invalid URL (POST /v2/nothing)"
    bad = httpx.post(fake.url + "/v1/chat/completions", json={}, headers={"x-fake-chunks": "many"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    not_json = httpx.post(fake.url + "/v1/chat/completions", content=b"{nope")
    assert not_json.status_code == 400


def test_delay_postpones_the_response_headers(fake):
    started = time.perf_counter()
    response = httpx.post(fake.url + "/v1/chat/completions", json={}, headers={"x-fake-delay-ms": "100"})
    assert response.status_code == 200 and time.perf_counter() - started >= 0.1


def test_gzip_stream_decodes_and_arrives_incrementally(fake):
    headers = {"x-fake-gzip": "1", "x-fake-chunk-delay-ms": "100", "x-fake-chunks": "3"}
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", fake.url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.headers["content-encoding"] == "gzip"
        started = time.perf_counter()
        parts = response.iter_text()
        first = next(parts)
        first_at = time.perf_counter() - started
        rest = "".join(parts)
        total = time.perf_counter() - started
    # Three 100 ms gaps follow the first event; an unflushed compressor would hold it back until the end.
    assert first.startswith("data: ") and first_at < 0.05 and total > 0.25
    assert (
        "".join(e["choices"][0]["delta"].get("content", "") for e in sse_events((first + rest).encode()))
        == DEFAULT_TEXT
    )
    plain = httpx.post(fake.url + "/v1/chat/completions", json={}, headers={"x-fake-gzip": "1"})
    assert plain.headers["content-encoding"] == "gzip" and plain.json()["object"] == "chat.completion"
    with httpx.stream("POST", fake.url + "/v1/chat/completions", json={}, headers={"x-fake-gzip": "1"}) as raw:
        assert json.loads(gzip.decompress(b"".join(raw.iter_raw())))["object"] == "chat.completion"


def test_client_disconnect_mid_stream_is_recorded(fake):
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    headers = {"x-fake-chunks": "8", "x-fake-chunk-delay-ms": "50"}
    received = []
    with httpx.stream("POST", fake.url + "/v1/chat/completions", json=body, headers=headers) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                received.append(line)
                if len(received) == 2:
                    break
    assert fake.wait_for_disconnects(1, timeout=3)
    (event,) = fake.disconnects
    assert event.path == "/v1/chat/completions" and event.stream
    assert 2 <= event.chunks_sent < 8


def test_finished_stream_records_no_disconnect(fake):
    list(openai_client(fake).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    time.sleep(0.05)
    assert fake.disconnects == []


def test_hang_never_answers_so_the_client_times_out(fake):
    client = openai_client(fake, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES, extra_headers={"x-fake-hang": "1"})
    assert fake.wait_for_disconnects(1, timeout=3)
    assert fake.disconnects[0].chunks_sent == 0 and not fake.disconnects[0].stream


def test_cut_after_closes_the_stream_abruptly(fake):
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    received = []
    cut = {"x-fake-cut-after": "2"}
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", fake.url + "/v1/chat/completions", json=body, headers=cut) as response:
            received.extend(response.iter_lines())
    events = sse_events("\n".join(received).encode())
    assert [e["choices"][0]["delta"].get("content") for e in events] == ["", "Hello", " from"]
    assert "data: [DONE]" not in received
    time.sleep(0.05)
    assert fake.disconnects == []  # the server hung up, not the client


# --- HTTP plumbing -----------------------------------------------------------------------------


def _raw_exchange(fake, payload: bytes, expect_responses: int) -> bytes:
    with socket.create_connection((fake.host, fake.port), timeout=3) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < expect_responses or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def test_pipelined_requests_are_answered_in_order_on_one_connection(fake):
    slow = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-fake-delay-ms: 100\r\nx-fake-text: first\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    first_part, second_part = b'{"messa', b'ges":[{"content":"a b c"}]}'
    chunked = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-fake-text: second\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(first_part), first_part, len(second_part), second_part)
    )
    data = _raw_exchange(fake, slow + chunked, 2)
    assert data.index(b'"content":"first"') < data.index(b'"content":"second"')
    assert b'"prompt_tokens":3' in data
    assert fake.requests[1].json() == {"messages": [{"content": "a b c"}]}


def test_recorded_request_keeps_query_headers_and_body(fake):
    httpx.post(fake.url + "/v1/chat/completions?a=1&b=two", json={"x": 1}, headers={"X-Custom": "Value"})
    request = fake.last_request
    assert request.query == "a=1&b=two" and request.query_params == {"a": ["1"], "b": ["two"]}
    assert request.headers["x-custom"] == "Value" and request.header("X-CUSTOM") == "Value"
    assert request.body == b'{"x":1}' and request.json() == {"x": 1}
    fake.reset()
    assert fake.requests == [] and fake.defaults == {}


def test_provider_context_manager_binds_a_free_port():
    with FakeProvider() as provider:
        assert provider.url == f"http://127.0.0.1:{provider.port}" and provider.port > 0
        assert httpx.get(provider.url + "/healthz").json() == {"status": "ok"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(provider.url + "/healthz", timeout=1)


def test_standalone_module_prints_ready_line_and_serves():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_provider", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("fake provider listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert httpx.post(url + "/v1/chat/completions", json={}).json()["object"] == "chat.completion"
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0
