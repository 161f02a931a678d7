"""Proxy-overhead benchmark: chat requests sent straight to the fake provider and through the gateway.
wrk measures req/s and p50/p99 latency; a raw-socket client measures stream time to first byte.
Run from the repo root: `.venv/bin/python bench/proxy.py [--duration 8] [--server daphne] [--no-pin] [--json out.json]`."""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
PY = str(VENV_PY) if VENV_PY.exists() else sys.executable
PATH = "/v1/chat/completions"
CHUNKS = 16
TTFB_N, TTFB_WARMUP = 2000, 100
PLAIN = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
STREAM = {**PLAIN, "stream": True}
# (scenario, concurrency, wrk threads, streaming)
WRK_RUNS = [
    ("chat", 1, 1, False),
    ("chat", 32, 2, False),
    (f"stream {CHUNKS} chunks", 1, 1, True),
    (f"stream {CHUNKS} chunks", 32, 2, True),
]

# done() reports the aggregate over all wrk threads on one line, latencies in microseconds.
LUA = """wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
%(extra)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%.0f %%.0f %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""

try:  # uvloop keeps the TTFB client's own per-request cost (and its jitter) lower than plain asyncio
    import uvloop

    arun = uvloop.run
except ImportError:
    arun = asyncio.run

children: list[subprocess.Popen] = []


def spawn(cmd: list[str], log: Path | None = None, **kw) -> subprocess.Popen:
    # Own session: a Ctrl-C reaches only us (we stop children in order), and cleanup() kills whole groups.
    out = open(log, "wb") if log else subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw)
    if log:
        out.close()  # the child has its own copy
    children.append(proc)
    return proc


def cleanup() -> None:
    for proc in children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in children:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # a leftover group member may still hold it; don't hang on it
            proc.wait()


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process (or of its thread `tid`) so far (Linux /proc): the gateway's cost per
    request, which a busy neighbour on a shared machine does not change the way it changes latency."""
    stat = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, run) -> dict:
    before = cpu_seconds(pid)
    result = run()
    result["cpu_ms"] = (cpu_seconds(pid) - before) * 1000 / max(result["requests"], 1)
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, port: int, log: Path, name: str, timeout: float = 60.0) -> None:
    """Poll HEAD / until it answers (200 for the gateway: anything else means it came up broken)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("HEAD", "/")
            status = conn.getresponse().status
            conn.close()
            if name != "gateway" or status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{name} not ready on port {port} after {timeout:.0f}s:\n{log.read_text(errors='replace')[-3000:]}")


def manage(args: list[str], env: dict) -> str:
    res = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    return res.stdout


def uvicorn_cmd(port: int) -> list[str]:
    """The gateway as production serves it: one uvicorn process, uvloop, httptools."""
    return [
        PY,
        "-m",
        "uvicorn",
        "ingate.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-server-header",
        "--no-date-header",
        "--no-proxy-headers",
        "--lifespan",
        "on",
    ]


def run_wrk(url: str, lua: Path, conns: int, threads: int, duration: float, pin: list[str]) -> dict:
    cmd = [
        *pin,
        "wrk",
        f"-t{threads}",
        f"-c{conns}",
        f"-d{duration:g}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(lua),
        url + PATH,
    ]
    proc = spawn(cmd)
    out = proc.communicate(timeout=duration + 30)[0].decode()
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
    if proc.returncode or line is None:
        sys.exit(f"wrk failed ({proc.returncode}):\n{out}")
    reqs, dur_us, p50, p99, sock_err, bad_status = (int(float(x)) for x in line.split()[1:])
    return {
        "rps": reqs / (dur_us / 1e6),
        "p50": p50 / 1000,
        "p99": p99 / 1000,
        "requests": reqs,
        "errors": sock_err + bad_status,
    }


def write_lua(tmp: Path, name: str, key: str, stream: bool) -> Path:
    extra = f'wrk.headers["x-fake-chunks"] = "{CHUNKS}"' if stream else ""
    path = tmp / f"{name}.lua"
    path.write_text(LUA % {"body": json.dumps(STREAM if stream else PLAIN), "key": key, "extra": extra})
    return path


async def read_response(loop, sock: socket.socket, buf: bytearray) -> int:
    """Read one whole HTTP/1.1 response (content-length or chunked) off a keep-alive socket; return the
    perf_counter_ns of the first body byte. Leftover bytes stay in `buf` (there should be none)."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        buf += await loop.sock_recv(sock, 65536)
    head = bytes(buf[:end]).decode("latin-1").lower().split("\r\n")
    if not head[0].startswith("http/1.1 200"):
        raise RuntimeError(f"unexpected response: {head[0]}")
    del buf[: end + 4]
    while not buf:
        buf += await loop.sock_recv(sock, 65536)
    first = time.perf_counter_ns()
    headers = dict(h.split(":", 1) for h in head[1:])
    if "content-length" in headers:
        need = int(headers["content-length"])
        while len(buf) < need:
            buf += await loop.sock_recv(sock, 65536)
        del buf[:need]
        return first
    pos = 0  # chunked: walk chunk sizes until the zero-size chunk and its trailing CRLF
    while True:
        while (eol := buf.find(b"\r\n", pos)) < 0:
            buf += await loop.sock_recv(sock, 65536)
        size = int(buf[pos:eol].split(b";")[0], 16)
        nxt = eol + 2 + size + 2
        while len(buf) < nxt:
            buf += await loop.sock_recv(sock, 65536)
        pos = nxt
        if size == 0:
            del buf[:pos]
            return first


