"""The README's run command on a fresh data folder: it serves, prints a working key and an admin login."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fake_provider import DEFAULT_TEXT

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embedded_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "INGATE_ENCRYPTION_KEY")}
    env["INGATE_DATA_DIR"] = str(tmp_path)
    return env


def test_up_on_a_fresh_machine_prints_a_key_and_a_curl_that_work_and_an_admin_login(tmp_path, fake):
    port = _free_port()
    env = _embedded_env(tmp_path) | {"OPENAI_API_KEY": "sk-instance-openai", "INGATE_UPSTREAM_OPENAI": fake.url}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        banner = ""
        for line in proc.stdout:
            banner += line
            if "ANTHROPIC_BASE_URL" in line:
                break
        key = re.search(r"Gateway key\s+(sk-ingate-\w+)", banner).group(1)
        password = re.search(r"user admin / password (\S+)", banner).group(1)
        assert f"http://127.0.0.1:{port}" in banner
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/ingate/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, banner
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["checks"]["database"]["engine"] == "sqlite"
        # The printed curl, run as a user would paste it, is answered by the provider through the gateway.
        curl = re.search(r"Try it:\n(.+?)\n\n", banner, re.S).group(1)
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=20)
        assert json.loads(answer.stdout)["choices"][0]["message"]["content"] == DEFAULT_TEXT, answer
        assert fake.last_request.headers["authorization"] == "Bearer sk-instance-openai"
        me = httpx.get(f"http://127.0.0.1:{port}/ingate/api/v1/me/", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["org"] == "demo"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
            login_page = browser.get("/admin/login/")
            token = browser.cookies["csrftoken"]
            assert login_page.status_code == 200
            logged_in = browser.post(
                "/admin/login/?next=/admin/",
                data={"username": "admin", "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"},
                headers={"Referer": f"http://127.0.0.1:{port}/admin/login/"},
            )
            assert logged_in.status_code == 302 and logged_in.headers["location"] == "/admin/"
            assert "Ingate administration" in browser.get("/admin/").text
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _settings_secrets(data_dir) -> str:
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'ingate.settings'; django.setup(); "
        "from django.conf import settings; print(settings.SECRET_KEY); print(settings.INGATE_ENCRYPTION_KEYS[0])"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_embedded_env(data_dir), capture_output=True, text=True, check=True
    ).stdout


def test_secrets_are_generated_once_and_kept_in_the_data_folder(tmp_path):
    first, second = _settings_secrets(tmp_path), _settings_secrets(tmp_path)
    assert first == second and len(first.splitlines()[0]) > 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    other = tmp_path / "other"
    other.mkdir()
    assert _settings_secrets(other) != first
