"""The record pipeline: sustained records per second into SQLite (the embedded writer) and PostgreSQL (direct,
and through a Redis stream), and the proxy's latency while the records table is locked (a stuck database)
compared with normal. Run from the repo root: `.venv/bin/python bench/records.py [--records 50000] [--duration 6]`.
`--paths` picks the throughput paths; `--py-spy DIR` records each path's stacks (py-spy, collapsed) into DIR."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy import PY, cleanup, free_port, manage, run_wrk, spawn, wait_ready, write_lua  # noqa: E402

DATABASE = "ingate_bench_records"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/12"


def fresh_database() -> None:
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", DATABASE], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], check=True)


def throughput(records: int, redis: bool, worker: bool = False, sqlite: bool = False, spy: Path | None = None):
    """Records per second from submit() to committed rows, and the process's CPU ms per record (the writer's: the
    submitting thread only appends), in a fresh process (settings are read at start). `worker`: the records are
    put on the stream first and only the ingestion is timed, what a Celery worker does per record. `sqlite`: no
    DATABASE_URL, the embedded shape's SQLite file. `spy`: py-spy records the process's stacks into that file."""
    code = f"""
import os, time, uuid, django
os.environ["DJANGO_SETTINGS_MODULE"] = "ingate.settings"
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from observability.models import RequestRecord
from observability.pipeline import RecordPipeline
from proxy.records import ProxyRecord
from tenancy.tests.factories import OrganizationFactory
org = OrganizationFactory(slug="t-" + uuid.uuid4().hex[:8])
records = [ProxyRecord(request_id=str(uuid.uuid4()), provider="openai", endpoint="chat.completions", method="POST",
    path="/v1/chat/completions", org_id=org.pk, model="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18",
    status=200, started_at=time.time(), usage={{"prompt_tokens": 900, "completion_tokens": 120}},
    request_headers={{"user-agent": "claude-cli/2.0", "x-claude-code-session-id": f"s{{n % 50}}"}},
    body={{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "hi"}}]}}) for n in range({records})]
pipeline = RecordPipeline()
if {worker}:
    from observability.rows import slim
    for start in range(0, len(records), 1000):
        pipeline._produce([slim(record) for record in records[start : start + 1000]])
started, cpu = time.perf_counter(), time.process_time()
if {worker}:
    pipeline.drain(seconds=600)
