"""Response cache benchmark: what a cache hit adds over calling the provider directly, against a miss, at
concurrency 1 (interleaved rounds) and req/s at concurrency 32 (wrk); and the in-process store's memory with 100k
distinct entries against its byte cap (in a separate process, no server).
Run from the repo root: `.venv/bin/python bench/cache.py [--rounds 20] [--requests 200] [--redis] [--json out.json]`.
`--only profile [--hits N]`: where a hit's time goes, in process (the gateway's ASGI app called directly, no HTTP
server or client socket), timed and then under cProfile; with `--redis`, also the store's GET through its client
against a bare RESP GET on one socket (what a leaner client would save)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import hashlib
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.limits import flush_redis  # noqa: E402
from bench.proxy import (  # noqa: E402
    LUA,
    PY,
    arun,
    cleanup,
    cpu_seconds,
    free_port,
    machine_info,
    manage,
    ms,
    read_response,
    run_wrk,
    spawn,
    uvicorn_cmd,
    wait_ready,
)
from bench.routing import pct, stop  # noqa: E402

PATH = "/v1/chat/completions"
QUESTION = "what is 2 + 2?"
# temperature 0: cached without the client asking (the org's setting `cache_positive_temperature` is `when_asked`).
HIT_BODY = {"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": QUESTION}]}
KINDS = ("direct", "miss", "hit")
TARGET = 0.3  # ms: the bound on what a hit adds over the fake provider called directly (p50, concurrency 1)
DATABASE = "ingate_bench_cache"
# The memory target: the store's Python allocations (tracemalloc) stay under the cap; the process's RSS growth under
# the cap plus this share of it (allocator arenas and fragmentation left by evicted entries, which the store cannot
# count).
RSS_SLACK = 0.10

# The org `bench` gets the cache, as an admin turns it on (the service the API and the dashboard use).
SETUP = """
from tenancy.audit import Actor
from tenancy.cache import cache_settings_create
from tenancy.models import Organization

