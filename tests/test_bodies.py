"""Bodies per the org's setting: nothing, the request's shape, or full bodies (capped) with streamed answers
reassembled into the text the user saw."""

import json
import time

import httpx
import openai
import pytest
from django.test import Client

from observability.bodies import reassemble
from observability.models import BodyMode, ObservabilitySettings, RequestBody, RequestRecord
from proxy import formats
from proxy.providers import detect_path
from tenancy.tests.factories import MembershipFactory, UserFactory
from tests.fake_provider import DEFAULT_TEXT

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to me"}]


@pytest.mark.parametrize(
    "path, body, headers",
    [
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}, {}),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": "hello", "stream": True}, {}),
        (
            "/v1/messages",
            {"model": "claude-haiku-4-5", "max_tokens": 9, "messages": MESSAGES[1:], "stream": True},
            {"anthropic-version": "2023-06-01"},
        ),
        (
            "/v1/complete",
            {"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 9, "stream": True},
            {"anthropic-version": "2023-06-01"},
        ),
        (
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            {"contents": [{"parts": [{"text": "hello"}]}]},
            {},
        ),
        ("/api/chat", {"model": "llama3.2", "messages": MESSAGES}, {}),
        ("/api/generate", {"model": "llama3.2", "prompt": "hello"}, {}),
    ],
)
def test_every_providers_stream_reassembles_into_the_answer(fake, path, body, headers):
    raw = httpx.post(fake.url + path, json=body, headers={**headers, "x-fake-chunks": "5"}).content
    route = detect_path(path.partition("?")[0], anthropic_version=bool(headers))
    assert (
        reassemble(raw, formats.of_provider(route.provider, route.endpoint)).strip() == DEFAULT_TEXT
    )  # legacy completions start with a space, as Claude's did


def test_a_plain_json_answer_is_kept_as_it_came():
    raw = b'{"id": "x", "choices": [{"message": {"content": "hi"}}]}'
    assert reassemble(raw, formats.OPENAI) == raw.decode()


def _set_mode(org, mode, max_bytes=100_000):
    ObservabilitySettings.objects.update_or_create(org=org, defaults={"body_mode": mode, "body_max_bytes": max_bytes})


def _record_and_body(request_id):
    deadline = time.monotonic() + 5
    while not RequestRecord.objects.filter(pk=request_id).exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return RequestBody.objects.filter(record_id=request_id).first()


def _stream_chat(gateway, plaintext, **headers):
    client = openai.OpenAI(api_key=plaintext, base_url=gateway.url + "/v1", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers
    ) as response:
        response.read()
        return response.headers["x-ingate-request-id"]


def test_full_bodies_keep_the_request_and_the_reassembled_stream(recording, gateway_key, fake):
    key, plaintext = gateway_key
    _set_mode(key.org, BodyMode.FULL)
    request_id = _stream_chat(recording, plaintext, **{"x-fake-gzip": "1"})
    body = _record_and_body(request_id)
    assert json.loads(body.request)["messages"] == MESSAGES
    assert body.response == DEFAULT_TEXT  # decompressed and reassembled, although gzip travelled untouched
    assert body.metadata["messages"] == {"system": 1, "user": 1} and not body.truncated
    browser = Client()
    browser.force_login(MembershipFactory(org=key.org, user=UserFactory(username="reader")).user)
    page = browser.get(f"/ingate/logs/{request_id}/").content.decode()
    assert f'data-testid="response-json">{DEFAULT_TEXT}</pre>' in page and "Say hello to me" in page


def test_full_bodies_are_capped_at_the_orgs_limit(recording, gateway_key, fake):
    key, plaintext = gateway_key
    _set_mode(key.org, BodyMode.FULL, max_bytes=40)
    body = _record_and_body(_stream_chat(recording, plaintext))
    assert len(body.request.encode()) == 40 and body.truncated


def test_metadata_mode_keeps_the_shape_but_no_text(recording, gateway_key, fake):
    _, plaintext = gateway_key  # no settings row: metadata is the default
    body = _record_and_body(_stream_chat(recording, plaintext))
    assert body.request == "" and body.response == ""
    assert body.metadata["messages"] == {"system": 1, "user": 1} and body.metadata["parameters"] == {"stream": True}


def test_off_keeps_nothing_of_the_bodies(recording, gateway_key, fake):
    key, plaintext = gateway_key
    _set_mode(key.org, BodyMode.OFF)
    assert _record_and_body(_stream_chat(recording, plaintext)) is None
