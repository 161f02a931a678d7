"""Limits benchmark: what one hard budget and one rate limit add to a request at concurrency 1, embedded (in-process
counters) and with Redis (shared counters, one Lua script in and one out), and how many Redis commands a request
costs. Requests of a key without limits and of a key with them (same org) are sent interleaved in rounds.
Run from the repo root: `.venv/bin/python bench/limits.py [--rounds 20] [--requests 250] [--no-pin] [--json out.json]`."""

from __future__ import annotations

import argparse
import collections
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy import (  # noqa: E402
    PY,
    arun,
    cleanup,
    cpu_seconds,
    free_port,
    machine_info,
    manage,
    ms,
    spawn,
    uvicorn_cmd,
    wait_ready,
)
from bench.routing import block, pct, stop  # noqa: E402

PATH = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "hello there"}]}
TARGET = 0.1  # ms: the bound on what one budget and one rate limit add to the p50 at concurrency 1
DATABASE = "ingate_bench_limits"
KINDS = ("plain", "limited")
RPM, CONCURRENT, BUDGET_USD = 10_000_000, 1_000, "1000"  # far out of reach: nothing is refused
LIMITER_COMMANDS = {"evalsha", "eval"}  # the limiter's scripts: reserve on the way in, settle on the way out

# Key `limited` (app `limited` of org `bench`) gets one hard monthly budget and one rate limit (requests per minute
# and concurrency), through the services the API and the dashboard use; key `plain` (app `plain`) gets nothing.
SETUP = """
from decimal import Decimal
from tenancy.audit import Actor
from tenancy.limits import budget_create, rate_limit_create
from tenancy.models import APIKey

actor = Actor.system("bench")
key = APIKey.objects.select_related("org").get(org__slug="bench", app__slug="limited")
budget_create(actor=actor, org=key.org, scope="key", key=key, amount_usd=Decimal({budget!r}), period="month")
rate_limit_create(actor=actor, org=key.org, scope="key", key=key, requests_per_minute={rpm}, concurrent={conc})
print("limits made")
"""


def raw_request(port: int, key: str) -> bytes:
    data = json.dumps(BODY).encode()
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def check(kind: str, port: int, key: str) -> float | None:
    """One request with a plain HTTP client: 200, and the limits' headers on the limited key's answer only (a key
    the limits missed would otherwise measure nothing). Returns the budget left (USD) the answer reports."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", PATH, json.dumps(BODY), {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    conn.close()
    rpm, left = resp.getheader("x-ratelimit-limit-requests"), resp.getheader("x-ingate-budget-remaining")
    want = (str(RPM), True) if kind == "limited" else (None, False)
    if resp.status != 200 or (rpm, left is not None) != want:
        sys.exit(
            f"{kind}: expected 200 with x-ratelimit-limit-requests {want[0]} and the budget header "
            f"{'present' if want[1] else 'absent'}; got {resp.status}, {rpm}, {left}: {text[:500]}"
        )
    return None if left is None else float(left)


async def rounds(port: int, keys: dict, n_rounds: int, n: int, warmup: int, pid: int) -> dict:
    """Warm-up, then `n_rounds` rounds of `n` requests per key, the order reversed every other round so that drift
    over a round hits both alike. Per key: all samples, each round's p50, the gateway's CPU (process, event loop)."""
    reqs = {kind: raw_request(port, keys[kind]) for kind in KINDS}
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    buf = bytearray()
    out = {kind: {"samples": [], "round_p50": [], "round_p99": [], "cpu_s": 0.0, "loop_cpu_s": 0.0} for kind in KINDS}
    try:
        for kind in KINDS:
            await block(sock, buf, reqs[kind], warmup)
        for r in range(n_rounds):
            print(f"  round {r + 1}/{n_rounds}", file=sys.stderr, flush=True)
            for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                cpu, loop_cpu = cpu_seconds(pid), cpu_seconds(pid, pid)
                samples = await block(sock, buf, reqs[kind], n)
                out[kind]["cpu_s"] += cpu_seconds(pid) - cpu
                out[kind]["loop_cpu_s"] += cpu_seconds(pid, pid) - loop_cpu
                out[kind]["samples"] += samples
                ordered = sorted(samples)
                out[kind]["round_p50"].append(pct(ordered, 50))
                out[kind]["round_p99"].append(pct(ordered, 99))
    finally:
        sock.close()
    return out


def summary(data: dict) -> dict:
    ordered = sorted(data["samples"])
    n = max(len(ordered), 1)
    return {
        "p50": pct(ordered, 50),
        "p99": pct(ordered, 99),
        "requests": len(ordered),
        "round_p50": data["round_p50"],
        "round_p99": data["round_p99"],
        "cpu_ms": data["cpu_s"] * 1000 / n,
        "loop_cpu_ms": data["loop_cpu_s"] * 1000 / n,
    }


# --- counting Redis commands ------------------------------------------------------------------------------------

_MONITOR_LINE = re.compile(r'^(\d+\.\d+) \[(\d+) ([^\]]+)\] "([^"]+)"')


def redis_ports(pid: int, redis_port: int) -> set[int]:
    """The local ports of `pid`'s TCP connections to Redis (from /proc: its socket inodes, matched in net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == redis_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def commandstats(url: str) -> dict[str, int]:
    """INFO commandstats (server-wide: every db and every client of this Redis): calls per command."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in client.info("commandstats").items()}
    finally:
        client.close()


async def _sequential(port: int, key: str, n: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    try:
        await block(sock, bytearray(), raw_request(port, key), n)
    finally:
        sock.close()


class Monitor:
    """MONITOR on a connection of its own, read by a thread: every command Redis runs, as MONITOR's lines."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=5)
        if parsed.password:
            user = urllib.parse.unquote(parsed.username or "default")
            self.sock.sendall(f"AUTH {user} {urllib.parse.unquote(parsed.password)}\r\n".encode())
        self.sock.sendall(b"MONITOR\r\n")
        self.file = self.sock.makefile("rb")
        if parsed.password and not self.file.readline().startswith(b"+OK"):
            raise RuntimeError("Redis refused AUTH for MONITOR")
        if not self.file.readline().startswith(b"+OK"):
            raise RuntimeError("Redis refused MONITOR")
        self.sock.settimeout(None)
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, name="monitor", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                line = self.file.readline()
            except OSError:  # stop() shut the socket down
                return
            if not line:
                return
            self.lines.append(line[1:].decode("utf-8", "replace").rstrip("\r\n"))

    def stop(self) -> list[str]:
        time.sleep(0.2)  # the last lines in flight
        self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=5)
        self.sock.close()
        return self.lines


