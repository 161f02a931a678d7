"""The live pages in a real browser. In the embedded mode an eval run queued from the form runs in the
background while its page follows it. On the production shape (PostgreSQL, Redis, `uvicorn --workers 2` and a
Celery worker, each its own process): The sockets stay up past the channel layer's 5 s blocking read; when the
connection is cut (a TCP forwarder of the test's own, in front of uvicorn), both pages reconnect and resume:
the live tail shows each request once, newest first, and the eval run page ends showing the finished run."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory
from tests.tcp_proxy import TcpProxy
from tests.test_browser import capitals, fill_two_target_run, member, page, sign_in  # noqa: F401  (fixtures shared with the other browser tests)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (.ci/run installs it)"
)
production_shape = pytest.mark.skipif(
    not django_settings.REDIS_URL or connection.vendor != "postgresql",
    reason="the production shape needs Redis and PostgreSQL shared between processes: set in CI",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def production(gateway_key, fake, tmp_path):
    """uvicorn with two workers and a Celery worker on the test database and Redis, upstreams at the fake;
    yields the forwarder's base URL (what the browser uses) and uvicorn's own."""
    db = connection.settings_dict
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "INGATE_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECRET_KEY": django_settings.SECRET_KEY,  # the test made the gateway key and the session with it
        "INGATE_ENCRYPTION_KEY": ",".join(django_settings.INGATE_ENCRYPTION_KEYS),
        "INGATE_UPSTREAM_OPENAI": fake.url,
        "OPENAI_API_KEY": "sk-upstream-openai-0001",
        "INGATE_RECORD_STREAM": f"ingate:records:test:{port}",
        "INGATE_RECORD_FLUSH_SECONDS": "0.05",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("uvicorn")),
            "ingate.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "uvicorn.log", "wb"),
        start_new_session=True,
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "ingate",
            "worker",
            "-P",
            "threads",
            "-c",
            "3",
            "-n",
            f"live-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "worker.log", "wb"),
        start_new_session=True,
    )
    forwarder = None
    try:
        direct = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:  # the health check answers 200 once the database, Redis and a worker all do
            try:
                if httpx.get(direct + "/ingate/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and worker.poll() is None, (tmp_path / "uvicorn.log").read_text()
            assert time.monotonic() < deadline, "the production set-up did not become healthy"
            time.sleep(0.3)
        forwarder = TcpProxy("127.0.0.1", port)  # cut() resets open sockets, new ones still connect
        yield forwarder, f"http://127.0.0.1:{forwarder.port}", direct
    finally:
        if forwarder is not None:
            forwarder.close()
        _stop(server)
        _stop(worker)


@pytest.fixture
def dana(gateway_key):
    """A member's session cookie, and a queued-later eval run (made before the browser starts: after it, this
    thread runs an event loop and Django refuses ORM calls in it)."""
    from evals import services
    from evals.transfer import clean_item
    from tenancy.audit import Actor

    key, _ = gateway_key
    user = MembershipFactory(org=key.org, role=Role.MEMBER, user=UserFactory(username="dana")).user
    client = Client()
    client.force_login(user)
    system = Actor.system("test")
    dataset = services.dataset_create(
        actor=system,
        org=key.org,
        name="echo",
        items=[clean_item({"input": f"word {n}", "expected": f"WORD {n}"}) for n in range(8)],
    )
    run = services.run_create(
        actor=system,
        org=key.org,
        dataset_version=dataset.latest,
        targets=[{"provider": "openai", "model": "gpt-4o-mini"}],
        evaluators=[{"kind": "exact_match"}],
        concurrency=1,
        queue=False,
    )
    return client.cookies["sessionid"].value, run


@production_shape
def test_live_pages_stay_connected_and_resume_without_duplicates_on_the_production_shape(
    production,
    dana,
    gateway_key,
    fake,
    tmp_path,
):
    from evals.tasks import run_eval

    forwarder, base, direct = production
    session, run = dana
    _, plaintext = gateway_key
    fake.answers = lambda model, text: text.upper()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        page = context.new_page()
        sockets = []
        page.on("websocket", lambda ws: sockets.append(ws.url))

        page.goto(f"{base}/ingate/live/?org=acme")
        expect(page.locator("#live-state")).to_have_text("connected")
        client = openai.OpenAI(api_key=plaintext, base_url=direct + "/v1", max_retries=0)
        ids = []

        def ask(n: int) -> None:
            for _ in range(n):
                raw = client.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
                ids.append(raw.headers["x-ingate-request-id"])

        ask(5)
        expect(page.locator("#live tbody tr")).to_have_count(5, timeout=15000)
        time.sleep(7)  # past channels_redis's 5 s blocking read, which used to drop the socket
        assert len(sockets) == 1 and page.locator("#live-state").text_content() == "connected", sockets

        forwarder.cut()
        expect(page.locator("#live-state")).to_have_text("disconnected, retrying…")
        ask(5)  # while the page is away
        expect(page.locator("#live-state")).to_have_text("connected", timeout=15000)
        assert "after=" in sockets[-1]
        expect(page.locator("#live tbody tr")).to_have_count(10, timeout=15000)
        time.sleep(2.5)  # more than two polls: nothing arrives twice
        shown = page.eval_on_selector_all("#live tbody tr", "rows => rows.map(r => [r.dataset.record, r.dataset.key])")
        assert sorted(r for r, _ in shown) == sorted(ids)
        assert [k for _, k in shown] == sorted((k for _, k in shown), reverse=True)  # newest first
        page.screenshot(path=str(tmp_path / "live.png"))

        fake.defaults["delay_ms"] = 400  # eight calls one at a time: over three seconds to follow
        page.goto(f"{base}/ingate/evals/runs/{run.pk}/?org=acme")
        run_eval.delay(run.pk)
        expect(page.get_by_test_id("status")).to_have_text("Running", timeout=15000)
        expect(page.get_by_test_id("counts")).not_to_have_text("0 / 8")
        forwarder.cut()  # mid-run
        expect(page.get_by_test_id("status")).to_have_text("Completed", timeout=30000)
        expect(page.get_by_test_id("counts")).to_have_text("8 / 8")
        page.screenshot(path=str(tmp_path / "run.png"))
        browser.close()


def test_in_the_embedded_mode_a_run_queued_from_the_form_runs_in_the_background_while_the_page_follows_it(
    recording,
    member,
    capitals,
    fake,
    page,
    settings,
):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no broker: what a checkout without REDIS_URL does
    fake.defaults["x-fake-delay-ms"] = 400  # four calls one at a time: well over a second
    sign_in(page, recording.url, "dana")
    fill_two_target_run(page, recording.url)
    started = time.monotonic()
    page.get_by_test_id("queue").click()
    expect(page.locator(".flash")).to_contain_text("queued: 4 calls")
    assert time.monotonic() - started < 1.5  # the POST did not wait for the calls
    assert page.get_by_test_id("status").text_content() in ("Queued", "Running")
    expect(page.get_by_test_id("counts")).to_have_text("2 / 4", timeout=10000)  # pushed as it happens
    expect(page.get_by_test_id("status")).to_have_text("Completed", timeout=20000)
    expect(page.get_by_test_id("counts")).to_have_text("4 / 4")
