"""Claude Code (the real CLI, `claude -p`) through a gateway with guardrail policies: a blocked request stops it
with the guardrail's own message (a 400 is never retried), and with reversible redaction the provider sees
only placeholders while the user reads their own values back. .ci/run installs the CLI from npm."""

from __future__ import annotations

import re
import time

import pytest

from tenancy.audit import Actor
from tenancy.guardrails import guardrail_policy_create
from tests.test_limits_claude_code import CLAUDE, claude

pytestmark = pytest.mark.skipif(
    CLAUDE is None, reason="needs Claude Code on PATH (npm install -g @anthropic-ai/claude-code; CI installs it)"
)


def test_claude_code_shows_the_guardrails_message_and_stops_on_a_blocked_request(gateway, gateway_key, fake, tmp_path):
    key, plaintext = gateway_key
    guardrail_policy_create(
        actor=Actor.system("test"),
        org=key.org,
        name="house rules",
        message="Ask about something else.",
        checks=[{"name": "no-greetings", "kind": "keywords", "words": ["say hi"], "action": "block"}],
    )
    done, took = claude(gateway, plaintext, tmp_path)  # its prompt is "say hi"
    assert done.returncode != 0
    shown = done.stdout + done.stderr
    assert "no-greetings" in shown and "Ask about something else." in shown
    assert took < 30  # no retry ladder
    time.sleep(0.5)
    assert fake.requests == []
    assert {r.outcome for r in gateway.records} == {"blocked"}


def test_claude_code_gets_its_own_email_back_while_the_provider_sees_a_placeholder(
    gateway, gateway_key, fake, tmp_path
):
    key, plaintext = gateway_key
    guardrail_policy_create(
        actor=Actor.system("test"),
        org=key.org,
        name="pii",
        checks=[{"name": "emails", "kind": "pii", "entities": ["EMAIL_ADDRESS"], "action": "redact"}],
        restore=True,
    )

    # The fake provider answers with the placeholder it was given for the user's address (Claude Code's own system
    # prompt holds an address too, noreply@anthropic.com, which takes a placeholder of its own); the gateway puts
    # the address back.
    def answer(model, text):
        found = re.findall(r"<EMAIL_\d+>", text)
        return f"I will write to {found[-1]} today." if found else "no placeholder"

    fake.answers = answer
    done, _ = claude(gateway, plaintext, tmp_path, prompt="say hi to alice@example.com")
    assert done.returncode == 0, done.stdout + done.stderr
    sent = b" ".join(r.body for r in fake.requests).decode()
    assert "alice@example.com" not in sent and "<EMAIL_1>" in sent
    assert "alice@example.com" in done.stdout