def _order(item: tuple[str, str]) -> tuple[int, str]:
    who, command = item
    return (["gateway", "Lua script", "worker"].index(who) if who != "other connection" else 3, command)


def count_commands(port: int, keys: dict, n: int, url: str, gateway_pid: int, worker_pid: int) -> dict:
    """With MONITOR on (after the latency rounds: it slows Redis), `n` plain requests, a pause, `n` limited ones, a
    pause; then every command Redis ran on our db in each window, by who sent it: the gateway, the Celery worker,
    a Lua script (the commands inside the limiter's scripts: no round trips) or a connection closed by the end
    (the worker's ingestion opens one per run; or another client of this db). Also INFO
    commandstats' EVAL/EVALSHA calls over each window (server-wide: a cross-check)."""
    db = int(urllib.parse.urlsplit(url).path.strip("/") or 0)
    redis_port = urllib.parse.urlsplit(url).port or 6379
    monitor = Monitor(url)
    windows, stats = {}, {}
    try:
        for kind in KINDS:
            before = commandstats(url)
            start = time.time()
            arun(_sequential(port, keys[kind], n))
            time.sleep(2.0)  # background settles land, the writer streams the last records, the worker reads them
            windows[kind] = (start, time.time())
            after = commandstats(url)
            stats[kind] = sum(after.get(c, 0) - before.get(c, 0) for c in LIMITER_COMMANDS)
        gateway_ports, worker_ports = redis_ports(gateway_pid, redis_port), redis_ports(worker_pid, redis_port)
    finally:
        lines = monitor.stop()
    counts = {kind: collections.Counter() for kind in KINDS}
    for line in lines:
        m = _MONITOR_LINE.match(line)
        if m is None or int(m.group(2)) != db:
            continue
        at, client, command = float(m.group(1)), m.group(3), m.group(4).lower()
        if client == "lua":
            who = "Lua script"
        else:
            port_ = int(client.rsplit(":", 1)[1]) if ":" in client else -1
            who = "gateway" if port_ in gateway_ports else "worker" if port_ in worker_ports else "other connection"
        for kind, (start, end) in windows.items():
            if start <= at < end:
                counts[kind][(who, command)] += 1
    limiter = {
        kind: sum(v for (who, c), v in counts[kind].items() if who == "gateway" and c in LIMITER_COMMANDS) / n
        for kind in KINDS
    }
    return {
        "requests": n,
        "limiter_calls_per_request": limiter,
        "commandstats_eval_per_request": {kind: stats[kind] / n for kind in KINDS},
        "per_request": {
            f"{who} {command}": {kind: counts[kind][(who, command)] / n for kind in KINDS}
            for who, command in sorted(set(counts["plain"]) | set(counts["limited"]), key=_order)
        },
    }


# --- one mode ---------------------------------------------------------------------------------------------------


