"""Side by side, interleaved in one run: the fake provider called directly, a raw relay (the floor, bench/floor.py),
Ingate embedded (SQLite, its own writer thread inserts records) and Ingate in the production shape (PostgreSQL,
Redis, one Celery worker inserts records), with the targets of issue 20 as ratios between them.
Run from the repo root: `.venv/bin/python bench/sidebyside.py [--rounds 3] [--duration 5] [--worker-cpu 1]`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy import (  # noqa: E402
    PY,
    TTFB_WARMUP,
    arun,
    cleanup,
    cpu_seconds,
    free_port,
    machine_info,
    manage,
    run_wrk,
    spawn,
    ttfb,
    uvicorn_cmd,
    wait_ready,
    write_lua,
)

DATABASE = "ingate_bench_sidebyside"
RECORDS = "observability_requestrecord"
WRITER = "ingate-record-writer"[:15]  # what /proc/…/comm keeps of the thread's name
INGEST_TASK = "observability.ingest_records"
# (scenario, concurrency, wrk threads); "ttfb" is the raw-socket stream client of bench/proxy.py.
SCENARIOS = [("chat", 1, 1), ("ttfb", 1, 1), ("chat", 32, 2)]


@dataclass
class Target:
    name: str
    port: int
    pid: int
    key: str
    lua: Path
    stream_lua: Path
    count: Callable[[], int] | None = None  # records stored so far
    ingest: Callable[[], float] | None = None  # CPU seconds of whatever inserts the records
    ingest_where: str = ""
    in_process: bool = False  # the ingestion is a thread of the gateway process (embedded)
    kick: Callable[[], None] | None = None  # ask for ingestion (what celery beat does every 10 s)
    writer_tid: int | None = None
    runs: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def thread_named(pid: int, name: str) -> int | None:
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                return int(task.name)
        except OSError:  # the thread ended meanwhile
            continue
    return None


def settle(target: Target, expected: int, timeout: float = 90.0) -> int:
    """Wait until at least `expected` records are stored and the count has stopped moving; return the count.
    A production-shape stream whose last entries arrived after the worker's last drain is kicked once stalled,
    as celery beat would (no beat runs here)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        now, stored = time.monotonic(), target.count()
        if stored != last:
            last, since = stored, now
        if stored >= expected and now - since >= 0.6:
            return stored
        if stored < expected and target.kick and now - since > 3.0:
            target.kick()
            since = now
        if now > deadline:
            print(f"warning: {target.name}: {stored} records stored, expected {expected}", file=sys.stderr)
            return stored
        time.sleep(0.1)


def measure(target: Target, scenario: str, conns: int, threads: int, duration: float, pin: list[str]) -> dict:
    rows = target.count() if target.count else 0
    ingest = target.ingest() if target.ingest else 0.0
    writer = cpu_seconds(target.pid, target.writer_tid) if target.writer_tid else 0.0
    cpu = cpu_seconds(target.pid)
    if scenario == "ttfb":
        result = arun(ttfb(target.port, target.key))
        sent = result["requests"] + TTFB_WARMUP
    else:
        result = run_wrk(target.url, target.lua, conns, threads, duration, pin)
        sent = result["requests"]
    # Wait for the records to land before the next target runs: measured here, and not competing with it.
    stored = settle(target, rows + sent) - rows if target.count else 0
    cpu = cpu_seconds(target.pid) - cpu
    writer = cpu_seconds(target.pid, target.writer_tid) - writer if target.writer_tid else 0.0
    requests = max(result["requests"], 1)
    result["process_cpu_ms"] = cpu * 1000 / requests
    result["writer_cpu_ms"] = writer * 1000 / requests  # the record-writer thread's share (gateways only)
    # The gateway's own cost: without an in-process ingestion (embedded) when it has one.
    result["cpu_ms"] = (cpu - writer if target.in_process else cpu) * 1000 / requests
    if target.ingest:
        result["records"] = stored
        result["ingest_ms"] = (target.ingest() - ingest) * 1000 / stored if stored else None
    return {"scenario": scenario, "concurrency": conns, **result}


