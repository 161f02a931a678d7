"""The design card's ASGI server, daphne, still serves the proxy (streaming included) and Django."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from tests.fake_provider import DEFAULT_TEXT

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daphne_serves_streaming_proxy_requests_and_django_pages(tmp_path, fake):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"INGATE_DATA_DIR": str(tmp_path), "INGATE_UPSTREAM_OPENAI": fake.url, "OPENAI_API_KEY": "sk-instance"}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    created = subprocess.run(
        [*manage, "create_gateway_key", "--org", "o", "--app", "a"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    port = _free_port()
    daphne = Path(sys.executable).with_name("daphne")
    proc = subprocess.Popen(
        [str(daphne), "-b", "127.0.0.1", "-p", str(port), "ingate.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(base + "/ingate/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
                time.sleep(0.2)
        assert health.status_code == 200
        client = openai.OpenAI(api_key=key, base_url=base + "/v1", max_retries=0)
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == DEFAULT_TEXT
        assert fake.last_request.headers["authorization"] == "Bearer sk-instance"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
