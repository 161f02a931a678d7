"""The worker path on Redis: a real Celery worker runs an eval through the gateway's proxy path; killed
mid-run (SIGKILL), a restarted worker takes the run up again and it completes with each item counted once."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from evals import services
from evals.models import EvalResult, EvalRun, RunStatus
from evals.transfer import clean_item
from observability.models import RequestRecord
from tenancy.audit import Actor
from tenancy.tests.factories import make_credential

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = Actor.system("test")
ITEMS = 12

pytestmark = pytest.mark.skipif(
    not django_settings.REDIS_URL or connection.vendor != "postgresql",
    reason="a worker process needs Redis and a database it can share (PostgreSQL): set in CI",
)


def start_worker(name: str, stream: str, tmp_path, *, beat: bool = False) -> subprocess.Popen:
    db = connection.settings_dict  # the worker must use the test database
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "INGATE_RECORD_STREAM": stream,
        "INGATE_RECORD_FLUSH_SECONDS": "0.05",
        "INGATE_EVAL_HEARTBEAT_SECONDS": "0.3",
        "INGATE_EVAL_STALL_SECONDS": "2",
        "INGATE_EVAL_RESUME_SECONDS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "ingate",
        "worker",
        "--pool=solo",
        "-n",
        f"{name}-{os.getpid()}@%h",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "warning",
    ]
    if beat:
        command += ["-B", "-s", str(tmp_path / "beat-schedule")]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop(worker: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, sig)
        worker.wait(timeout=30)


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


def test_a_worker_killed_mid_run_is_replaced_and_the_run_completes_counting_each_item_once(
    gateway_key,
    fake,
    settings,
    tmp_path,
):
    key, _ = gateway_key
    settings.CELERY_TASK_ALWAYS_EAGER = False
    make_credential(key.org, provider="openai", secret="sk-upstream-openai-0001", base_url=fake.url)
    fake.answers = lambda model, text: text.upper()
    fake.defaults["delay_ms"] = 250  # slow enough to kill the worker with calls in flight
    dataset = services.dataset_create(
        actor=SYSTEM,
        org=key.org,
        name="shout",
        items=[clean_item({"input": f"word {n}", "expected": f"WORD {n}"}) for n in range(ITEMS)],
    )
    stream = f"ingate:records:test:{uuid.uuid4().hex}"
    first = start_worker("evals-a", stream, tmp_path)
    second = None
    try:
        run = services.run_create(
            actor=SYSTEM,
            org=key.org,
            dataset_version=dataset.latest,
            targets=[{"provider": "openai", "model": "gpt-4o-mini"}],
            evaluators=[{"kind": "exact_match"}],
            concurrency=2,
        )
        wait_until(lambda: EvalRun.objects.get(pk=run.pk).done >= 3, 60, "the first worker never got going")
        stop(first, signal.SIGKILL)
        killed_at = time.time()
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING and 3 <= run.done < ITEMS

        second = start_worker("evals-b", stream, tmp_path, beat=True)
        wait_until(lambda: EvalRun.objects.get(pk=run.pk).finished, 90, "the run was never resumed to the end")
        run.refresh_from_db()
        assert (run.status, run.done, run.total, run.failed, run.attempts) == (RunStatus.COMPLETED, ITEMS, ITEMS, 0, 2)
        results = list(EvalResult.objects.filter(run=run))
        assert len(results) == ITEMS == len({r.item_id for r in results})
        assert all(r.passed and r.output == r.item.expected for r in results)
        assert run.targets.get().summary["pass_rate"] == 1.0
        # The new worker's calls are in the request records, priced (the killed one's last few may be lost
        # with its memory: records are flushed every 50 ms here).
        later = {r.request_id for r in results if r.created_at.timestamp() > killed_at}
        assert later
        wait_until(
            lambda: (
                set(RequestRecord.objects.filter(pk__in=later).values_list("pk", flat=True).iterator())
                and RequestRecord.objects.filter(pk__in=later).count() == len(later)
            ),
            30,
            "records never ingested",
        )
        assert all(
            r.cost_total is not None and r.client == "ingate-evals" for r in RequestRecord.objects.filter(pk__in=later)
        )
    finally:
        stop(first, signal.SIGKILL)
        if second is not None:
            stop(second)
