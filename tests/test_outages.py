"""Outages of PostgreSQL and Redis, staged with a TCP forwarder (tests/tcp_proxy.py) in front of the real
servers: warm traffic keeps flowing past the cache TTL, misses and API calls fail fast with a 503, health
tells the truth within 2 s, and revocations missed while Redis was away apply as soon as it is back."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from django.conf import settings as django_settings

from proxy import invalidation
from proxy.cache import LoadingCache
from proxy.db import DatabaseThreads, DatabaseUnavailable
from tenancy.audit import Actor
from tenancy.keys import parse_prefix
from tenancy.models import APIKey
from tenancy.services import api_key_revoke
from tenancy.tests.factories import AppFactory, OrganizationFactory, make_key
from tests.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parent.parent
ON_POSTGRES = django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
needs_postgres = pytest.mark.skipif(
    not ON_POSTGRES, reason="stages a PostgreSQL outage: runs when DATABASE_URL is set (CI)"
)
needs_redis = pytest.mark.skipif(
    not django_settings.REDIS_URL, reason="stages a Redis outage: runs when REDIS_URL is set (CI)"
)


# --- the cache on its own ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_outage_left_behind():
    yield
    LoadingCache._source_failed_at = None  # these tests end mid-outage; the next test's caches start afresh


class Source:
    """A loader that answers, fails or hangs as the test says."""

    def __init__(self):
        self.mode = "answer"
        self.loads = 0

    async def __call__(self, key):
        self.loads += 1
        if self.mode == "fail":
            raise DatabaseUnavailable("OperationalError")
        if self.mode == "hang":
            await asyncio.sleep(30)
        return f"{key}-v{self.loads}"


def test_a_cached_entry_is_served_past_its_ttl_while_reloads_fail_and_fresh_once_they_work():
    source = Source()

    async def main():
        cache = LoadingCache(source, ttl=0.05, miss_ttl=0.05, max_stale=60)
        assert await cache.get("k") == "k-v1"
        source.mode = "fail"
        await asyncio.sleep(0.1)
        served = [await cache.get("k") for _ in range(3)]
        stale = cache.serving_stale()
        source.mode = "answer"
        cache._entries["k"].expires = 0  # the retry pause is over
        await cache.get("k")  # answered stale at once; reloads in the background
        await asyncio.sleep(0.01)
        return served, stale, await cache.get("k"), cache.serving_stale()

    served, stale, after, stale_after = asyncio.run(main())
    assert served == ["k-v1"] * 3 and stale == 1
    assert after.startswith("k-v") and after != "k-v1" and stale_after == 0


def test_requests_do_not_wait_for_a_hung_source_once_an_entry_is_served_stale():
    source = Source()

    async def main():
        cache = LoadingCache(source, ttl=0.05, miss_ttl=0.05, max_stale=60)
        await cache.get("k")
        source.mode = "fail"
        await asyncio.sleep(0.1)
        await cache.get("k")  # the failed reload marks it stale
        source.mode = "hang"
        cache._entries["k"].expires = 0
        started = time.monotonic()
        values = [await cache.get("k") for _ in range(5)]
        return values, time.monotonic() - started

    values, took = asyncio.run(main())
    assert values == ["k-v1"] * 5 and took < 0.05


def test_a_second_cache_does_not_wait_for_a_source_another_cache_just_found_down():
    keys, orgs = Source(), Source()

    async def main():
        key_cache = LoadingCache(keys, ttl=0.05, miss_ttl=0.05, max_stale=60)
        org_cache = LoadingCache(orgs, ttl=0.05, miss_ttl=0.05, max_stale=60)
        await key_cache.get("k")
        await org_cache.get("o")
        keys.mode = orgs.mode = "hang"
        await asyncio.sleep(0.1)
        keys.mode = "fail"  # the key cache's reload fails first (in the gateway: after INGATE_PROXY_DB_TIMEOUT)
        await key_cache.get("k")
        started = time.monotonic()
        value = await org_cache.get("o")
        return value, time.monotonic() - started

    value, took = asyncio.run(main())
    assert value == "o-v1" and took < 0.05


def test_an_invalidated_entry_is_not_served_stale():
    source = Source()

    async def main():
        cache = LoadingCache(source, ttl=0.05, miss_ttl=0.05, max_stale=60)
        await cache.get("k")
        source.mode = "fail"
        await asyncio.sleep(0.1)
        await cache.get("k")
        cache.invalidate("k")  # a revoke
        with pytest.raises(DatabaseUnavailable):
            await cache.get("k")

    asyncio.run(main())


def test_an_entry_older_than_max_stale_is_not_served():
    source = Source()

    async def main():
        cache = LoadingCache(source, ttl=0.05, miss_ttl=0.05, max_stale=0.2)
        await cache.get("k")
        source.mode = "fail"
        await asyncio.sleep(0.1)
        assert await cache.get("k") == "k-v1"
        await asyncio.sleep(0.2)
        with pytest.raises(DatabaseUnavailable):
            await cache.get("k")

    asyncio.run(main())


def test_an_unknown_key_is_not_served_stale_as_unknown():
    source = Source()

    async def main():
        async def load(key):
            if source.mode == "fail":
                raise DatabaseUnavailable("OperationalError")
            return None

        cache = LoadingCache(load, ttl=0.05, miss_ttl=0.05, max_stale=60)
        assert await cache.get("k") is None
        source.mode = "fail"
        await asyncio.sleep(0.1)
        with pytest.raises(DatabaseUnavailable):
            await cache.get("k")

    asyncio.run(main())


def test_a_database_call_that_hangs_answers_database_unavailable_within_the_proxy_timeout(settings):
    settings.INGATE_PROXY_DB_TIMEOUT = 0.2
    db = DatabaseThreads(workers=1)
    release = threading.Event()
    try:

        async def main():
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable) as caught:
                await db.run(release.wait, 10)
            return time.monotonic() - started, caught.value

        took, error = asyncio.run(main())
        assert took < 0.5 and error.status == 503 and error.code == "database_unavailable"
        assert "no answer within 0.2s" in error.message
    finally:
        release.set()
        db.shutdown()


# --- health --------------------------------------------------------------------------------------------


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for sock in held:
        sock.close()


@pytest.mark.django_db
def test_health_reports_a_hung_redis_down_within_two_seconds(client, settings, silent_server):
    settings.REDIS_URL = f"redis://127.0.0.1:{silent_server}/0"
    started = time.monotonic()
    response = client.get("/ingate/health")
    took = time.monotonic() - started
    body = response.json()
    assert response.status_code == 503 and "redis" in body["down"], body
    assert body["checks"]["database"]["status"] == "ok"
    assert took < 2.0


# --- the invalidation listener behind a forwarder --------------------------------------------------------


def _redis_target() -> tuple[str, int, str]:
    url = urlsplit(django_settings.REDIS_URL)
    return url.hostname or "127.0.0.1", url.port or 6379, url.path or "/0"


@needs_redis
def test_the_listener_reconnects_within_a_second_of_redis_returning_and_drops_everything():
    host, port, db = _redis_target()
    proxy = TcpProxy(host, port)
    heard: list[tuple[float, str, str]] = []
    loop = asyncio.new_event_loop()
    task = loop.create_task(
        invalidation.listen(
            f"redis://127.0.0.1:{proxy.port}{db}", lambda kind, value: heard.append((time.monotonic(), kind, value))
        )
    )

    def run():
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass  # how the test stops it

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    direct = redis.Redis.from_url(django_settings.REDIS_URL)
    marker = uuid.uuid4().hex

    def wait_for(kind: str, value: str, after: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, k, v in list(heard):
                if at >= after and k == kind and v == value:
                    return at
            time.sleep(0.01)
        raise AssertionError(f"no {kind}:{value} within {timeout}s; heard {heard}")

    try:
        wait_for("all", "", 0, 5)
        proxy.refuse()
        time.sleep(3)  # long enough for the old backoff to have grown to several seconds
        direct.publish(
            invalidation.channel(django_settings.REDIS_URL), f"key:missed-{marker}"
        )  # nobody listening through the proxy
        back = time.monotonic()
        proxy.forward()
        assert wait_for("all", "", back, 3) - back < 1.5
        assert not any(v == f"missed-{marker}" for _, _, v in heard)
        sent = time.monotonic()
        direct.publish(invalidation.channel(django_settings.REDIS_URL), f"key:after-{marker}")
        assert wait_for("key", f"after-{marker}", sent, 2) - sent < 1.0
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(5)
        proxy.close()
        direct.close()


# --- the gateway as a server process, its database or Redis behind a forwarder ---------------------------


class GatewayProcess:
    def __init__(self, env: dict[str, str], tmp_path: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp_path / "gateway.log").open("w+")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "ingate.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--lifespan",
                "on",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/ingate/health", timeout=5)
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"The gateway did not start:\n{self.output()}") from None
                time.sleep(0.2)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-5000:]

    def chat(self, key: str) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = httpx.post(
            self.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        return response, time.monotonic() - started

    def get(self, path: str, key: str | None = None) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        headers = {"authorization": f"Bearer {key}"} if key else {}
        response = httpx.get(self.url + path, headers=headers, timeout=30)
        return response, time.monotonic() - started

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _gateway_env(tmp_path: Path, fake_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "DJANGO_SETTINGS_MODULE": "ingate.settings",
        "INGATE_DATA_DIR": str(tmp_path),
        # The same secrets as this process, so the keys it creates check out there.
        "SECRET_KEY": django_settings.SECRET_KEY,
        "INGATE_ENCRYPTION_KEY": ",".join(django_settings.INGATE_ENCRYPTION_KEYS),
        "INGATE_UPSTREAM_OPENAI": fake_url,
        "OPENAI_API_KEY": "sk-instance-0001",
        "INGATE_KEY_CACHE_TTL": "1",
        "INGATE_KEY_CACHE_MISS_TTL": "0.5",
        "INGATE_PROXY_DB_TIMEOUT": "1",
        "INGATE_DB_CONNECT_TIMEOUT": "2",
        "INGATE_HEALTH_CHECK_TIMEOUT": "1.5",
        "INGATE_RECORD_INGEST": "gateway",
    }
    return env | overrides


def _postgres_url_via(port: int) -> str:
    db = django_settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@127.0.0.1:{port}/{db['NAME']}"  # the test database


@pytest.fixture
def keys(transactional_db):
    """Two keys of one org, committed (the gateway process reads them over its own connections)."""
    app = AppFactory(org=OrganizationFactory(slug="outage-org"), slug="outage-app")
    return make_key(app=app, name="warm")[1], make_key(app=app, name="cold")[1]


@pytest.fixture
def postgres_outage(transactional_db, keys, fake, tmp_path):
    """(gateway process, forwarder in front of PostgreSQL); no Redis, so health's only dependency is the database."""
    db = django_settings.DATABASES["default"]
    proxy = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    gateway = GatewayProcess(_gateway_env(tmp_path, fake.url, DATABASE_URL=_postgres_url_via(proxy.port)), tmp_path)
    yield gateway, proxy
    proxy.forward()
    gateway.stop()
    proxy.close()


