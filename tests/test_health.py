"""/ingate/health reports database, Redis and worker status."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_health_is_200_with_every_part_listed(client):
    if settings.REDIS_URL:
        pytest.importorskip("redis")
    response = client.get("/ingate/health")
    body = response.json()
    assert set(body["checks"]) == {"database", "redis", "worker", "limits", "storage_exports"}
    assert body["checks"]["database"]["status"] == "ok"
    if not settings.REDIS_URL:
        assert response.status_code == 200 and body["checks"]["worker"]["status"] == "ok"


@pytest.mark.django_db
def test_health_is_503_naming_redis_when_it_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/ingate/health")
    assert response.status_code == 503
    assert "redis" in response.json()["down"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.REDIS_URL, reason="the worker check needs a broker: runs when REDIS_URL is set (CI)")
def test_health_sees_a_real_celery_worker_on_redis_and_503_without_one(client, settings):
    settings.INGATE_HEALTH_WORKER_TIMEOUT = 1.0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "ingate",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "-n",
            f"health-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        body = {}
        while time.monotonic() < deadline:
            response = client.get("/ingate/health")
            body = response.json()
            if response.status_code == 200:
                break
            time.sleep(0.5)
        assert body["status"] == "ok", body
        assert any(f"health-{os.getpid()}@" in w for w in body["checks"]["worker"]["workers"])
        from ingate.celery import ping

        assert ping.delay().get(timeout=10) == "pong"
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    # Other tests' workers may still be around on a shared broker; wait until no one answers.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = client.get("/ingate/health")
        if response.status_code == 503:
            break
        time.sleep(0.5)
    assert response.status_code == 503 and response.json()["down"] == ["worker"]
