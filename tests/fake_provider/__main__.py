"""Standalone: `python -m tests.fake_provider --port 9999` serves until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal

from . import __doc__ as PACKAGE_DOC
from .server import FakeProvider, uvloop


async def _serve(provider: FakeProvider):
    server = await provider.open()
    print(f"fake provider listening on {provider.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m tests.fake_provider", description=PACKAGE_DOC.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--record", action="store_true", help="keep every request in memory (off: unbounded)")
    args = parser.parse_args(argv)
    provider = FakeProvider(args.host, args.port, record=args.record)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        runner.run(_serve(provider))


if __name__ == "__main__":
    main()
