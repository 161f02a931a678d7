"""Change one base URL, keep the code: the official SDKs pointed at the gateway work exactly as against the
provider, and the provider sees its own credential, never the gateway key."""

import asyncio
import json
import time

import anthropic
import httpx
import openai
import pytest
from google import genai

from tests.fake_provider import DEFAULT_TEXT, completion_tokens

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to me"}]
PROMPT_WORDS = 6


def assert_only_provider_credential(request, plaintext: str) -> None:
    """The upstream request carries no trace of the gateway key or any X-Ingate-* header."""
    for name, value in request.headers.items():
        assert plaintext not in value, f"gateway key leaked in header {name}"
        assert not name.startswith("x-ingate-"), f"gateway header {name} reached the upstream"
    assert plaintext not in request.query and plaintext.encode() not in request.body


def openai_client(gateway, plaintext, **kwargs):
    return openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0, **kwargs)


def anthropic_client(gateway, plaintext, **kwargs):
    return anthropic.Anthropic(api_key=plaintext, base_url=gateway.url, max_retries=0, **kwargs)


def test_openai_sdk_chat_through_the_gateway_gets_text_and_usage_with_the_providers_key(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    raw = openai_client(gateway, plaintext).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (PROMPT_WORDS, completion_tokens())
    assert raw.headers["x-ingate-request-id"]
    assert float(raw.headers["x-ingate-overhead-ms"]) >= 0
    upstream = fake.last_request
    assert upstream.path == "/v1/chat/completions"
    assert upstream.headers["authorization"] == "Bearer sk-upstream-openai-0001"
    assert upstream.headers["user-agent"].startswith("OpenAI/Python")
    assert_only_provider_credential(upstream, plaintext)


def test_openai_sdk_stream_arrives_intact_with_usage(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    stream = openai_client(gateway, plaintext).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_TEXT
    assert chunks[-1].usage.completion_tokens == completion_tokens()
    (record,) = gateway.wait_for_records(1)
    assert record.stream and record.status == 200 and record.outcome == "ok"
    assert record.usage["completion_tokens"] == completion_tokens()
    assert record.model == "gpt-4o-mini" and record.response_model == "gpt-4o-mini-2024-07-18"


def test_async_openai_sdk_streams_concurrently(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    client = openai.AsyncOpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0)

    async def one(n: int) -> str:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-fake-text": f"answer number {n}"}
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def main():
        async with client:
            return await asyncio.gather(*(one(n) for n in range(8)))

    assert asyncio.run(main()) == [f"answer number {n}" for n in range(8)]


def test_openai_responses_embeddings_and_models_pass_through(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    client = openai_client(gateway, plaintext)
    response = client.responses.create(model="gpt-4o-mini", input="Say hello")
    assert response.output_text == DEFAULT_TEXT
    assert client.responses.retrieve(response.id).id == response.id
    assert fake.last_request.method == "GET" and fake.last_request.path == f"/v1/responses/{response.id}"
    client.responses.delete(response.id)
    assert fake.last_request.method == "DELETE"
    embedding = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(embedding.data[0].embedding) == 16
    assert any(m.id.startswith("gpt") for m in client.models.list())
    endpoints = [r.endpoint for r in gateway.wait_for_records(5)]
    assert endpoints == ["responses", "responses", "responses", "embeddings", "models"]


def test_anthropic_sdk_message_and_stream_with_beta_header_intact(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    client = anthropic_client(gateway, plaintext)
    beta = "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
    message = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "Say hello to me"}],
        extra_headers={"anthropic-beta": beta},
    )
    assert message.content[0].text == DEFAULT_TEXT
    upstream = fake.last_request
    assert upstream.headers["anthropic-beta"] == beta
    assert upstream.headers["anthropic-version"]  # whatever the SDK sent
    assert upstream.headers["x-api-key"] == "sk-upstream-anthropic-0001"
    assert_only_provider_credential(upstream, plaintext)

    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "Say hello to me"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == DEFAULT_TEXT and final.usage.output_tokens == completion_tokens()
    record = gateway.wait_for_records(2)[-1]
    assert record.provider == "anthropic" and record.endpoint == "messages" and record.stream
    assert record.usage["input_tokens"] == 4 and record.usage["output_tokens"] == completion_tokens()


def test_async_anthropic_sdk_counts_tokens_and_lists_models(gateway, gateway_key, fake):
    _, plaintext = gateway_key

    async def main():
        async with anthropic.AsyncAnthropic(api_key=plaintext, base_url=gateway.url, max_retries=0) as client:
            counted = await client.messages.count_tokens(
                model="claude-haiku-4-5", messages=[{"role": "user", "content": "one two three"}]
            )
            models = await client.models.list()
            return counted, models

    counted, models = asyncio.run(main())
    assert counted.input_tokens == 3
    assert models.data and models.data[0].type == "model"
    # /v1/models with anthropic-version went to Anthropic, with Anthropic's credential.
    assert fake.last_request.headers["x-api-key"] == "sk-upstream-anthropic-0001"
    assert [r.provider for r in gateway.wait_for_records(2)] == ["anthropic", "anthropic"]


def test_prompt_bytes_reach_the_upstream_unchanged(gateway, gateway_key, fake):
    """Prompt caching depends on the exact prefix: the body is forwarded byte for byte."""
    _, plaintext = gateway_key
    body = (
        b'{"model":"claude-haiku-4-5","max_tokens":5,  "system":[{"type":"text","text":"Long rules",'
        b'"cache_control":{"type":"ephemeral"}},{"type":"text","text":"\\u00e9t\\u00e9"}],'
        b'"messages":[{"role":"user","content":"hi"}]}'
    )
    response = httpx.post(
        gateway.url + "/v1/messages?beta=true",
        content=body,
        headers={"x-api-key": plaintext, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    assert response.status_code == 200
    assert fake.last_request.body == body
    assert fake.last_request.query == "beta=true"


def test_azure_openai_sdk_reaches_the_deployment_with_the_azure_key(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    client = openai.AzureOpenAI(api_key=plaintext, azure_endpoint=gateway.url, api_version="2024-10-21", max_retries=0)
    completion = client.chat.completions.create(model="prod-gpt4o", messages=MESSAGES)
    assert completion.choices[0].message.content == DEFAULT_TEXT
    upstream = fake.last_request
    assert upstream.path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert upstream.query_params["api-version"] == ["2024-10-21"]
    assert upstream.headers["api-key"] == "sk-upstream-azure-0001"
    assert_only_provider_credential(upstream, plaintext)
    (record,) = gateway.wait_for_records(1)
    assert (record.provider, record.endpoint, record.model) == ("azure", "chat.completions", "prod-gpt4o")


def test_gemini_with_google_genai_sdk_generates_and_streams(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    client = genai.Client(api_key=plaintext, http_options=genai.types.HttpOptions(base_url=gateway.url))
    response = client.models.generate_content(model="gemini-2.0-flash", contents="Why is the sky blue")
    assert response.text == DEFAULT_TEXT
    assert fake.last_request.headers["x-goog-api-key"] == "sk-upstream-gemini-0001"
    assert_only_provider_credential(fake.last_request, plaintext)
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="hello there"))
    assert "".join(c.text for c in chunks) == DEFAULT_TEXT
    records = gateway.wait_for_records(2)
    assert [(r.provider, r.endpoint, r.model, r.stream) for r in records] == [
        ("gemini", "generateContent", "gemini-2.0-flash", False),
        ("gemini", "streamGenerateContent", "gemini-2.0-flash", True),
    ]
    assert records[1].usage["candidatesTokenCount"] == completion_tokens()


def test_gemini_key_in_query_string_is_swapped_for_the_providers(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    response = httpx.post(
        f"{gateway.url}/v1beta/models/gemini-2.0-flash:countTokens?key={plaintext}",
        json={"contents": [{"parts": [{"text": "a b c d"}]}]},
    )
    assert response.status_code == 200 and response.json()["totalTokens"] == 4
    assert "key" not in fake.last_request.query_params
    assert fake.last_request.headers["x-goog-api-key"] == "sk-upstream-gemini-0001"
    assert_only_provider_credential(fake.last_request, plaintext)


def test_ollama_chat_streams_ndjson_line_by_line(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    headers = {"authorization": f"Bearer {plaintext}", "x-fake-chunk-delay-ms": "150", "x-fake-chunks": "3"}
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}]}
    with httpx.stream("POST", gateway.url + "/api/chat", json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        started = time.perf_counter()
        lines = response.iter_lines()
        first = json.loads(next(lines))
        first_at = time.perf_counter() - started
        rest = [json.loads(line) for line in lines if line]
    assert first_at < 0.1  # three 150 ms gaps follow: the first line was not held back
    assert "".join(part["message"]["content"] for part in [first, *rest]) == DEFAULT_TEXT
    assert rest[-1]["done"] is True
    assert "authorization" not in fake.last_request.headers  # a local Ollama needs no key
    (record,) = gateway.wait_for_records(1)
    assert record.stream and record.usage["eval_count"] == completion_tokens()


def test_ollama_tags_and_show(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    headers = {"authorization": f"Bearer {plaintext}"}
    assert httpx.get(gateway.url + "/api/tags", headers=headers).json()["models"]
    assert httpx.post(gateway.url + "/api/show", json={"model": "llama3.2"}, headers=headers).status_code == 200


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_first_streamed_chunk_reaches_the_client_before_the_upstream_finishes(gateway, gateway_key, fake, sdk):
    _, plaintext = gateway_key
    delays = {"x-fake-chunk-delay-ms": "150", "x-fake-chunks": "4"}
    started = time.perf_counter()
    if sdk == "openai":
        stream = openai_client(gateway, plaintext).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=delays
        )
        pieces = (c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content)
    else:
        stream = anthropic_client(gateway, plaintext).messages.create(
            model="claude-haiku-4-5",
            max_tokens=9,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers=delays,
        )
        pieces = (e.delta.text for e in stream if e.type == "content_block_delta")
    first = next(pieces)
    first_at = time.perf_counter() - started
    rest = list(pieces)
    total = time.perf_counter() - started
    assert first and rest
    # Four 150 ms gaps: a buffering relay would deliver the first piece only after ~0.6 s.
    assert first_at < 0.3 and total > 0.5


def test_stream_without_include_usage_is_still_metered_and_the_client_sees_no_usage(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}).encode()
    headers = {"authorization": f"Bearer {plaintext}", "content-type": "application/json", "x-fake-chunks": "6"}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", content=body, headers=headers) as response:
        lines = [line for line in response.iter_lines() if line]
    assert all('"usage"' not in line for line in lines)  # neither the usage chunk nor "usage": null
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "stop"
    text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or "" for line in lines[:-1])
    assert text == DEFAULT_TEXT
    upstream = fake.last_request
    assert upstream.json()["stream_options"] == {"include_usage": True}
    assert upstream.body.endswith(body[1:])  # the messages themselves went on byte for byte
    (record,) = gateway.wait_for_records(1)
    assert record.usage["completion_tokens"] == completion_tokens()


def test_providers_that_reject_unknown_fields_get_the_body_untouched(gateway, gateway_key, fake):
    _, plaintext = gateway_key
    body = json.dumps({"model": "mistral-small", "messages": MESSAGES, "stream": True}).encode()
    headers = {"authorization": f"Bearer {plaintext}", "content-type": "application/json"}
    with httpx.stream(
        "POST", gateway.url + "/p/mistral/v1/chat/completions", content=body, headers=headers
    ) as response:
        response.read()
    assert fake.last_request.body == body