def _warm_traffic_is_served_for(gateway: GatewayProcess, key: str, seconds: float) -> list[float]:
    took = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        response, elapsed = gateway.chat(key)
        assert response.status_code == 200, (response.status_code, response.text, gateway.output())
        took.append(elapsed)
        time.sleep(0.1)
    return took


def _outage_answers(gateway: GatewayProcess, warm: str, cold: str, *, api_within: float) -> None:
    """What the outage looks like from outside, whether the database refuses or hangs."""
    took = _warm_traffic_is_served_for(gateway, warm, 3.0)  # three times the 1 s TTL
    assert max(took) < 1.5, took  # at most one wait for a reload (INGATE_PROXY_DB_TIMEOUT), then stale at once

    response, elapsed = gateway.chat(cold)
    assert response.status_code == 503 and elapsed < 2.0, (response.text, elapsed)
    assert response.json()["error"]["code"] == "database_unavailable"  # OpenAI's shape: the SDK raises its own error

    response, elapsed = gateway.get("/ingate/health")
    body = response.json()
    assert response.status_code == 503 and body["down"] == ["database"] and elapsed < 2.0, (body, elapsed)
    assert body["checks"]["database"]["serving_stale"] >= 1

    response, elapsed = gateway.get("/ingate/api/v1/organizations/", key=warm)
    assert response.status_code == 503 and elapsed < api_within, (response.text, elapsed)
    assert response.headers["content-type"] == "application/json" and "database" in response.json()["detail"]


