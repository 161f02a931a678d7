"""When things go wrong the client gets the provider's own error shape and status, the upstream stops
working for a client that went away, and nothing the gateway does is a bare 500."""

import gzip
import json
import logging
import socket
import time

import anthropic
import httpx
import openai
import pytest

from tests.fake_provider import DEFAULT_TEXT, completion_tokens

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def auth(gateway_key):
    return {"authorization": f"Bearer {gateway_key[1]}"}


def test_unreachable_upstream_is_a_502_naming_it_in_each_providers_shape(gateway, gateway_key, fake, settings):
    _, plaintext = gateway_key
    dead = closed_port_url()
    settings.INGATE_PROVIDER_ENV = {
        **settings.INGATE_PROVIDER_ENV,
        "openai": {"base_url": dead, "api_key": "sk-o"},
        "anthropic": {"base_url": dead, "api_key": "sk-a"},
    }
    with pytest.raises(openai.InternalServerError) as caught:
        openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0).chat.completions.create(**CHAT)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_unreachable"
    assert f"upstream openai ({dead})" in caught.value.message

    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic.Anthropic(api_key=plaintext, base_url=gateway.url, max_retries=0).messages.create(**MESSAGE)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "api_error"
    assert "upstream anthropic" in caught.value.body["error"]["message"]
    assert [r.outcome for r in gateway.wait_for_records(2)] == ["upstream_unreachable", "upstream_unreachable"]


def test_silent_upstream_is_a_504_and_the_upstream_request_is_dropped(gateway, auth, fake, settings):
    settings.INGATE_UPSTREAM_READ_TIMEOUT = 0.3
    started = time.perf_counter()
    response = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers={**auth, "x-fake-hang": "1"})
    assert response.status_code == 504
    assert 0.25 < time.perf_counter() - started < 2
    error = response.json()["error"]
    assert error["code"] == "upstream_timeout" and "did not answer within 0.3s" in error["message"]
    assert fake.wait_for_disconnects(1, timeout=3)


@pytest.mark.parametrize("status", [400, 429, 500, 529])
def test_upstream_errors_are_relayed_as_the_provider_sent_them(gateway, auth, fake, status):
    headers = {**auth, "x-fake-status": str(status), "x-fake-retry-after": "7"}
    through = httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers=headers)
    direct = httpx.post(fake.url + "/v1/chat/completions", json=CHAT, headers=headers)
    assert through.status_code == status
    assert through.content == direct.content
    assert through.headers["retry-after"] == "7"
    assert gateway.wait_for_records(1)[0].outcome == "upstream_error"


def test_sdk_raises_its_usual_rate_limit_error_through_the_gateway(gateway, gateway_key, fake):
    client = anthropic.Anthropic(api_key=gateway_key[1], base_url=gateway.url, max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**MESSAGE, extra_headers={"x-fake-status": "429"})


def test_client_leaving_mid_stream_cancels_the_upstream_at_once(gateway, auth, fake):
    body = {**CHAT, "stream": True}
    headers = {**auth, "x-fake-chunks": "40", "x-fake-chunk-delay-ms": "50"}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    left_at = time.perf_counter()
    assert fake.wait_for_disconnects(1, timeout=2)
    assert time.perf_counter() - left_at < 0.5
    assert fake.disconnects[0].chunks_sent < 10  # of 40: it stopped generating, not ran to the end
    (record,) = gateway.wait_for_records(1)
    assert record.outcome == "client_disconnect"


def test_client_leaving_before_the_answer_starts_cancels_the_upstream(gateway, auth, fake):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, headers={**auth, "x-fake-hang": "1"}, timeout=0.3)
    assert fake.wait_for_disconnects(1, timeout=2)
    assert gateway.wait_for_records(1)[0].outcome == "client_disconnect"