cache_settings_create(actor=Actor.system("bench"), org=Organization.objects.get(slug="bench"), enabled=True)
print("cache enabled")
"""

# wrk, misses: every request a body never sent before (thread id and a per-thread counter in the message).
MISS_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
local threads, n = 0, 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format([==[%(template)s]==], id, n))  -- id: set by setup()
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%.0f %%.0f %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""

_fresh = itertools.count(1)


def miss_body() -> dict:
    """A body the gateway has not seen in this run: a cache miss (the fake provider's answer is the same)."""
    return {**HIT_BODY, "messages": [{"role": "user", "content": f"question {next(_fresh)}: {QUESTION}"}]}


def raw_request(port: int, key: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def check(kind: str, port: int, key: str) -> None:
    """One request with a plain HTTP client: 200 and the X-Ingate-Cache the kind means to measure (HIT for the
    repeated body, MISS for a fresh one and for the repeated body's first request (`fill`), none from the provider
    called directly)."""
    body = miss_body() if kind == "miss" else HIT_BODY
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", PATH, json.dumps(body), {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    conn.close()
    want = {"direct": None, "fill": "MISS", "miss": "MISS", "hit": "HIT"}[kind]
    got = resp.getheader("x-ingate-cache")
    if resp.status != 200 or got != want:
        sys.exit(f"{kind}: expected 200 with X-Ingate-Cache {want}; got {resp.status}, {got}: {text[:500]}")


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


async def block(sock: socket.socket, buf: bytearray, reqs: list[bytes]) -> list[float]:
    """The requests in turn on the keep-alive socket: each one's full response time in ms."""
    loop = asyncio.get_running_loop()
    samples = []
    for req in reqs:
        t0 = time.perf_counter_ns()
        await loop.sock_sendall(sock, req)
        await read_response(loop, sock, buf)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


async def rounds(ports: dict, key: str, n_rounds: int, n: int, warmup: int, pids: dict) -> dict:
    """Warm-up, then `n_rounds` rounds of `n` requests per kind (direct, miss, hit), the order reversed every other
    round so that drift over a round hits each kind alike. A miss block's bodies are built before it is timed.
    Per kind: all samples, each round's p50, the CPU of the process that answered (fake provider or gateway)."""
    hit = {"direct": raw_request(ports["direct"], key, HIT_BODY), "hit": raw_request(ports["hit"], key, HIT_BODY)}

    def reqs(kind: str, count: int) -> list[bytes]:
        if kind == "miss":
            return [raw_request(ports["miss"], key, miss_body()) for _ in range(count)]
        return [hit[kind]] * count

    socks = {"direct": connect(ports["direct"]), "gateway": connect(ports["hit"])}
    bufs = {name: bytearray() for name in socks}
    side = {"direct": "direct", "miss": "gateway", "hit": "gateway"}
    out = {kind: {"samples": [], "round_p50": [], "cpu_s": 0.0} for kind in KINDS}
    try:
        for kind in KINDS:
            await block(socks[side[kind]], bufs[side[kind]], reqs(kind, warmup))
        for r in range(n_rounds):
            print(f"  round {r + 1}/{n_rounds}", file=sys.stderr, flush=True)
            for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                batch = reqs(kind, n)
                cpu = cpu_seconds(pids[kind])
                samples = await block(socks[side[kind]], bufs[side[kind]], batch)
                out[kind]["cpu_s"] += cpu_seconds(pids[kind]) - cpu
                out[kind]["samples"] += samples
                out[kind]["round_p50"].append(pct(sorted(samples), 50))
    finally:
        for sock in socks.values():
            sock.close()
    return out


def summary(data: dict) -> dict:
    ordered = sorted(data["samples"])
    return {
        "p50": pct(ordered, 50),
        "p99": pct(ordered, 99),
        "requests": len(ordered),
        "round_p50": data["round_p50"],
        "cpu_ms": data["cpu_s"] * 1000 / max(len(ordered), 1),
    }


def write_lua(tmp: Path, kind: str, key: str, run: int) -> Path:
    """The wrk script of a kind; for misses, one per wrk run (`run` salts the bodies: wrk's counters restart)."""
    path = tmp / f"{kind}-{run}.lua"
    if kind != "miss":
        path.write_text(LUA % {"body": json.dumps(HIT_BODY), "key": key, "extra": ""})
        return path
    content = f"wrk {run}-%d-%d: {QUESTION}"
    template = json.dumps({**HIT_BODY, "messages": [{"role": "user", "content": content}]})
    path.write_text(MISS_LUA % {"key": key, "template": template.replace("%", "%%").replace("%%d", "%d")})
    return path


def c32(urls: dict, lua, pids: dict, upstream_pid: int, duration: float, pin: list[str]) -> dict:
    """wrk at 32 connections per kind: req/s, p50/p99, CPU per request of the answering process; for the gateway
    also the fake provider's CPU during the run (about none on hits: they never reach it)."""
    out = {}
    for kind in KINDS:
        run_wrk(urls[kind], lua(kind, 1), 32, 2, 1, pin)  # warm-up: connections, and the entries' code paths
        cpu, up = cpu_seconds(pids[kind]), cpu_seconds(upstream_pid)
        res = run_wrk(urls[kind], lua(kind, 2), 32, 2, duration, pin)
        res["cpu_ms"] = (cpu_seconds(pids[kind]) - cpu) * 1000 / max(res["requests"], 1)
        res["upstream_cpu_ms"] = (cpu_seconds(upstream_pid) - up) * 1000 / max(res["requests"], 1)
        out[kind] = res
    return out


# --- memory of the in-process store (run in a child process of its own) -------------------------------------------

WORDS = (
    "the of and to in is that for it as with was on be by this are or from at which but have an not they you can "
    "all there one has more their were if will also would about what so when into other than its some these may "
    "time only new could two first any most very after where like such how then over between because each those "
    "model answer question value function example return data result number case first second step following "
    "use used using make made need needs given first simple important different same large small general set "
    "system process code list type order point form part number way work call called note however therefore"
).split()


TEXT_WORDS = 140  # ~900 characters of answer: ~1.5 KB entries


def chat_entry(i: int, rng: random.Random) -> bytes:
    """A realistic entry as the stage stores it: a metadata line, then an OpenAI chat completion JSON (~1.5 KB in
    all) whose answer is ~900 characters of English-like text, distinct per entry."""
    text = " ".join(rng.choices(WORDS, k=TEXT_WORDS)).capitalize() + f". ({i})"
    ident = f"req_{i:08d}{rng.getrandbits(48):012x}"
    meta = (
        f'{{"at":{time.time()},"source":"{ident}","usage":{{"prompt_tokens":24,"completion_tokens":230,'
        f'"total_tokens":254}},"model":"gpt-4o-mini-2024-07-18","provider":"openai"}}'
    )
    body = (  # an OpenAI chat completion as the API sends it, compact (orjson's form, as the stage stores it)
        f'{{"id":"chatcmpl-{rng.getrandbits(120):030x}","object":"chat.completion","created":{1767225600 + i},'
        f'"model":"gpt-4o-mini-2024-07-18","choices":[{{"index":0,"message":{{"role":"assistant","content":'
        f'{json.dumps(text)},"refusal":null,"annotations":[]}},"logprobs":null,"finish_reason":"stop"}}],'
        f'"usage":{{"prompt_tokens":24,"completion_tokens":230,"total_tokens":254,"prompt_tokens_details":'
        f'{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,'
        f'"audio_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_560af6e559"}}'
    )
    return f"{meta}\n{body}".encode()


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _run(coro):
    """Drive a coroutine that never suspends (MemoryStore's get/put) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the store suspended")


def memory_child(entries: int, traced: bool) -> dict:
    """Fill a MemoryStore with its default cap with `entries` distinct entries; its accounting, and the process's
    growth: RSS (`traced` False: nothing else perturbs it; also the time per put and per get) or tracemalloc."""
    import tracemalloc

    from proxy.response_cache.store import DEFAULT_MEMORY_BYTES, ENTRY_OVERHEAD, MemoryStore, encode, redis_key

    rng = random.Random(16)
    store = MemoryStore()
    ttl = 24 * 3600
    raw_total = stored_total = 0
    sample = chat_entry(0, rng)
    _run(MemoryStore(1 << 20).put(redis_key(1, "", "0" * 64), sample, ttl))  # imports and first-use allocations
    gc.collect()
    rss0 = _rss_bytes()
    if traced:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    put_s = 0.0
    for i in range(entries):
        value = chat_entry(i, rng)
        key = redis_key(1, "", hashlib.sha256(b"entry %d" % i).hexdigest())
        raw_total += len(value)
        t = time.perf_counter()
        if not _run(store.put(key, value, ttl)):
            raise RuntimeError(f"entry {i} was refused")
        put_s += time.perf_counter() - t
    fill_s = time.perf_counter() - t0
    gc.collect()
    out = {
        "entries_put": entries,
        "entries_kept": len(store),
        "cap": DEFAULT_MEMORY_BYTES,
        "accounted": store.size,
        "entry_overhead_assumed": ENTRY_OVERHEAD,
        "raw_bytes_avg": raw_total / entries,
        "fill_s": fill_s,
    }
    kept = store._entries  # the store's own map: what it holds, to size it
    stored_total = sum(len(k) + len(blob) for k, (_, blob) in kept.items())
    out["stored_bytes_avg"] = stored_total / max(len(kept), 1)
    out["compression"] = sum(len(encode(chat_entry(i, random.Random(i)))) for i in range(200)) / sum(
        len(chat_entry(i, random.Random(i))) for i in range(200)
    )
    if traced:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["traced_growth"] = current - base
        out["traced_peak"] = peak - base
        # What one kept entry really costs beyond its key's and value's bytes (the store assumes ENTRY_OVERHEAD).
        out["overhead_measured"] = (current - base - stored_total) / max(len(kept), 1)
    else:
        out["rss_growth"] = _rss_bytes() - rss0
        out["put_us"] = put_s * 1e6 / entries
        keys = list(kept)
        picks = [keys[rng.randrange(len(keys))] for _ in range(20_000)]
        t = time.perf_counter()
        for key in picks:
            if _run(store.get(key)) is None:
                raise RuntimeError("a kept entry was not found")
        out["get_us"] = (time.perf_counter() - t) * 1e6 / len(picks)
        values = [chat_entry(i, rng) for i in range(2000)]
        t = time.perf_counter()
        for value in values:
            zlib.compress(value, 1)
        out["compress_us"] = (time.perf_counter() - t) * 1e6 / len(values)
    return out


def memory_run(entries: int, pin: list[str]) -> dict:
    """Two child processes: one for RSS and timings, one under tracemalloc (which itself grows the RSS)."""
    out = {}
    for traced in (False, True):
        what = "tracemalloc" if traced else "RSS"
        print(f"memory: {entries:,} entries into a MemoryStore ({what}) …", file=sys.stderr, flush=True)
        cmd = [*pin, PY, str(Path(__file__).resolve()), "--memory-child", what, "--entries", str(entries)]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if res.returncode:
            sys.exit(f"memory child ({what}) failed:\n{res.stdout}{res.stderr}")
        out.update(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


# --- gateway ------------------------------------------------------------------------------------------------------


def fresh_database(server: str, name: str, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def gateway_run(env: dict, tmp: Path, fake, fake_port: int, pin_gw: list[str], pin_rest: list[str], args) -> dict:
    manage(["migrate", "--no-input"], env)
    key = manage(["create_gateway_key", "--org", "bench", "--app", "bench"], env).strip().splitlines()[-1]
    manage(["shell", "-c", SETUP], env)
    port = free_port()
    log = tmp / "gateway.log"
    gateway = spawn([*pin_gw, *uvicorn_cmd(port)], log, env=env)
    worker = None
    if env.get("REDIS_URL"):
        worker = spawn(
            [*pin_rest, PY, "-m", "celery", "-A", "ingate", "worker", "--pool=solo", "-l", "warning"],
            tmp / "worker.log",
            env=env,
        )
    try:
        wait_ready(gateway, port, log, "gateway")
        check("direct", fake_port, key)
        check("fill", port, key)  # the entry the hits read
        time.sleep(0.2)  # it is stored when the request is over, in the background
        check("hit", port, key)
        check("miss", port, key)
        ports = {"direct": fake_port, "miss": port, "hit": port}
        pids = {"direct": fake.pid, "miss": gateway.pid, "hit": gateway.pid}
        print("measuring at concurrency 1: direct, miss, hit, interleaved …", file=sys.stderr, flush=True)
        raw = arun(rounds(ports, key, args.rounds, args.requests, args.warmup, pids))
        check("hit", port, key)
        wrk = None
        if args.duration > 0:
            print(f"measuring at concurrency 32 (wrk, {args.duration:g} s per kind) …", file=sys.stderr, flush=True)
            urls = {kind: f"http://127.0.0.1:{p}" for kind, p in ports.items()}
            wrk = c32(urls, lambda kind, n: write_lua(tmp, kind, key, n), pids, fake.pid, args.duration, pin_rest)
            check("hit", port, key)
            check("miss", port, key)
    finally:
        stop(gateway)
        if worker is not None:
            stop(worker)
    c1 = {kind: summary(raw[kind]) for kind in KINDS}
    per_round = {
        "hit_direct": [h - d for h, d in zip(c1["hit"]["round_p50"], c1["direct"]["round_p50"], strict=True)],
        "hit_miss": [h - m for h, m in zip(c1["hit"]["round_p50"], c1["miss"]["round_p50"], strict=True)],
    }
    return {"c1": c1, "per_round": per_round, "c32": wrk}


# --- profile: where a hit's time goes ------------------------------------------------------------------------------


def profile_run(env: dict, pin_gw: list[str], hits: int) -> None:
    manage(["migrate", "--no-input"], env)
    key = manage(["create_gateway_key", "--org", "bench", "--app", "bench"], env).strip().splitlines()[-1]
    manage(["shell", "-c", SETUP], env)
    cmd = [*pin_gw, PY, str(Path(__file__).resolve()), "--profile-child", "--hits", str(hits), "--key", key]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"the profile failed:\n{res.stdout}{res.stderr}")
    print(res.stdout)


def profile_child(hits: int, key: str) -> None:
    import cProfile
    import io
    import pstats

    import django
    import uvloop

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ingate.settings")
    django.setup()
    from django.conf import settings

    from proxy.relay import ProxyApp

    app = ProxyApp()
    body = json.dumps(HIT_BODY).encode()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {key}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]

    async def one() -> bytes:
        sent, status = False, []

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never goes away

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(dict(message["headers"]).get(b"x-ingate-cache", b""))

        scope = {
            "type": "http",
            "method": "POST",
            "path": PATH,
            "raw_path": PATH.encode(),
            "query_string": b"",
            "headers": headers,
            "http_version": "1.1",
            "scheme": "http",
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
        }
        await app(scope, receive, send)
        return status[0]

    async def client_against_bare_resp() -> dict:
        from redis.connection import parse_url

        from proxy.response_cache.store import PREFIX

        probe = f"{PREFIX}bench-probe".encode()
        client = app.cache_store._async_client()
        await client.set(probe, b"x" * 500, px=60_000)
        parts = parse_url(settings.REDIS_URL)
        reader, writer = await asyncio.open_connection(parts.get("host", "127.0.0.1"), parts.get("port", 6379))
        db = str(parts.get("db", 0)).encode()
        writer.write(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%s\r\n" % (len(db), db))
        await reader.readline()
        command = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(probe), probe)

        async def bare():
            writer.write(command)
            head = await reader.readline()
            await reader.readexactly(int(head[1:-2]) + 2)

        times = {"store client GET": [], "bare RESP GET": []}
        for _ in range(10):
            for name, call in (("store client GET", lambda: client.get(probe)), ("bare RESP GET", bare)):
                t0 = time.perf_counter()
                for _ in range(300):
                    await call()
                times[name].append((time.perf_counter() - t0) / 300 * 1e6)
        writer.close()
        return {name: statistics.median(values) for name, values in times.items()}

    async def main():
        if await one() != b"MISS":
            sys.exit("the first request was not a miss: is the cache empty?")
        await asyncio.sleep(0.3)  # stored when the request is over, in the background
        for _ in range(200):
            if await one() != b"HIT":
                sys.exit("the repeated request was not a hit")
        t0 = time.perf_counter()
        for _ in range(hits):
            await one()
        plain = (time.perf_counter() - t0) / hits * 1e6
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(hits):
            await one()
        profiler.disable()
        resp = await client_against_bare_resp() if settings.REDIS_URL else None
        return plain, profiler, resp

    plain, profiler, resp = uvloop.run(main())
    app.sink.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    store = type(app.cache_store).__name__
    print(f"a hit, in process, {hits} in a row: {plain:.1f} µs each without the profiler ({store})")
    if resp:
        print(
            "Redis GET of a 500-byte value, median of 10 x 300: "
            + ", ".join(f"{k} {v:.1f} µs" for k, v in resp.items())
        )
    print(out.getvalue())


# --- report -------------------------------------------------------------------------------------------------------


def report(run: dict | None, mem: dict | None, info: dict, args) -> list[dict]:
    mode = f"Redis db {args.redis_url.rsplit('/', 1)[1]} + PostgreSQL" if args.redis else "embedded (SQLite, no Redis)"
    print(
        f"\nMachine: {info['cpu']}, {info['cores']} cores; Python {info['python']}; server {info['server']}; "
        f"pinning {'on' if info['pinned'] else 'off'}; gateway {mode}, cache store "
        f"{'Redis' if args.redis else 'in-process (MemoryStore)'}. Non-streaming OpenAI chat, temperature 0."
    )
    targets = []
    if run:
        c1, per = run["c1"], run["per_round"]
        print(
            f"\n### Concurrency 1 ({args.rounds} rounds × {args.requests} requests per kind, interleaved; full "
            "response time; one keep-alive connection per side)\n"
        )
        print("| kind | p50 ms | p99 ms | CPU ms/req of the answering process |")
        print("|---|---:|---:|---:|")
        names = {
            "direct": "direct to the fake provider",
            "miss": "gateway, miss (fresh body each request)",
            "hit": "gateway, hit (same body)",
        }
        for kind in KINDS:
            s = c1[kind]
            print(f"| {names[kind]} | {ms(s['p50'])} | {ms(s['p99'])} | {s['cpu_ms']:.3f} |")
        print("\n| difference | p50 pooled ms | p50 median per round (min … max) ms | p99 pooled ms |")
        print("|---|---:|---:|---:|")
        for label, a, b, key in (
            ("hit − direct", "hit", "direct", "hit_direct"),
            ("hit − miss", "hit", "miss", "hit_miss"),
        ):
            rs = per[key]
            print(
                f"| {label} | {c1[a]['p50'] - c1[b]['p50']:+.3f} | {statistics.median(rs):+.3f} "
                f"({min(rs):+.2f} … {max(rs):+.2f}) | {c1[a]['p99'] - c1[b]['p99']:+.3f} |"
            )
        added = statistics.median(per["hit_direct"])
        targets.append(
            {
                "target": f"hit added p50 over direct ≤ {TARGET} ms (median over rounds)",
                "value": added,
                "pass": added <= TARGET,
            }
        )
        faster = statistics.median(per["hit_miss"])
        targets.append({"target": "hit p50 below miss p50 (median over rounds)", "value": faster, "pass": faster < 0})
        if run["c32"]:
            w = run["c32"]
            print(f"\n### Concurrency 32 (wrk, 2 threads, {args.duration:g} s per kind)\n")
            print(
                "| kind | req/s | p50 / p99 ms | CPU ms/req of the answering process | fake provider CPU ms/req | errors |"
            )
            print("|---|---:|---:|---:|---:|---:|")
            for kind in KINDS:
                r = w[kind]
                up = "–" if kind == "direct" else f"{r['upstream_cpu_ms']:.3f}"
                print(
                    f"| {names[kind].replace('fresh body each request', 'fresh body: wrk Lua counter')} | "
                    f"{r['rps']:,.0f} | {ms(r['p50'])} / {ms(r['p99'])} | {r['cpu_ms']:.3f} | {up} | {r['errors']} |"
                )
            print(
                f"\nhits at c32: {w['hit']['rps'] / w['direct']['rps']:.2f}× the direct req/s, "
                f"{w['hit']['rps'] / w['miss']['rps']:.2f}× the miss req/s."
            )
    if mem:
        mib = 1024 * 1024
        cap = mem["cap"]
        print(
            f"\n### In-process store memory ({mem['entries_put']:,} distinct entries of {mem['raw_bytes_avg']:,.0f} B "
            f"(a chat completion with ~900 characters of text, and its metadata line), default cap {cap / mib:.0f} MiB)\n"
        )
        print("| measure | value |")
        print("|---|---:|")
        rows = [
            ("entries kept (the rest evicted, least recently used first)", f"{mem['entries_kept']:,}"),
            ("stored size per entry: key + compressed value, B (zlib level 1)", f"{mem['stored_bytes_avg']:,.0f}"),
            ("compressed / raw value size", f"{mem['compression']:.2f}"),
            ("store's accounted bytes (key + value + ENTRY_OVERHEAD each)", f"{mem['accounted'] / mib:.2f} MiB"),
            ("tracemalloc growth (Python allocations held)", f"{mem['traced_growth'] / mib:.2f} MiB"),
            ("tracemalloc peak during the fill", f"{mem['traced_peak'] / mib:.2f} MiB"),
            ("process RSS growth (separate run, no tracemalloc)", f"{mem['rss_growth'] / mib:.2f} MiB"),
            (
                f"per-entry overhead measured (store assumes {mem['entry_overhead_assumed']} B)",
                f"{mem['overhead_measured']:.0f} B",
            ),
            ("put (compress + insert + evict), µs each", f"{mem['put_us']:.1f}"),
            ("of which zlib level 1 alone (same values, after the fill), µs", f"{mem['compress_us']:.1f}"),
            ("get (lookup + decompress), µs each", f"{mem['get_us']:.1f}"),
        ]
        for name, value in rows:
            print(f"| {name} | {value} |")
        targets.append(
            {
                "target": f"store's Python allocations ≤ cap ({cap / mib:.0f} MiB)",
                "value": mem["traced_growth"] / mib,
                "pass": mem["traced_growth"] <= cap,
            }
        )
        targets.append(
            {
                "target": f"process RSS growth ≤ cap + {RSS_SLACK:.0%} ({cap * (1 + RSS_SLACK) / mib:.1f} MiB)",
                "value": mem["rss_growth"] / mib,
                "pass": mem["rss_growth"] <= cap * (1 + RSS_SLACK),
            }
        )
    print()
    for t in targets:
        unit = " MiB" if "cap" in t["target"] else " ms"
        print(f"Target: {t['target']}: {t['value']:.3f}{unit} {'PASS' if t['pass'] else 'MISS'}")
    print(flush=True)
    return targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds at concurrency 1 (default 20)")
    ap.add_argument("--requests", type=int, default=200, help="requests per kind per round (default 200)")
    ap.add_argument("--warmup", type=int, default=200, help="warm-up requests per kind (default 200)")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per wrk run at c32, 0 to skip (default 6)")
    ap.add_argument("--entries", type=int, default=100_000, help="distinct entries for the memory part")
    ap.add_argument("--only", choices=("gateway", "memory", "profile"), help="run one part only")
    ap.add_argument("--hits", type=int, default=3000, help="hits per pass of --only profile (default 3000)")
    ap.add_argument("--redis", action="store_true", help="gateway on PostgreSQL + Redis, the cache in Redis")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/2", help="Redis db to use and flush (default 2)")
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server for a throw-away db")
    ap.add_argument("--database", default=DATABASE, help=f"the throw-away db, dropped at the end (default {DATABASE})")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--memory-child", choices=("RSS", "tracemalloc"), help=argparse.SUPPRESS)
    ap.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.entries, args.memory_child == "tracemalloc")))
        return
    if args.profile_child:
        profile_child(args.hits, args.key)
        return
    if args.rounds < 1 or args.requests < 1 or args.warmup < 0 or args.entries < 1 or args.duration < 0:
        ap.error("--rounds, --requests and --entries must be ≥ 1, --warmup and --duration ≥ 0")
    if args.only not in ("memory", "profile") and args.duration > 0 and not shutil.which("wrk"):
        sys.exit("wrk not found on PATH (Debian/Ubuntu: apt-get install wrk), or pass --duration 0")
    # Gateway alone on CPU 0; the fake provider, the Celery worker, wrk, our client and the memory children on CPU 1.
    pinned = not args.no_pin and bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2
    pin_gw, pin_rest = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if pinned else ([], [])
    if pinned:
        os.sched_setaffinity(0, {1})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    tmp = Path(tempfile.mkdtemp(prefix="ingate-bench-cache-"))
    fake_port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "INGATE_DATA_DIR": str(tmp),
        "INGATE_UPSTREAM_OPENAI": f"http://127.0.0.1:{fake_port}",
        "OPENAI_API_KEY": "sk-bench-upstream",
        "PYTHONUNBUFFERED": "1",
    }
    database_made = False
    run = mem = None
    try:
        info = machine_info("uvicorn", pinned)
        if args.only != "memory":
            if args.redis:
                env |= {"DATABASE_URL": f"{args.postgres}/{args.database}", "REDIS_URL": args.redis_url}
                fresh_database(args.postgres, args.database)
                database_made = True
                flush_redis(args.redis_url)
            fake = spawn(
                [*pin_rest, PY, "-m", "tests.fake_provider", "--port", str(fake_port)], tmp / "fake.log", env=env
            )
            wait_ready(fake, fake_port, tmp / "fake.log", "fake provider")
            if args.only == "profile":
                profile_run(env, pin_gw, args.hits)
                return
            run = gateway_run(env, tmp, fake, fake_port, pin_gw, pin_rest, args)
            stop(fake)
        if args.only != "gateway":
            mem = memory_run(args.entries, pin_rest)
        targets = report(run, mem, info, args)
        if args.json:
            stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            Path(args.json).write_text(
                json.dumps(
                    {"machine": info, "date": stamp, "gateway": run, "memory": mem, "targets": targets}, indent=2
                )
            )
    finally:
        cleanup()
        if database_made:
            try:
                fresh_database(args.postgres, args.database, drop_only=True)
                flush_redis(args.redis_url)
            except Exception as exc:  # noqa: BLE001  (say so; the rest of the cleanup still runs)
                print(f"warning: could not drop {args.database} / flush {args.redis_url}: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
