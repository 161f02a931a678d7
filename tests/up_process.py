"""`manage.py up` as a user runs it: its own process on a data folder, in the embedded mode, its banner read
and its health awaited before the test goes on, and stopped afterwards."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(data_dir) -> dict[str, str]:
    """This process's environment without what would switch off the embedded mode or reuse this run's secrets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "INGATE_ENCRYPTION_KEY")
    }
    env["INGATE_DATA_DIR"] = str(data_dir)
    return env


@dataclass
class Up:
    url: str
    banner: str
    env: dict[str, str]
    output: list[str] = field(default_factory=list)  # what the server printed after the banner

    @property
    def export_line(self) -> str:
        """The `export INGATE_URL=… INGATE_KEY=…` line the banner asks the user to paste into their shell."""
        found = re.search(r"^\s*(export INGATE_URL=.*)$", self.banner, re.M)
        assert found, self.banner
        return found.group(1)

    @property
    def try_it(self) -> str:
        """The banner's "Try it" curl, as printed."""
        found = re.search(r"Try it:\n(.+?)\n\n", self.banner, re.S)
        assert found, self.banner
        return found.group(1)


@contextmanager
def started_up(data_dir, env: dict[str, str] | None = None, *, timeout: float = 30.0) -> Iterator[Up]:
    """Run `manage.py up` from the checkout until the block ends; yields once it answers /ingate/health."""
    port = free_port()
    environment = embedded_env(data_dir) | (env or {})
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = ""
        for line in proc.stdout:
            banner += line
            if "ANTHROPIC_BASE_URL" in line:  # the banner's last line
                break
        up = Up(url=f"http://127.0.0.1:{port}", banner=banner, env=environment)
        # Keep reading, so a chatty server never blocks on a full pipe, and keep it for failure messages.
        threading.Thread(target=lambda: up.output.extend(proc.stdout), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{up.url}/ingate/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, banner + "".join(up.output)
                time.sleep(0.2)
        yield up
    finally:
        proc.terminate()
        proc.wait(timeout=20)