async def ttfb(port: int, key: str) -> dict:
    body = json.dumps(STREAM).encode()
    req = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nx-fake-chunks: {CHUNKS}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    buf, samples = bytearray(), []
    try:
        for i in range(TTFB_WARMUP + TTFB_N):
            t0 = time.perf_counter_ns()
            await loop.sock_sendall(sock, req)
            first = await read_response(loop, sock, buf)
            if i >= TTFB_WARMUP:
                samples.append((first - t0) / 1e6)
    finally:
        sock.close()
    samples.sort()
    pct = lambda p: samples[min(len(samples) - 1, int(p / 100 * len(samples)))]
    return {"rps": None, "p50": pct(50), "p99": pct(99), "requests": len(samples), "errors": 0}


def machine_info(server: str, pinned: bool) -> dict:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    pyver = subprocess.run(
        [PY, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
    ).stdout.strip()
    db = os.environ.get("DATABASE_URL", "")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": pyver,
        "server": server,
        "pinned": pinned,
        "database": db.split(":", 1)[0] if db else "sqlite",
        "redis": bool(os.environ.get("REDIS_URL")),
    }


def ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def report(rows: list[dict], info: dict) -> list[dict]:
    print(
        f"\nMachine: {info['cpu']}, {info['cores']} cores; Python {info['python']}; server {info['server']}; "
        f"DB {info['database']}; Redis {'on' if info['redis'] else 'off'}; pinning {'on' if info['pinned'] else 'off'}\n"
    )
    print(
        "| scenario | concurrency | direct req/s | gateway req/s | direct p50 / p99 ms | gateway p50 / p99 ms "
        "| added p50 / p99 ms | gateway CPU ms/req |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d, g = r["direct"], r["gateway"]
        rps = lambda x: "–" if x["rps"] is None else f"{x['rps']:.0f}"
        print(
            f"| {r['scenario']} | {r['concurrency']} | {rps(d)} | {rps(g)} | {ms(d['p50'])} / {ms(d['p99'])} "
            f"| {ms(g['p50'])} / {ms(g['p99'])} | {ms(r['added_p50'])} / {ms(r['added_p99'])} | {g['cpu_ms']:.3f} |"
        )
    for r in rows:
        for side in ("direct", "gateway"):
            if r[side]["errors"]:
                print(
                    f"warning: {r['scenario']} c{r['concurrency']} {side}: {r[side]['errors']} errors/non-2xx "
                    f"of {r[side]['requests']} requests"
                )
    by = {(r["scenario"], r["concurrency"]): r for r in rows}
    stream = f"stream {CHUNKS} chunks"
    checks = [
        ("chat c1 added p50 ≤ 0.5 ms", by["chat", 1]["added_p50"], 0.5, False),
        ("chat c1 added p99 ≤ 2 ms", by["chat", 1]["added_p99"], 2.0, False),
        ("stream TTFB c1 added p50 ≤ 0.5 ms", by["stream TTFB", 1]["added_p50"], 0.5, False),
        ("stream TTFB c1 added p99 ≤ 2 ms", by["stream TTFB", 1]["added_p99"], 2.0, False),
        ("chat c32 gateway ≥ 3000 req/s", by["chat", 32]["gateway"]["rps"], 3000, True),
        (f"{stream} c32 gateway ≥ 1500 req/s", by[stream, 32]["gateway"]["rps"], 1500, True),
    ]
    targets = [
        {"target": name, "value": v, "pass": v >= lim if at_least else v <= lim} for name, v, lim, at_least in checks
    ]
    shown = lambda t: f"{t['value']:.0f}" if "req/s" in t["target"] else f"{t['value']:.2f}"
    print(
        "\nTargets: " + "; ".join(f"{t['target']}: {shown(t)} {'PASS' if t['pass'] else 'MISS'}" for t in targets),
        flush=True,
    )
    return targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run (default 8)")
    ap.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found on PATH (Debian/Ubuntu: apt-get install wrk)")
    # Gateway alone on CPU 0; fake provider, wrk and our TTFB client share CPU 1.
    pinned = not args.no_pin and bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2
    pin_gw, pin_rest = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if pinned else ([], [])
    if pinned:
        os.sched_setaffinity(0, {1})
    # SIGTERM becomes SystemExit and SIGINT KeyboardInterrupt (even if inherited as ignored), so cleanup runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    tmp = Path(tempfile.mkdtemp(prefix="ingate-bench-"))
    fake_port, gw_port = free_port(), free_port()
    # DATABASE_URL / REDIS_URL come through from the caller's environment untouched.
    env = {
        **os.environ,
        "INGATE_DATA_DIR": str(tmp),
        "INGATE_UPSTREAM_OPENAI": f"http://127.0.0.1:{fake_port}",
        "OPENAI_API_KEY": "sk-bench-upstream",
        "PYTHONUNBUFFERED": "1",
    }
    try:
        fake = spawn(
            [*pin_rest, PY, "-m", "tests.fake_provider", "--host", "127.0.0.1", "--port", str(fake_port)],
            tmp / "fake.log",
            env=env,
        )
        manage(["migrate", "--no-input"], env)
        key = manage(["create_gateway_key", "--org", "bench", "--app", "bench"], env).strip().splitlines()[-1]
        if args.server == "uvicorn":
            server = uvicorn_cmd(gw_port)
        else:
            server = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(gw_port), "ingate.asgi:application"]
        gateway = spawn([*pin_gw, *server], tmp / "gateway.log", env=env)
        if os.environ.get("REDIS_URL"):
            # Production shape: the gateway streams records to Redis and a Celery worker inserts them.
            spawn(
                [*pin_rest, PY, "-m", "celery", "-A", "ingate", "worker", "--pool=solo", "-l", "warning"],
                tmp / "worker.log",
                env=env,
            )
        wait_ready(fake, fake_port, tmp / "fake.log", "fake provider")
        wait_ready(gateway, gw_port, tmp / "gateway.log", "gateway")
        info = machine_info(args.server, pinned)
        targets = {"direct": f"http://127.0.0.1:{fake_port}", "gateway": f"http://127.0.0.1:{gw_port}"}
        lua = {s: write_lua(tmp, "stream" if s else "chat", key, s) for s in (False, True)}
        for url in targets.values():  # warm up: key cache, upstream connection pool, lazy imports
            for s in (False, True):
                run_wrk(url, lua[s], 32, 2, 1, pin_rest)

        rows = []
        for scenario, conns, threads, stream in WRK_RUNS:
            print(f"running {scenario} c{conns} …", file=sys.stderr, flush=True)
            rows.append(
                {
                    "scenario": scenario,
                    "concurrency": conns,
                    "direct": run_wrk(targets["direct"], lua[stream], conns, threads, args.duration, pin_rest),
                    "gateway": measured(
                        gateway.pid,
                        functools.partial(
                            run_wrk, targets["gateway"], lua[stream], conns, threads, args.duration, pin_rest
                        ),
                    ),
                }
            )
        print("running stream TTFB c1 …", file=sys.stderr, flush=True)
        rows.append(
            {
                "scenario": "stream TTFB",
                "concurrency": 1,
                "direct": arun(ttfb(fake_port, key)),
                "gateway": measured(gateway.pid, lambda: arun(ttfb(gw_port, key))),
            }
        )
        for r in rows:
            r["added_p50"] = r["gateway"]["p50"] - r["direct"]["p50"]
            r["added_p99"] = r["gateway"]["p99"] - r["direct"]["p99"]
        checks = report(rows, info)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": info, "rows": rows, "targets": checks}, indent=2))
    finally:
        cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # children are already gone (finally in main); skip the traceback
        sys.exit(130)