def test_upstream_breaking_off_a_stream_cuts_the_clients_stream_too(gateway, auth, fake):
    body = {**CHAT, "stream": True}
    received = []
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers={**auth, "x-fake-cut-after": "2"}
        ) as response:
            for line in response.iter_lines():
                received.append(line)
    assert any("data: " in line for line in received)
    assert not any("[DONE]" in line for line in received)  # it did not look like a finished stream
    assert gateway.wait_for_records(1)[0].outcome == "upstream_cut"


def test_body_over_the_limit_is_a_413_in_the_providers_shape(gateway, auth, fake, settings):
    settings.INGATE_MAX_REQUEST_BYTES = 1000
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
    response = httpx.post(gateway.url + "/v1/chat/completions", json=big, headers=auth)
    assert response.status_code == 413
    assert "INGATE_MAX_REQUEST_BYTES" in response.json()["error"]["message"]

    def chunks():  # no content-length: the limit holds while reading
        for _ in range(4):
            yield b"x" * 400

    anthropic_headers = {**auth, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    response = httpx.post(gateway.url + "/v1/messages", content=chunks(), headers=anthropic_headers)
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"
    assert fake.requests == []


@pytest.mark.parametrize(
    "path, check",
    [
        ("/v1/chat/completions", lambda body: body["error"]["type"] == "invalid_request_error"),
        ("/v1/messages", lambda body: body["error"]["type"] == "invalid_request_error" and body["type"] == "error"),
        ("/v1beta/models/gemini-2.0-flash:generateContent", lambda body: body["error"]["status"] == "INVALID_ARGUMENT"),
        ("/api/chat", lambda body: isinstance(body["error"], str)),
    ],
)
def test_malformed_json_is_a_400_in_the_providers_shape(gateway, auth, fake, path, check):
    headers = {**auth, "content-type": "application/json", "anthropic-version": "2023-06-01"}
    response = httpx.post(gateway.url + path, content=b'{"model": "m", "messages": [', headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert check(body)
    assert "not valid JSON" in json.dumps(body)
    assert fake.requests == []


def test_compressed_stream_reaches_the_client_as_asked_and_usage_is_still_read(gateway, auth, fake):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    headers = {**auth, "accept-encoding": "gzip, br, zstd", "x-fake-gzip": "1", "x-fake-chunk-delay-ms": "100"}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.headers["content-encoding"] == "gzip"
        started = time.perf_counter()
        parts = response.iter_raw()
        raw = [next(parts)]
        first_at = time.perf_counter() - started
        raw.extend(parts)
    assert first_at < 0.09  # compressed chunks are still relayed as they come
    assert fake.last_request.headers["accept-encoding"] == "gzip"  # only what the gateway can read too
    events = [
        json.loads(line[6:])
        for line in gzip.decompress(b"".join(raw)).decode().splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == DEFAULT_TEXT
    (record,) = gateway.wait_for_records(1)
    assert record.usage["completion_tokens"] == completion_tokens()


def test_openai_sdk_reads_a_gzipped_answer_through_the_gateway(gateway, gateway_key, fake):
    client = openai.OpenAI(api_key=gateway_key[1], base_url=gateway.url + "/v1", max_retries=0)
    completion = client.chat.completions.create(**CHAT, extra_headers={"x-fake-gzip": "1"})
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert gateway.wait_for_records(1)[0].usage["total_tokens"] == completion.usage.total_tokens


def test_head_root_warm_up_answers_at_once_without_auth_or_logs(gateway, fake, caplog, transactional_db):
    with caplog.at_level(logging.DEBUG):
        response = httpx.head(gateway.url + "/")
    assert response.status_code == 200
    assert [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))] == []  # the client's own
    assert gateway.records == [] and fake.requests == []


def test_ingate_pages_still_go_to_django_even_with_a_provider_header(gateway, transactional_db):
    api = httpx.get(gateway.url + "/ingate/api/v1/me/", headers={"x-ingate-provider": "groq"})
    assert api.status_code == 401 and "detail" in api.json()  # DRF answered, not the proxy
    login = httpx.get(gateway.url + "/admin/login/", headers={"x-ingate-provider": "openai"})
    assert login.status_code == 200 and "Ingate administration" in login.text
