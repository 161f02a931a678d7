"""The gateway as clients meet it: uvicorn on a loopback port serving the real ASGI application, its
upstreams pointed at the fake provider. Tests talk to it with the official SDKs over real sockets."""

from __future__ import annotations

import collections
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
import uvicorn

from proxy.providers import REGISTRY
from proxy.records import ProxyRecord
from proxy.relay import ProxyApp
from tenancy.tests.factories import AppFactory, OrganizationFactory, make_key

__all__ = ["Gateway", "gateway_server", "gateway", "recording", "gateway_key", "upstream_env"]


@dataclass
class Gateway:
    app: ProxyApp
    url: str

    @property
    def records(self):
        """Records handed over so far, oldest first (the default counting sink keeps the last hundred)."""
        return list(self.app.sink.recent)

    def wait_for_records(self, count: int, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while len(self.app.sink.recent) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.records


def upstream_env(fake_url: str) -> dict[str, dict[str, str]]:
    """Instance credentials for every provider, each upstream at the fake provider (named providers under a
    path of their own, to prove the gateway keeps the base URL's path)."""
    env = {}
    for name, spec in REGISTRY.items():
        base = f"{fake_url}/{name}/v1" if spec.compatible else fake_url
        env[name] = {"base_url": base, "api_key": "" if name == "ollama" else f"sk-upstream-{name}-0001"}
    return env


@pytest.fixture(scope="session")
def gateway_server(django_db_setup, django_db_blocker):
    from ingate.asgi import django_and_channels

    app = ProxyApp(fallback=django_and_channels)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("The gateway did not start")
        time.sleep(0.01)
    yield Gateway(app, f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(timeout=10)
    app.db.shutdown()
    sock.close()


@pytest.fixture
def gateway(gateway_server, fake, settings, transactional_db):
    """The running gateway, freshly configured for this test (empty caches, new sink), upstreams at `fake`.

    transactional_db: the gateway reads keys from its own threads, which only see committed rows.
    """
    settings.INGATE_PROVIDER_ENV = upstream_env(fake.url)
    settings.INGATE_AZURE_API_VERSION = ""
    settings.INGATE_RECORD_SINK = "tests.gateway.CountingSink"  # proxy tests look at what the proxy handed over
    yield gateway_server


@pytest.fixture
def recording(gateway, settings):
    """The gateway with the real record pipeline (the default sink) flushing every 50 ms, on a stream of its own."""
    settings.INGATE_RECORD_FLUSH_SECONDS = 0.05
    settings.INGATE_RECORD_STREAM = f"ingate:records:test:{uuid.uuid4().hex}"
    settings.INGATE_RECORD_SINK = "observability.pipeline.RecordPipeline"
    settings.INGATE_RECORD_INGEST = "gateway"  # no Celery worker here; tests/test_ingest_worker.py has one
    yield gateway
    gateway.app.sink.close()


@pytest.fixture
def gateway_key(transactional_db):
    """(APIKey, plaintext) with the proxy scope, in org `acme`."""
    org = OrganizationFactory(slug="acme", name="Acme")
    return make_key(app=AppFactory(org=org, slug="acme-app"))


class CountingSink:
    """Counts records by outcome; keeps the last few, without their request bodies, for inspection."""

    def __init__(self, keep: int = 100):
        self.counts: collections.Counter[str] = collections.Counter()
        self.recent: collections.deque[ProxyRecord] = collections.deque(maxlen=keep)
        self._pipeline = None

    # Pricing as the real sink prices (the limits stage reserves and settles with it), without storing anything.
    def price(self, record: ProxyRecord) -> float | None:
        return self._pricing().price(record)

    def unit_prices(self, org_id: int, provider: str, model: str):
        return self._pricing().unit_prices(org_id, provider, model)

    def budget_spend(self, org_id: int) -> dict[int, float]:
        return self._pricing().budget_spend(org_id)

    def _pricing(self):
        from observability.pipeline import RecordPipeline

        if self._pipeline is None:
            self._pipeline = RecordPipeline()  # never started: nothing is written
        return self._pipeline

    def submit(self, record: ProxyRecord) -> None:
        self.counts[record.outcome] += 1
        record.body = record.request_body = record.response_body = None  # megabytes, for all anyone here reads
        self.recent.append(record)
