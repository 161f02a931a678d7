"""Run a module (`python -m bench.threadnames uvicorn ARGS…`) with every Python thread's name also set as its OS
thread name, so /proc/PID/task/TID/comm tells bench/sidebyside.py which thread is the record writer (Python
3.14 does this by itself; before it every thread is "python"). Nothing else about the process changes."""

from __future__ import annotations

import ctypes
import runpy
import sys
import threading

PR_SET_NAME = 15  # <linux/prctl.h>; the kernel keeps the first 15 bytes
_libc = ctypes.CDLL(None, use_errno=True)
_bootstrap_inner = threading.Thread._bootstrap_inner


def _named_bootstrap(self: threading.Thread) -> None:
    _libc.prctl(PR_SET_NAME, self.name.encode()[:15], 0, 0, 0)
    _bootstrap_inner(self)


if __name__ == "__main__":
    threading.Thread._bootstrap_inner = _named_bootstrap
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