def fresh_database(server: str, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        if not drop_only:
            conn.execute(f"CREATE DATABASE {DATABASE}")


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(targets: list[Target], rounds: int) -> dict[str, dict]:
    """Per target, the median over rounds; the added latency is taken against the direct run of the same round."""
    direct = targets[0]
    pick = lambda t, rnd, scen, conc: next(
        r for r in t.runs if r["round"] == rnd and r["scenario"] == scen and r["concurrency"] == conc
    )
    out = {}
    for t in targets:
        s: dict = {}
        for scen, conc, key in (("chat", 1, "chat"), ("ttfb", 1, "ttfb")):
            own = [pick(t, n, scen, conc) for n in range(rounds)]
            base = [pick(direct, n, scen, conc) for n in range(rounds)]
            for p in ("p50", "p99"):
                s[f"{key}_{p}"] = med([r[p] for r in own])
                s[f"{key}_added_{p}"] = med([r[p] - b[p] for r, b in zip(own, base, strict=True)])
        c32 = [pick(t, n, "chat", 32) for n in range(rounds)]
        for k in ("rps", "cpu_ms", "process_cpu_ms", "writer_cpu_ms", "ingest_ms"):
            s[k] = med([r.get(k) for r in c32])
        s["records"] = sum(r.get("records", 0) for r in c32)
        s["errors"] = sum(r["errors"] for r in t.runs)
        out[t.name] = s
    return out


def fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def report(targets: list[Target], summary: dict[str, dict], info: dict, args, pinned: bool) -> list[dict]:
    pins = (
        f"gateways and floor on CPU {args.gateway_cpu}; fake provider, wrk and the TTFB client on CPU "
        f"{args.client_cpu}; Celery worker on CPU {args.worker_cpu}"
        if pinned
        else "not pinned"
    )
    print(
        f"\nMachine: {info['cpu']}, {info['cores']} cores; Python {info['python']}; uvicorn; {pins}; "
        f"{args.rounds} rounds interleaved, wrk {args.duration:g} s per run; medians over rounds\n"
    )
    print(
        "| target | chat c1 p50 / p99 ms | added chat c1 p50 / p99 ms | stream TTFB p50 / p99 ms "
        "| added TTFB p50 / p99 ms | chat c32 req/s | CPU ms/req at c32 | ingest CPU ms/record |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in targets:
        s = summary[t.name]
        added = {
            k: "–" if t is targets[0] else f"{fmt(s[k + '_added_p50'])} / {fmt(s[k + '_added_p99'])}"
            for k in ("chat", "ttfb")
        }
        ingest = f"{fmt(s['ingest_ms'], 3)} ({t.ingest_where})" if t.ingest else "–"
        print(
            f"| {t.name} | {fmt(s['chat_p50'])} / {fmt(s['chat_p99'])} | {added['chat']} "
            f"| {fmt(s['ttfb_p50'])} / {fmt(s['ttfb_p99'])} | {added['ttfb']} | {fmt(s['rps'], 0)} "
            f"| {fmt(s['cpu_ms'], 3)} | {ingest} |"
        )
    emb, prod = summary["Ingate embedded"], summary["Ingate production"]
    print(
        "\nCPU ms/req: the process relaying (for the direct row, the fake provider itself); for Ingate embedded "
        f"without its record-writer thread, which is the ingestion there (whole process: {fmt(emb['process_cpu_ms'], 3)}"
        f"). The production gateway's own record-writer thread (slim + stream to Redis) is counted in its "
        f"CPU/req: {fmt(prod['writer_cpu_ms'], 3)} ms of it. Records ingested at c32: embedded {emb['records']:,}, "
        f"production {prod['records']:,}."
    )
    for t in targets:
        if summary[t.name]["errors"]:
            print(f"warning: {t.name}: {summary[t.name]['errors']} socket errors or non-2xx answers")
    floor = summary["floor relay"]
    same = pinned and args.worker_cpu == args.gateway_cpu
    where = "worker on the gateway's core" if same else "worker on another core" if pinned else "not pinned"
    ratio = lambda a, b: None if a is None or b is None or b <= 0 else a / b
    checks = [
        ("production chat c1 added p50 ≤ 2× floor's", ratio(prod["chat_added_p50"], floor["chat_added_p50"]), 2, False),
        ("production TTFB c1 added p50 ≤ 2× floor's", ratio(prod["ttfb_added_p50"], floor["ttfb_added_p50"]), 2, False),
        (f"production chat c32 req/s ≥ 1/3 of floor's ({where})", ratio(prod["rps"], floor["rps"]), 1 / 3, True),
        (
            "production worker CPU/record ≤ 1/4 of gateway CPU/req",
            ratio(prod["ingest_ms"], prod["cpu_ms"]),
            0.25,
            False,
        ),
        ("embedded writer CPU/record ≤ 1/4 of gateway CPU/req", ratio(emb["ingest_ms"], emb["cpu_ms"]), 0.25, False),
        ("embedded chat c32 req/s within 1.5× of production's", ratio(prod["rps"], emb["rps"]), 1.5, False),
        (
            "embedded chat c1 added p50 within 1.5× of production's",
            ratio(emb["chat_added_p50"], prod["chat_added_p50"]),
            1.5,
            False,
        ),
    ]
    results = []
    print("\n| target (ratio in this run) | ratio | limit | |\n|---|---:|---:|---|")
    for name, value, limit, at_least in checks:
        ok = value is not None and (value >= limit if at_least else value <= limit)
        results.append({"target": name, "ratio": value, "limit": limit, "pass": ok})
        shown = "n/a (base ≤ 0)" if value is None else f"{value:.2f}×"
        print(f"| {name} | {shown} | {'≥' if at_least else '≤'} {limit:.2f}× | {'PASS' if ok else 'MISS'} |")
    sys.stdout.flush()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    ap.add_argument("--gateway-cpu", type=int, default=0, help="CPU for the gateways and the floor (default 0)")
    ap.add_argument("--client-cpu", type=int, default=1, help="CPU for the fake provider and clients (default 1)")
    ap.add_argument("--worker-cpu", type=int, default=1, help="CPU for the Celery worker (default 1)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server for a throw-away db")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="Redis db to use and flush (default 9)")
    ap.add_argument("--json", metavar="FILE", help="also write every run and the summary as JSON")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found on PATH (Debian/Ubuntu: apt-get install wrk)")
    pinned = not args.no_pin and bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2
    cpu = lambda n: ["taskset", "-c", str(n)] if pinned else []
    pin_gw, pin_client, pin_worker = cpu(args.gateway_cpu), cpu(args.client_cpu), cpu(args.worker_cpu)
    if pinned:
        os.sched_setaffinity(0, {args.client_cpu})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    tmp = Path(tempfile.mkdtemp(prefix="ingate-sidebyside-"))
    fake_port, floor_port, emb_port, prod_port = (free_port() for _ in range(4))
    database_url = f"{args.postgres}/{DATABASE}"
    own = ("DATABASE_URL", "REDIS_URL", "INGATE_RECORD_INGEST", "INGATE_DATA_DIR")
    common = {k: v for k, v in os.environ.items() if k not in own} | {
        "INGATE_UPSTREAM_OPENAI": f"http://127.0.0.1:{fake_port}",
        "OPENAI_API_KEY": "sk-bench-upstream",
        "PYTHONUNBUFFERED": "1",
    }
    emb_env = common | {"INGATE_DATA_DIR": str(tmp / "embedded")}
    prod_env = common | {"INGATE_DATA_DIR": str(tmp / "production"), "DATABASE_URL": database_url}
    prod_env["REDIS_URL"] = args.redis
    closers: list[Callable[[], None]] = []
    try:
        fresh_database(args.postgres)
        flush_redis(args.redis)
        for env in (emb_env, prod_env):
            Path(env["INGATE_DATA_DIR"]).mkdir()
        fake = spawn(
            [*pin_client, PY, "-m", "tests.fake_provider", "--port", str(fake_port)], tmp / "fake.log", env=common
        )
        floor = spawn(
            [*pin_gw, PY, "bench/floor.py", "--port", str(floor_port), "--upstream", f"127.0.0.1:{fake_port}"],
            tmp / "floor.log",
            env=common,
        )
        keys = {}
        for name, env in (("embedded", emb_env), ("production", prod_env)):
            print(f"preparing Ingate {name} …", file=sys.stderr, flush=True)
            manage(["migrate", "--no-input"], env)
            out = manage(["create_gateway_key", "--org", "bench", "--app", "bench"], env)
            keys[name] = out.strip().splitlines()[-1]
        # bench.threadnames runs uvicorn with OS thread names set, so the record writer can be found in /proc.
        serve = lambda port: [PY, "-m", "bench.threadnames", *uvicorn_cmd(port)[2:]]
        emb = spawn([*pin_gw, *serve(emb_port)], tmp / "embedded.log", env=emb_env)
        prod = spawn([*pin_gw, *serve(prod_port)], tmp / "production.log", env=prod_env)
        worker = spawn(
            [*pin_worker, PY, "-m", "celery", "-A", "ingate", "worker", "--pool=solo", "-l", "warning"],
            tmp / "worker.log",
            env=prod_env,
        )
        wait_ready(fake, fake_port, tmp / "fake.log", "fake provider")
        wait_ready(floor, floor_port, tmp / "floor.log", "floor relay")
        wait_ready(emb, emb_port, tmp / "embedded.log", "gateway")
        wait_ready(prod, prod_port, tmp / "production.log", "gateway")

        import psycopg
        from celery import Celery

        lite = sqlite3.connect(f"file:{tmp / 'embedded' / 'ingate.sqlite3'}?mode=ro", uri=True, timeout=10)
        pg = psycopg.connect(database_url, autocommit=True)
        broker = Celery(broker=args.redis)
        closers += [lite.close, pg.close, broker.close]
        lua = lambda name, key, stream: write_lua(tmp, f"{name}-{'stream' if stream else 'chat'}", key, stream)
        targets = []
        for name, port, pid, key in (
            ("direct (fake provider)", fake_port, fake.pid, keys["embedded"]),
            ("floor relay", floor_port, floor.pid, keys["embedded"]),
            ("Ingate embedded", emb_port, emb.pid, keys["embedded"]),
            ("Ingate production", prod_port, prod.pid, keys["production"]),
        ):
            slug = name.split()[-1]
            targets.append(Target(name, port, pid, key, lua(slug, key, False), lua(slug, key, True)))
        _, _, embedded, production = targets
        embedded.count = lambda: lite.execute(f"SELECT count(*) FROM {RECORDS}").fetchone()[0]
        embedded.in_process, embedded.ingest_where = True, "writer thread"
        production.count = lambda: pg.execute(f"SELECT count(*) FROM {RECORDS}").fetchone()[0]
        production.ingest = lambda: cpu_seconds(worker.pid)
        production.ingest_where = f"worker, CPU {args.worker_cpu}" if pinned else "worker"
        production.kick = lambda: broker.send_task(INGEST_TASK, ignore_result=True)

        print("warming up …", file=sys.stderr, flush=True)
        for t in targets:  # key cache, upstream pools, lazy imports, the worker's first task
            sent = sum(run_wrk(t.url, lua_, 32, 2, 1, pin_client)["requests"] for lua_ in (t.lua, t.stream_lua))
            if t.count:
                settle(t, sent)
        for t in (embedded, production):
            t.writer_tid = thread_named(t.pid, WRITER)
            if t.writer_tid is None:
                sys.exit(f"{t.name}: no thread named {WRITER!r} in /proc/{t.pid}/task")
        embedded.ingest = lambda: cpu_seconds(embedded.pid, embedded.writer_tid)

        for rnd in range(args.rounds):
            for scenario, conns, threads in SCENARIOS:
                print(f"round {rnd + 1}/{args.rounds}: {scenario} c{conns} …", file=sys.stderr, flush=True)
                for t in targets:
                    run = measure(t, scenario, conns, threads, args.duration, pin_client)
                    t.runs.append({"round": rnd, **run})
        info = machine_info("uvicorn", pinned)
        summary = summarise(targets, args.rounds)
        checks = report(targets, summary, info, args, pinned)
        if args.json:
            runs = {t.name: t.runs for t in targets}
            data = {"machine": info, "args": vars(args), "summary": summary, "runs": runs, "targets": checks}
            Path(args.json).write_text(json.dumps(data, indent=2))
    finally:
        cleanup()
        for close in closers:
            close()
        fresh_database(args.postgres, drop_only=True)
        flush_redis(args.redis)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # children are already gone (finally in main); skip the traceback
        sys.exit(130)
