"""The README's run command on a fresh data folder: it serves, prints a working key and an admin login; started
again, it tells the user how to get a key that works, since the first one is never shown twice."""

import json
import re
import subprocess
import sys

import httpx

from tests.fake_provider import DEFAULT_TEXT
from tests.up_process import ROOT, embedded_env, started_up


def _in_a_shell(up, *lines: str) -> subprocess.CompletedProcess:
    """The lines pasted into a shell in the checkout, as the banner says; an unset variable is an error."""
    script = "set -euo pipefail\n" + "\n".join(lines)
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=up.env, capture_output=True, text=True, timeout=60)


def test_up_on_a_fresh_machine_prints_a_key_and_a_curl_that_work_and_an_admin_login(tmp_path, fake):
    instance = {"OPENAI_API_KEY": "sk-instance-openai", "INGATE_UPSTREAM_OPENAI": fake.url}
    with started_up(tmp_path, instance) as up:
        banner = up.banner
        key = re.search(r"Gateway key\s+(sk-ingate-\w+)", banner).group(1)
        password = re.search(r"user admin / password (\S+)", banner).group(1)
        assert up.url in banner and f"export INGATE_URL={up.url} INGATE_KEY={key}" in banner
        health = httpx.get(f"{up.url}/ingate/health", timeout=5)
        assert health.status_code == 200 and health.json()["checks"]["database"]["engine"] == "sqlite"
        # The printed curl, run as a user would paste it, is answered by the provider through the gateway.
        answer = subprocess.run(["bash", "-c", up.try_it], capture_output=True, text=True, timeout=20)
        assert json.loads(answer.stdout)["choices"][0]["message"]["content"] == DEFAULT_TEXT, answer
        assert fake.last_request.headers["authorization"] == "Bearer sk-instance-openai"
        me = httpx.get(f"{up.url}/ingate/api/v1/me/", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["org"] == "demo"
        with httpx.Client(base_url=up.url) as browser:
            login_page = browser.get("/admin/login/")
            token = browser.cookies["csrftoken"]
            assert login_page.status_code == 200
            logged_in = browser.post(
                "/admin/login/?next=/admin/",
                data={"username": "admin", "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"},
                headers={"Referer": f"{up.url}/admin/login/"},
            )
            assert logged_in.status_code == 302 and logged_in.headers["location"] == "/admin/"
            assert "Ingate administration" in browser.get("/admin/").text


def test_up_started_again_prints_an_export_line_that_makes_a_key_its_curl_then_uses(tmp_path, fake):
    instance = {"OPENAI_API_KEY": "sk-instance-openai", "INGATE_UPSTREAM_OPENAI": fake.url}
    first = subprocess.run(
        [sys.executable, "manage.py", "up", "--no-serve"],
        cwd=ROOT,
        env=embedded_env(tmp_path) | instance,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    first_key = re.search(r"Gateway key\s+(sk-ingate-\w+)", first.stdout).group(1)
    with started_up(tmp_path, instance) as up:
        assert "sk-ingate-" not in up.banner and "(shown on first start only)" in up.banner
        answer = _in_a_shell(up, up.export_line, up.try_it, 'printf "\\nkey=%s" "$INGATE_KEY"')
        assert answer.returncode == 0, answer.stderr
        reply, _, shown = answer.stdout.rpartition("\n")
        assert json.loads(reply)["choices"][0]["message"]["content"] == DEFAULT_TEXT
        new_key = shown.removeprefix("key=")
        assert new_key.startswith("sk-ingate-") and new_key != first_key
        # The new key has the demo key's scopes: it reads the records too (logs:read), yet is no admin key.
        api = {"Authorization": f"Bearer {new_key}"}
        assert httpx.get(f"{up.url}/ingate/api/v1/records/", headers=api).status_code == 200
        assert httpx.get(f"{up.url}/ingate/api/v1/apps/", headers=api).status_code == 403


def _settings_secrets(data_dir) -> str:
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'ingate.settings'; django.setup(); "
        "from django.conf import settings; print(settings.SECRET_KEY); print(settings.INGATE_ENCRYPTION_KEYS[0])"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=embedded_env(data_dir), capture_output=True, text=True, check=True
    ).stdout


def test_secrets_are_generated_once_and_kept_in_the_data_folder(tmp_path):
    first, second = _settings_secrets(tmp_path), _settings_secrets(tmp_path)
    assert first == second and len(first.splitlines()[0]) > 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    other = tmp_path / "other"
    other.mkdir()
    assert _settings_secrets(other) != first