def fresh_database(server: str, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        if not drop_only:
            conn.execute(f"CREATE DATABASE {DATABASE}")


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def mode_run(name: str, env: dict, tmp: Path, pin_gw: list[str], pin_rest: list[str], args) -> dict:
    """Set up a database with the two keys and the limits, start a gateway (and with Redis a Celery worker, as
    production runs), check both keys answer as meant, measure, count Redis commands, stop."""
    redis_url = env.get("REDIS_URL", "")
    manage(["migrate", "--no-input"], env)
    keys = {
        kind: manage(["create_gateway_key", "--org", "bench", "--app", kind], env).strip().splitlines()[-1]
        for kind in KINDS
    }
    manage(["shell", "-c", SETUP.format(budget=BUDGET_USD, rpm=RPM, conc=CONCURRENT)], env)
    port = free_port()
    log = tmp / f"gateway-{name}.log"
    gateway = spawn([*pin_gw, *uvicorn_cmd(port)], log, env=env)
    worker = None
    if redis_url:
        worker = spawn(
            [*pin_rest, PY, "-m", "celery", "-A", "ingate", "worker", "--pool=solo", "-l", "warning"],
            tmp / f"worker-{name}.log",
            env=env,
        )
    try:
        wait_ready(gateway, port, log, "gateway")
        check("plain", port, keys["plain"])
        left_before = check("limited", port, keys["limited"])
        print(f"measuring ({name}): plain and limited key, interleaved …", file=sys.stderr, flush=True)
        raw = arun(rounds(port, keys, args.rounds, args.requests, args.warmup, gateway.pid))
        check("plain", port, keys["plain"])
        time.sleep(0.5)  # the last settles (in the background) land
        left_after = check("limited", port, keys["limited"])
        counted = None
        if redis_url and worker is not None:
            print(f"counting Redis commands ({name}): {args.count} requests per key …", file=sys.stderr, flush=True)
            counted = count_commands(port, keys, args.count, redis_url, gateway.pid, worker.pid)
    finally:
        stop(gateway)
        if worker is not None:
            stop(worker)
    out = {kind: summary(raw[kind]) for kind in KINDS}
    plain, limited = out["plain"], out["limited"]
    added = [b - a for a, b in zip(plain["round_p50"], limited["round_p50"], strict=True)]
    return {
        "mode": name,
        "plain": plain,
        "limited": limited,
        "added_p50": limited["p50"] - plain["p50"],
        "added_p99": limited["p99"] - plain["p99"],
        # Per round, the limited block's p50 minus the plain block's next to it; their median shrugs off a burst of
        # machine noise that hit one round.
        "added_round_p50": added,
        "added_p50_median": statistics.median(added),
        "added_cpu_ms": limited["cpu_ms"] - plain["cpu_ms"],
        "added_loop_cpu_ms": limited["loop_cpu_ms"] - plain["loop_cpu_ms"],
        "budget_left": [left_before, left_after],
        "redis": counted,
    }


# --- report -----------------------------------------------------------------------------------------------------


def report(runs: list[dict], info: dict, args) -> list[dict]:
    print(
        f"\nMachine: {info['cpu']}, {info['cores']} cores; Python {info['python']}; server {info['server']}; "
        f"pinning {'on' if info['pinned'] else 'off'}; {args.rounds} rounds × {args.requests} requests per key, "
        f"concurrency 1, non-streaming chat (max_tokens 100), full response time. Limited key: one hard monthly "
        f"budget (${BUDGET_USD}) and one rate limit ({RPM:,} requests/min, {CONCURRENT:,} concurrent); plain key: "
        "none (same org)."
    )
    results = []
    for run in runs:
        p, g, per_round, counted = run["plain"], run["limited"], run["added_round_p50"], run["redis"]
        print(f"\n### {run['mode']}\n")
        print(
            "| scenario | plain p50 / p99 ms | limited p50 / p99 ms | added p50 ms: pooled / median per round "
            "(min … max) | added CPU ms/req: event loop / process | limiter Redis calls per request |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        calls = "– (no Redis)"
        if counted:
            lim = counted["limiter_calls_per_request"]
            calls = f"{lim['limited']:.2f} (plain key: {lim['plain']:.2f})"
        print(
            f"| one budget + one rate limit, chat c1 | {ms(p['p50'])} / {ms(p['p99'])} | {ms(g['p50'])} / "
            f"{ms(g['p99'])} | {run['added_p50']:+.3f} / {run['added_p50_median']:+.3f} ({min(per_round):+.2f} … "
            f"{max(per_round):+.2f}) | {run['added_loop_cpu_ms']:+.3f} / {run['added_cpu_ms']:+.3f} | {calls} |"
        )
        before, after = run["budget_left"]
        print(f"\nBudget left (x-ingate-budget-remaining): ${before:.6f} before the rounds, ${after:.6f} after.")
        if counted:
            print(
                f"\nRedis commands per request on db {args.redis.rsplit('/', 1)[1]} by sender, over "
                f"{counted['requests']:,} sequential requests per key with MONITOR on (after the rounds; each window "
                "includes 2 s after the last request, so the background settles and the record ingestion land in it):\n"
            )
            print("| sender and command | plain key | limited key |")
            print("|---|---:|---:|")
            for name, per in counted["per_request"].items():
                print(f"| {name} | {per['plain']:.3f} | {per['limited']:.3f} |")
            cs = counted["commandstats_eval_per_request"]
            print(
                f"\nCross-check, INFO commandstats EVAL + EVALSHA per request (server-wide, all dbs): plain "
                f"{cs['plain']:.3f}, limited {cs['limited']:.3f}."
            )
        result = {
            "mode": run["mode"],
            "target": f"one budget + one rate limit added p50 ≤ {TARGET} ms (median over rounds)",
            "value": run["added_p50_median"],
            "pass": run["added_p50_median"] <= TARGET,
        }
        print(
            f"\nTarget ({run['mode']}): {result['target']}: {result['value']:.3f} ms "
            f"{'PASS' if result['pass'] else 'MISS'} (all samples pooled: {run['added_p50']:.3f} ms)"
        )
        if counted:
            lim = counted["limiter_calls_per_request"]
            ok = lim["limited"] <= 2.0 + 1e-9 and lim["plain"] == 0
            result["redis_calls"] = {"value": lim["limited"], "pass": ok}
            print(
                f"Target ({run['mode']}): at most one limiter round trip in and one out (≤ 2 EVAL/EVALSHA per "
                f"limited request, none for the plain key): {lim['limited']:.3f} {'PASS' if ok else 'MISS'}"
            )
        results.append(result)
    print(flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    ap.add_argument("--requests", type=int, default=250, help="requests per key per round (default 250)")
    ap.add_argument("--warmup", type=int, default=200, help="warm-up requests per key (default 200)")
    ap.add_argument("--count", type=int, default=1000, help="requests per key for counting Redis commands")
    ap.add_argument("--modes", default="embedded,redis", help="which runs, comma-separated (default both)")
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server for a throw-away db")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/4", help="Redis db to use and flush (default 4)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if args.rounds < 1 or args.requests < 1 or args.warmup < 0 or args.count < 1:
        ap.error("--rounds, --requests and --count must be ≥ 1, --warmup ≥ 0")
    if not modes or set(modes) - {"embedded", "redis"}:
        ap.error("--modes: embedded, redis or both")
    # Gateway alone on CPU 0; the fake provider, the Celery worker and our client share CPU 1.
    pinned = not args.no_pin and bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2
    pin_gw, pin_rest = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if pinned else ([], [])
    if pinned:
        os.sched_setaffinity(0, {1})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    tmp = Path(tempfile.mkdtemp(prefix="ingate-bench-limits-"))
    fake_port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    base |= {
        "INGATE_UPSTREAM_OPENAI": f"http://127.0.0.1:{fake_port}",
        "OPENAI_API_KEY": "sk-bench-upstream",
        "PYTHONUNBUFFERED": "1",
    }
    database_made = False
    try:
        fake = spawn([*pin_rest, PY, "-m", "tests.fake_provider", "--port", str(fake_port)], tmp / "fake.log", env=base)
        wait_ready(fake, fake_port, tmp / "fake.log", "fake provider")
        info = machine_info("uvicorn", pinned)
        runs = []
        for mode in modes:
            data = tmp / mode
            data.mkdir()
            env = {**base, "INGATE_DATA_DIR": str(data)}
            if mode == "embedded":
                name = "embedded (SQLite, no Redis: in-process counters)"
            else:
                name = f"Redis (PostgreSQL, Redis db {args.redis.rsplit('/', 1)[1]}, one Celery worker)"
                env |= {"DATABASE_URL": f"{args.postgres}/{DATABASE}", "REDIS_URL": args.redis}
                fresh_database(args.postgres)
                database_made = True
                flush_redis(args.redis)
            runs.append(mode_run(name, env, tmp, pin_gw, pin_rest, args))
        results = report(runs, info, args)
        if args.json:
            stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            Path(args.json).write_text(
                json.dumps({"machine": info, "date": stamp, "runs": runs, "targets": results}, indent=2)
            )
    finally:
        cleanup()
        if database_made:
            try:
                fresh_database(args.postgres, drop_only=True)
                flush_redis(args.redis)
            except Exception as exc:  # noqa: BLE001  (say so; the rest of the cleanup still runs)
                print(f"warning: could not drop {DATABASE} / flush {args.redis}: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
