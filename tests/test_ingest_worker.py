"""With Redis, gateways only put records on the stream; a real Celery worker prices and inserts them."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from observability.models import RecordRollup, RequestRecord
from observability.pipeline import RecordPipeline
from proxy.records import ProxyRecord

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    not django_settings.REDIS_URL or connection.vendor != "postgresql",
    reason="a worker process needs Redis and a database it can share (PostgreSQL): set in CI",
)
def test_a_celery_worker_ingests_what_the_gateway_streams(gateway_key, settings):
    settings.INGATE_RECORD_INGEST = "worker"
    stream = f"ingate:records:test:{uuid.uuid4().hex}"
    settings.INGATE_RECORD_STREAM = stream
    key, _ = gateway_key
    pipeline = RecordPipeline()
    assert not pipeline.ingest_here
    records = [
        ProxyRecord(
            request_id=str(uuid.uuid4()),
            provider="openai",
            endpoint="chat.completions",
            method="POST",
            path="/v1/chat/completions",
            org_id=key.org_id,
            model="gpt-4o-mini",
            status=200,
            started_at=time.time(),
            usage={"prompt_tokens": 100, "completion_tokens": 10},
        )
        for _ in range(40)
    ]
    for record in records:
        pipeline.submit(record)
    pipeline.close()
    assert RequestRecord.objects.count() == 0  # streamed, not inserted by the gateway

    db = connection.settings_dict  # the worker must write to the test database
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INGATE_RECORD_STREAM": stream, "DATABASE_URL": url}
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
            f"ingest-{os.getpid()}@%h",
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
        from observability.tasks import ingest_records

        ingest_records.delay()  # what the gateway's writer asked for, once the worker is up to take it
        deadline = time.monotonic() + 40
        while RequestRecord.objects.filter(org_id=key.org_id).count() < 40:
            assert time.monotonic() < deadline, "the worker did not ingest the stream"
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    rollup = RecordRollup.objects.get(org_id=key.org_id, dimension="all")
    assert rollup.requests == 40 and rollup.input_tokens == 4000
    assert all(r.cost_total is not None for r in RequestRecord.objects.filter(org_id=key.org_id))