def _recovers(gateway: GatewayProcess, cold: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        response, _ = gateway.chat(cold)
        if response.status_code == 200:
            break
        assert time.monotonic() < deadline, (response.status_code, response.text)
        time.sleep(0.2)
    # The request that succeeded may have been answered from the org's stale entry while its reload (in the
    # background) was still running: health stops counting stale entries once that reload lands, moments later.
    deadline = time.monotonic() + 5
    while True:
        response, _ = gateway.get("/ingate/health")
        stale = response.json()["checks"]["database"]["serving_stale"]
        if response.status_code == 200 and stale == 0:
            break
        assert time.monotonic() < deadline, (response.status_code, stale)
        time.sleep(0.2)


@needs_postgres
def test_warm_traffic_outlives_the_cache_ttl_while_postgres_refuses_and_misses_fail_fast(postgres_outage, keys):
    gateway, proxy = postgres_outage
    warm, cold = keys
    assert gateway.chat(warm)[0].status_code == 200
    assert gateway.get("/ingate/health")[0].status_code == 200
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        browser.get("/ingate/login/")  # the CSRF cookie: no database needed for it
        proxy.refuse()
        _outage_answers(gateway, warm, cold, api_within=1.0)
        page = browser.post(
            "/ingate/login/",
            data={"username": "someone", "password": "secret", "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
        )
    assert page.status_code == 503 and "database" in page.text and "Server Error" not in page.text
    proxy.forward()
    _recovers(gateway, cold)


@needs_postgres
def test_warm_traffic_outlives_the_cache_ttl_while_postgres_hangs_and_health_says_so_within_two_seconds(
    postgres_outage, keys
):
    gateway, proxy = postgres_outage
    warm, cold = keys
    assert gateway.chat(warm)[0].status_code == 200
    proxy.hang()
    _outage_answers(gateway, warm, cold, api_within=4.0)  # a new connection, cut by INGATE_DB_CONNECT_TIMEOUT (2 s)
    proxy.forward()
    _recovers(gateway, cold)


@needs_postgres
@needs_redis
def test_a_revoke_missed_while_redis_was_down_applies_on_reconnect_and_the_next_within_a_second(keys, fake, tmp_path):
    host, port, db = _redis_target()
    proxy = TcpProxy(host, port)
    stream = f"ingate:records:test:{uuid.uuid4().hex}"
    env = _gateway_env(
        tmp_path,
        fake.url,
        DATABASE_URL=_postgres_url_via(int(django_settings.DATABASES["default"].get("PORT") or 5432)),
        REDIS_URL=f"redis://127.0.0.1:{proxy.port}{db}",
        INGATE_KEY_CACHE_TTL="300",  # only an invalidation can explain a key refused within the test
        INGATE_RECORD_STREAM=stream,
        INGATE_RECORD_INGEST="worker",
    )
    gateway = GatewayProcess(env, tmp_path)
    warm, other = keys
    try:
        assert gateway.chat(warm)[0].status_code == 200 and gateway.chat(other)[0].status_code == 200
        proxy.refuse()
        time.sleep(3)
        api_key_revoke(actor=Actor.system("test"), key=APIKey.objects.get(prefix=parse_prefix(warm)))  # missed there
        assert gateway.chat(warm)[0].status_code == 200  # still cached, as it must be while nothing says otherwise
        back = time.monotonic()
        proxy.forward()
        while gateway.chat(warm)[0].status_code != 401:
            assert time.monotonic() - back < 2.0, "the revoke sent during the outage was not applied on reconnect"
            time.sleep(0.05)
        assert gateway.chat(other)[0].status_code == 200
        sent = time.monotonic()
        api_key_revoke(actor=Actor.system("test"), key=APIKey.objects.get(prefix=parse_prefix(other)))
        while gateway.chat(other)[0].status_code != 401:
            assert time.monotonic() - sent < 1.0, "a revoke after the reconnect took more than a second"
            time.sleep(0.02)
    finally:
        gateway.stop()
        proxy.close()
        redis.Redis.from_url(django_settings.REDIS_URL).delete(stream)
