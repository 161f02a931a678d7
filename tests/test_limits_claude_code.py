"""Claude Code (the real CLI, `claude -p`) against budgets and rate limits: it retries 429s, so a budget refusal
must stop it at once (it honours `x-should-retry: false`), while a rate limit's `retry-after` (at most a window)
is waited out and the request goes through. .ci/run installs the CLI from npm."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from decimal import Decimal

import httpx
import pytest

from tenancy.audit import Actor
from tenancy.limits import budget_create, rate_limit_create
from tests.test_limits_proxy import fresh_counters  # noqa: F401  (autouse)

CLAUDE = shutil.which("claude")
pytestmark = pytest.mark.skipif(
    CLAUDE is None, reason="needs Claude Code on PATH (npm install -g @anthropic-ai/claude-code; CI installs it)"
)
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]}


def claude(gateway, plaintext: str, home, prompt: str = "say hi") -> tuple[subprocess.CompletedProcess, float]:
    """`claude -p` as a user runs it through Ingate, in a home of its own, with nothing sent anywhere else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env |= {
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_API_KEY": plaintext,
        "HOME": str(home),
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    started = time.monotonic()
    done = subprocess.run(
        [CLAUDE, "-p", prompt, "--model", "claude-haiku-4-5"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - started


def test_claude_code_stops_at_once_on_a_budget_refusal(gateway, gateway_key, fake, tmp_path):
    key, plaintext = gateway_key
    budget_create(
        actor=Actor.system("test"), org=key.org, scope="key", key=key, amount_usd=Decimal("0.000001"), period="month"
    )
    done, took = claude(gateway, plaintext, tmp_path)
    assert done.returncode != 0
    assert "month budget of key" in done.stdout + done.stderr  # the refusal's own message, shown to the user
    assert took < 30  # no backoff ladder (Claude Code's own retries would take minutes)
    time.sleep(0.5)
    assert [(r.endpoint, r.outcome) for r in gateway.records] == [("messages", "limited")]  # one request, no retry
    assert fake.requests == []


def test_claude_code_waits_out_a_rate_limit_and_gets_its_answer(gateway, gateway_key, fake, tmp_path, settings):
    settings.INGATE_LIMITS_RATE_WINDOW = 5.0  # 12 a minute: one per 5 s window
    key, plaintext = gateway_key
    rate_limit_create(actor=Actor.system("test"), org=key.org, scope="key", key=key, requests_per_minute=12)
    headers = {"x-api-key": plaintext, "anthropic-version": "2023-06-01"}
    assert httpx.post(gateway.url + "/v1/messages", json=MESSAGE, headers=headers).status_code == 200
    done, _ = claude(gateway, plaintext, tmp_path)  # its first try is refused: the window is full
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Hello from the fake provider!" in done.stdout
    time.sleep(0.5)
    outcomes = [r.outcome for r in gateway.records]
    assert outcomes[0] == "ok" and "limited" in outcomes[1:] and outcomes[-1] == "ok"
