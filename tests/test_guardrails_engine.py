"""The guardrail engine without a gateway: what the PII detector finds with no model (and what it does not), RE2
keeping a catastrophic pattern linear, placeholders that stay stable within a request, and a stream restored
whatever the byte boundaries of its chunks."""

from __future__ import annotations

import time

import orjson
import pytest

from proxy import formats
from proxy.guardrails.checks import CheckError, clean_checks
from proxy.guardrails.policy import config_of
from proxy.guardrails.state import Guard
from proxy.guardrails.stream import StreamGuard
from proxy.guardrails.text import Vault
from proxy.records import ProxyRecord


def compiled(checks, **row):
    base = {"id": 1, "name": "p", "app_id": None, "key_id": None, "message": "", "stream_mode": "hold"}
    base.update({"restore": True, "redact_stored": False, "on_error": "block"}, **row)
    return config_of([{**base, "checks": clean_checks(checks)}]).default


FOUND = {
    "EMAIL": "write to ana.lopez@example.es today",
    "PHONE": "call me on +44 20 7946 0958 tonight",
    "CREDIT_CARD": "card 4111-1111-1111-1111 expires soon",
    "IBAN": "pay to GB82 WEST 1234 5698 7654 32 please",
    "IP": "the server at 192.168.10.42 is down",
    "US_SSN": "my ssn is 536-22-1234",
    "UK_NINO": "national insurance number AB 12 34 56 C",
    "API_KEY": "use AKIAIOSFODNN7EXAMPLE for the bucket",
    "PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAvWx1c2VyLWtleQ==\n-----END RSA PRIVATE KEY-----",
}


@pytest.mark.parametrize("label", list(FOUND))
def test_pii_is_found_with_no_model_loaded(label):
    [check] = compiled([{"name": "pii", "kind": "pii", "action": "redact"}]).request_checks
    assert label in [found[2] for found in check.scan(FOUND[label])]


def test_a_card_number_that_fails_the_luhn_checksum_is_not_a_card():
    [check] = compiled([{"name": "pii", "kind": "pii", "entities": ["CREDIT_CARD"]}]).request_checks
    assert check.scan("order 4111 1111 1111 1112 shipped") == []


def test_a_catastrophic_pattern_runs_in_linear_time():
    [check] = compiled([{"name": "evil", "kind": "regex", "pattern": "(a+)+$"}]).request_checks
    started = time.perf_counter()
    assert check.scan("a" * 50_000 + "!") == []
    assert time.perf_counter() - started < 0.5  # Python's re would not finish this in our lifetime


@pytest.mark.parametrize(
    ("checks", "field"),
    [
        ([{"name": "x", "kind": "regex", "pattern": "(unclosed"}], "checks[0].pattern"),
        ([{"name": "x", "kind": "json", "schema": {"type": "no-such-type"}}], "checks[0].schema"),
        ([{"name": "x", "kind": "models", "allow": ["gpt-*"], "action": "redact"}], "checks[0].action"),
        ([{"name": "x", "kind": "pii", "entities": ["DNA"]}], "checks[0].entities"),
        ([{"name": "x", "kind": "json", "direction": "request"}], "checks[0].direction"),
        ([{"name": "x", "kind": "keywords", "words": ["a"]}, {"name": "x", "kind": "pii"}], "checks[1].name"),
        ([{"name": "x", "kind": "judge", "prompt": "no-label", "model": "m"}], "checks[0].prompt"),
    ],
)
def test_a_check_that_cannot_run_is_refused_with_its_field_named(checks, field):
    with pytest.raises(CheckError) as caught:
        clean_checks(checks)
    assert caught.value.field == field


def test_the_same_value_gets_the_same_placeholder_and_each_kind_counts_from_one():
    vault = Vault()
    assert vault.placeholder("EMAIL", "a@x.io") == "<EMAIL_1>"
    assert vault.placeholder("EMAIL", "b@x.io") == "<EMAIL_2>"
    assert vault.placeholder("EMAIL", "a@x.io") == "<EMAIL_1>"
    assert vault.placeholder("PHONE", "+1 415 555 0100") == "<PHONE_1>"
    assert vault.restore("<EMAIL_2> and <EMAIL_1>, not <EMAIL_9>") == "b@x.io and a@x.io, not <EMAIL_9>"
    assert vault.restore('{"to": "<EMAIL_1>"}', json_text=True) == '{"to": "a@x.io"}'


def _chat_stream(text: str, pieces: int) -> bytes:
    size = len(text)
    cuts = [text[i * size // pieces : (i + 1) * size // pieces] for i in range(pieces)]
    events = [{"choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]} for c in cuts]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("held", [False, True], ids=["passed-on", "held"])
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_a_stream_is_restored_whatever_its_chunk_boundaries(chunk_size, held):
    checks = [{"name": "pii", "kind": "pii", "action": "redact"}]
    if held:  # an answer check puts the stream in hold mode: restored text must keep its order there too
        checks.append(
            {"name": "codes", "kind": "regex", "pattern": "code \\d+", "direction": "response", "action": "flag"}
        )
    policy = compiled(checks)
    guard = Guard(policy, ProxyRecord("r", "openai", "chat.completions", "POST", "/v1/chat/completions"))
    guard.vault.placeholder("EMAIL", "ana@example.es")
    guard.vault.placeholder("PHONE", "+34 600 000 000")

    class Ex:
        fmt = formats.of("openai", "chat.completions")

    editor = StreamGuard(Ex(), guard, ndjson=False)
    stream = _chat_stream("Mail <EMAIL_1> or call <PHONE_1>; <EMAIL_1> again. <b>bold</b> <EMAIL_", 23)
    out = b"".join(editor.feed(stream[i : i + chunk_size]) for i in range(0, len(stream), chunk_size))
    out += editor.flush()
    text = formats.of("openai", "chat.completions").text(formats.of("openai", "chat.completions").assemble(out))
    assert text == "Mail ana@example.es or call +34 600 000 000; ana@example.es again. <b>bold</b> <EMAIL_"


@pytest.mark.parametrize("pieces", [3, 23, 90])
def test_hold_mode_redacts_a_value_the_model_spreads_over_many_events(pieces):
    policy = compiled([{"name": "pii", "kind": "pii", "action": "redact", "direction": "response"}])
    guard = Guard(policy, ProxyRecord("r", "openai", "chat.completions", "POST", "/v1/chat/completions"))

    class Ex:
        fmt = formats.of("openai", "chat.completions")

    editor = StreamGuard(Ex(), guard, ndjson=False)
    answer = "Their office: +44 20 7946 0958, card 4111 1111 1111 1111. " + "Filler words go here. " * 12
    stream = _chat_stream(answer, pieces)
    out = b"".join(editor.feed(stream[i : i + 40]) for i in range(0, len(stream), 40)) + editor.flush()
    fmt = formats.of("openai", "chat.completions")
    text = fmt.text(fmt.assemble(out))
    assert text == answer.replace("+44 20 7946 0958", "<PHONE_1>").replace("4111 1111 1111 1111", "<CREDIT_CARD_1>")
    assert guard.record.guardrail == "redacted"