else:
    for record in records:
        pipeline.submit(record)
    pipeline.close(timeout=600)
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
assert RequestRecord.objects.filter(org=org).count() == {records}, "records lost"
print(f"RATE {{{records} / elapsed:.0f}} {{cpu * 1000 / {records}:.4f}}")
"""
    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "INGATE_DATA_DIR": tempfile.mkdtemp(prefix="ingate-bench-")}
    env.pop("REDIS_URL", None)
    if sqlite:
        env.pop("DATABASE_URL")
    if redis or worker:
        subprocess.run(["redis-cli", "-n", "12", "FLUSHDB"], check=True, capture_output=True)
        env["REDIS_URL"] = REDIS_URL
        env["INGATE_RECORD_INGEST"] = "gateway"  # produce and consume in this one process, to time both
    command = [PY, "-c", code]
    if spy is not None:
        spy_bin = str(Path(PY).parent / "py-spy")
        command = [spy_bin, "record", "--format", "raw", "--rate", "250", "--output", str(spy), "--", *command]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RATE ")), None)
    if line is None:
        sys.exit(f"throughput run failed:\n{out.stdout}\n{out.stderr}")
    return float(line.split()[1]), float(line.split()[2])


def latency_with_a_stuck_database(duration: float, redis: bool) -> list[tuple[str, dict]]:
    """wrk at concurrency 1 through the gateway: normally, then while the records table is locked.
    With Redis the production way: the gateway streams records and a Celery worker inserts them."""
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="ingate-bench-"))
    fake_port, gw_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "INGATE_DATA_DIR": str(tmp),
        "INGATE_UPSTREAM_OPENAI": f"http://127.0.0.1:{fake_port}",
        "OPENAI_API_KEY": "sk-bench",
    }
    env.pop("REDIS_URL", None)
    if redis:
        subprocess.run(["redis-cli", "-n", "12", "FLUSHDB"], check=True, capture_output=True)
        env["REDIS_URL"] = REDIS_URL
    try:
        fake = spawn([PY, "-m", "tests.fake_provider", "--port", str(fake_port)], tmp / "fake.log", env=env)
        manage(["migrate", "--no-input"], env)
        if redis:
            spawn(
                [PY, "-m", "celery", "-A", "ingate", "worker", "--pool=solo", "-l", "warning"],
                tmp / "worker.log",
                env=env,
            )
        key = manage(["create_gateway_key", "--org", "stuck", "--app", "stuck"], env).strip().splitlines()[-1]
        gateway = spawn(
            [
                PY,
                "-m",
                "uvicorn",
                "ingate.asgi:application",
                "--port",
                str(gw_port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
                "--lifespan",
                "on",
            ],
            tmp / "gateway.log",
            env=env,
        )
        wait_ready(fake, fake_port, tmp / "fake.log", "fake provider")
        wait_ready(gateway, gw_port, tmp / "gateway.log", "gateway")
        lua = write_lua(tmp, "chat", key, False)
        url = f"http://127.0.0.1:{gw_port}"
        run_wrk(url, lua, 4, 1, 1, [])  # warm-up
        rows = [("database answering", run_wrk(url, lua, 1, 1, duration, []))]
        with psycopg.connect(DATABASE_URL) as lock:
            lock.execute("LOCK TABLE observability_requestrecord IN ACCESS EXCLUSIVE MODE")
            rows.append(("records table locked", run_wrk(url, lua, 1, 1, duration, [])))
            lock.rollback()
        sent = sum(r["requests"] for _, r in rows)
        deadline = time.monotonic() + 60
        with psycopg.connect(DATABASE_URL, autocommit=True) as check:
            while True:
                stored = check.execute("SELECT count(*) FROM observability_requestrecord").fetchone()[0]
                if stored >= sent or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        rows.append((f"stored after unlock: {stored:,} of {sent:,} answered (+ warm-up)", {}))
        return rows
    finally:
        cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


PATHS = {
    "sqlite": ("writer → SQLite (embedded shape)", {"redis": False, "sqlite": True}),
    "direct": ("writer → PostgreSQL", {"redis": False}),
    "streamed": ("writer → Redis stream → PostgreSQL", {"redis": True}),
    "worker": ("Redis stream → PostgreSQL (a worker's ingestion alone)", {"redis": True, "worker": True}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--throughput-only", action="store_true", help="skip the stuck-database latency runs")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"throughput paths, of {', '.join(PATHS)}")
    parser.add_argument("--py-spy", type=Path, help="record each path's stacks with py-spy into this directory")
    args = parser.parse_args()
    if not args.throughput_only and not shutil.which("wrk"):
        sys.exit("wrk not found on PATH (Debian/Ubuntu: apt-get install wrk)")
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    stuck, results = {}, {}
    try:
        for path in args.paths.split(","):
            fresh_database()
            spy = args.py_spy / f"{path}.txt" if args.py_spy else None
            results[path] = throughput(args.records, **PATHS[path][1], spy=spy)
        if not args.throughput_only:
            fresh_database()
            stuck[False] = latency_with_a_stuck_database(args.duration, redis=False)
            fresh_database()
            stuck[True] = latency_with_a_stuck_database(args.duration, redis=True)
    finally:
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", DATABASE], check=False)
        subprocess.run(["redis-cli", "-n", "12", "FLUSHDB"], check=False, capture_output=True)
    print(f"\nRecord pipeline, {args.records:,} records\n")
    print("| path | records/s (submit → committed, rollups included) | CPU ms per record (this process) |")
    print("|---|---:|---:|")
    for path, (rate, cpu) in results.items():
        print(f"| {PATHS[path][0]} | {rate:,.0f} | {cpu:.3f} |")
    for redis, rows in stuck.items():
        how = "gateway streams to Redis, a Celery worker inserts" if redis else "no Redis: a gateway thread inserts"
        print(f"\nProxy latency at concurrency 1 while the database is stuck ({how})\n")
        print("| database | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for name, result in rows:
            if result:
                print(f"| {name} | {result['rps']:,.0f} | {result['p50']:.2f} | {result['p99']:.2f} |")
            else:
                print(f"\n{name}")


if __name__ == "__main__":
    main()
