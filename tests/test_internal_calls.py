"""Ingate's own model calls (prompt page, playground, evals) through the proxy's request path: each provider's
wire format built and its answer read back, streamed or not, with tokens and cost, and recorded."""

import asyncio

import pytest
from asgiref.sync import async_to_sync

from proxy import internal
from tests.fake_provider import completion_tokens

PROVIDERS = [
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("gemini", "gemini-2.0-flash"),
    ("ollama", "llama3.2"),
    ("groq", "llama-3.1-8b-instant"),
    ("azure", "gpt-4o-mini"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("provider, model", PROVIDERS)
def test_each_provider_answers_an_internal_chat_with_text_tokens_and_a_record(
    gateway, gateway_key, fake, settings, provider, model, stream
):
    settings.INGATE_AZURE_API_VERSION = "2024-10-21"
    key, _ = gateway_key
    fake.defaults.update({"x-fake-text": "the quick brown fox jumps", "x-fake-chunk-delay-ms": 20})
    deltas: list[str] = []

    async def on_text(text: str) -> None:
        deltas.append(text)

    answer = async_to_sync(internal.chat)(
        internal.Principal(org_id=key.org_id, org_slug=key.org.slug),
        provider,
        model,
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one two three"}],
        {"temperature": 0.2, "max_tokens": 20},
        stream=stream,
        on_text=on_text if stream else None,
        tags={"purpose": "test"},
        user_id="dana",
        client="ingate-test",
    )
    assert answer.ok, answer.error
    assert answer.text == "the quick brown fox jumps"
    assert (not stream and not deltas) or (len(deltas) > 1 and "".join(deltas) == answer.text)
    assert answer.output_tokens == completion_tokens(answer.text) and answer.input_tokens >= 3
    sent = fake.last_request
    assert not any(name.startswith("x-ingate") for name in sent.headers)
    assert "Be brief." in sent.body.decode() and "one two three" in sent.body.decode()
    record = gateway.wait_for_records(1)[-1]
    assert (record.request_id, record.org_id, record.key_id, record.stream) == (
        answer.request_id,
        key.org_id,
        None,
        stream,
    )
    assert (
        record.request_headers["x-ingate-property-purpose"] == "test"
        and record.request_headers["user-agent"] == "ingate-test/1"
    )


def test_an_unknown_model_comes_back_as_the_providers_error(gateway, gateway_key, fake):
    key, _ = gateway_key
    fake.defaults["status"] = 404
    answer = async_to_sync(internal.chat)(
        internal.Principal(org_id=key.org_id, org_slug=key.org.slug),
        "anthropic",
        "claude-nope",
        [{"role": "user", "content": "hi"}],
    )
    assert not answer.ok and answer.status == 404 and "fake provider error 404" in answer.error


def test_aborting_hangs_up_like_a_client_and_the_record_says_so(gateway, gateway_key, fake):
    key, _ = gateway_key
    fake.defaults["hang"] = True

    async def ask_then_abort():
        abort = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            internal.chat(
                internal.Principal(org_id=key.org_id, org_slug=key.org.slug),
                "openai",
                "gpt-4o-mini",
                [{"role": "user", "content": "hi"}],
                abort=abort,
            )
        )
        await asyncio.sleep(0.3)
        abort.set()
        return await asyncio.wait_for(task, 5)

    answer = async_to_sync(ask_then_abort)()
    assert not answer.ok
    assert gateway.wait_for_records(1)[-1].outcome == "client_disconnect"
    assert fake.wait_for_disconnects(1, timeout=3)  # the upstream saw the hang-up
