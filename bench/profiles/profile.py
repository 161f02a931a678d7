"""Flame graphs of the gateway and of the record ingestion under load (py-spy), with CPU per request and per record.

Starts the fake provider, the gateway (pinned to CPU 0) and, in the production shape, a Celery worker (CPU 1),
drives chat requests at concurrency 32 with wrk, and records py-spy profiles of the gateway process and of the
worker (production) or of the gateway's writer thread (embedded). Needs `pip install py-spy` in the venv, wrk,
and root (or ptrace rights). Run from the repo root:
`.venv/bin/python bench/profiles/profile.py [--shape production|embedded] [--duration 20] [--rate 500]`."""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy import (  # noqa: E402
    PY,
    cleanup,
    cpu_seconds,
    free_port,
    manage,
    run_wrk,
    spawn,
    wait_ready,
    write_lua,
)

SPY = str(Path(PY).parent / "py-spy")
DATABASE = "ingate_bench_profile"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_DB = 10
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
OUT = Path(__file__).resolve().parent  # the flame graphs
RAW = Path(tempfile.gettempdir()) / "ingate-profiles"  # the raw stacks (too big to keep in the repo)


def thread_cpu(pid: int, tid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def writer_tid(pid: int) -> int | None:
    """The OS thread id of the record writer (py-spy dump names Python threads)."""
    out = subprocess.run([SPY, "dump", "--pid", str(pid)], capture_output=True, text=True).stdout
    for match in re.finditer(r"Thread (0x[0-9A-Fa-f]+|\d+) \((?:active|idle)[^)]*\): \"([^\"]+)\"", out):
        if match.group(2) == "ingate-record-writer":
            tid = match.group(1)
            if tid.startswith("0x"):
                break  # a pthread id, not an OS one
            return int(tid)
    return None


def spy(pid: int, name: str, duration: int, rate: int, threads: bool, gil: bool) -> list[subprocess.Popen]:
    """Two recorders on one process: a flame graph (SVG) and raw collapsed stacks (for the percentages)."""
    common = ["--pid", str(pid), "--rate", str(rate), "--duration", str(duration), "--nonblocking"]
    if threads:
        common.append("--threads")
    if gil:
        common.append("--gil")  # only samples holding the GIL: CPU spent, not time waiting for it
    svg = subprocess.Popen(
        [SPY, "record", *common, "--function", "--format", "flamegraph", "-o", str(OUT / f"{name}.svg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    raw = subprocess.Popen(
        [SPY, "record", *common, "--format", "raw", "-o", str(RAW / f"{name}.txt")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return [svg, raw]


def summarise(name: str, top: int = 25, only: str | None = None) -> str:
    """Inclusive and self percentages by function from the raw stacks (one `frames count` line per stack)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in (RAW / f"{name}.txt").read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if only is not None and only not in stack.split(";")[0]:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    lines = [f"### {name}{' (' + only + ')' if only else ''}: {total} samples", "", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)] if total else []
    lines += ["self:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)] if total else []
    return "\n".join(lines)


def count_records(env: dict) -> int:
    code = (
        "import django,os;os.environ['DJANGO_SETTINGS_MODULE']='ingate.settings';django.setup();"
        "from observability.models import RequestRecord;print(RequestRecord.objects.count())"
    )
    out = subprocess.run([PY, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=("production", "embedded"), default="production")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--gil", action="store_true", help="only samples holding the GIL (files get a -gil suffix)")
    args = ap.parse_args()
    suffix = "-gil" if args.gil else ""
    production = args.shape == "production"
    RAW.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ingate-profile-"))
    fake_port, gw_port = free_port(), free_port()
    env = {
        **os.environ,
        "INGATE_DATA_DIR": str(tmp),
        "INGATE_UPSTREAM_OPENAI": f"http://127.0.0.1:{fake_port}",
        "OPENAI_API_KEY": "sk-bench-upstream",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    if production:
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", DATABASE], check=True)
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DATABASE], check=True)
        subprocess.run(["redis-cli", "-n", str(REDIS_DB), "FLUSHDB"], check=True, capture_output=True)
        env["DATABASE_URL"], env["REDIS_URL"] = DATABASE_URL, REDIS_URL
    pin_gw, pin_rest = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    os.sched_setaffinity(0, {1})
    try:
        fake = spawn([*pin_rest, PY, "-m", "tests.fake_provider", "--port", str(fake_port)], tmp / "fake.log", env=env)
        manage(["migrate", "--no-input"], env)
        key = manage(["create_gateway_key", "--org", "bench", "--app", "bench"], env).strip().splitlines()[-1]
        server = [PY, "-m", "uvicorn", "ingate.asgi:application", "--host", "127.0.0.1", "--port", str(gw_port)]
        server += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        server += ["--no-server-header", "--no-date-header", "--no-proxy-headers", "--lifespan", "on"]
        gateway = spawn([*pin_gw, *server], tmp / "gateway.log", env=env)
        worker = None
        if production:
            worker = spawn(
                [*pin_rest, PY, "-m", "celery", "-A", "ingate", "worker", "--pool=solo", "-l", "warning"],
                tmp / "worker.log",
                env=env,
            )
        wait_ready(fake, fake_port, tmp / "fake.log", "fake provider")
        wait_ready(gateway, gw_port, tmp / "gateway.log", "gateway")
        lua = write_lua(tmp, "chat", key, False)
        url = f"http://127.0.0.1:{gw_port}"
        warm = run_wrk(url, lua, 32, 2, 2, pin_rest)
        time.sleep(3)  # let the ingestion of the warm-up finish
        tid = None if production else writer_tid(gateway.pid)
        cpu = {"gateway": cpu_seconds(gateway.pid)}
        if worker is not None:
            cpu["worker"] = cpu_seconds(worker.pid)
        if tid is not None:
            cpu["writer"] = thread_cpu(gateway.pid, tid)
        spies = spy(gateway.pid, f"{args.shape}-gateway{suffix}", args.duration, args.rate, not production, args.gil)
        if worker is not None:
            spies += spy(worker.pid, f"{args.shape}-worker{suffix}", args.duration + 5, args.rate, False, args.gil)
        result = run_wrk(url, lua, 32, 2, args.duration, pin_rest)
        gw_cpu = cpu_seconds(gateway.pid) - cpu["gateway"]
        total = warm["requests"] + result["requests"]
        deadline = time.monotonic() + 120
        stored = 0
        while time.monotonic() < deadline:  # the ingestion catches up: all answered requests stored
            stored = count_records(env)
            if stored >= total:
                break
            time.sleep(1)
        for proc in spies:
            proc.wait(timeout=120)
        print(
            f"\n{args.shape}: chat c32 {result['rps']:.0f} req/s, {result['requests']} requests, errors {result['errors']}"
        )
        print(f"gateway CPU {1000 * gw_cpu / result['requests']:.3f} ms/request (whole process)")
        if worker is not None:
            w = cpu_seconds(worker.pid) - cpu["worker"]
            print(f"worker CPU {1000 * w / result['requests']:.3f} ms/record ({stored} of {total} stored)")
        if tid is not None:
            w = thread_cpu(gateway.pid, tid) - cpu["writer"]
            print(f"writer thread CPU {1000 * w / result['requests']:.3f} ms/record ({stored} of {total} stored)")
        print()
        print(summarise(f"{args.shape}-gateway{suffix}"))
        if worker is not None:
            print(summarise(f"{args.shape}-worker{suffix}"))
    finally:
        cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
        if production:
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", DATABASE])
            subprocess.run(["redis-cli", "-n", str(REDIS_DB), "FLUSHDB"], capture_output=True)


if __name__ == "__main__":
    main()
