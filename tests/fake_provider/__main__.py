"""Standalone: `python -m tests.fake_provider --port 9999` serves until SIGINT or SIGTERM. `--status 503` makes
every answer that status, in the provider's error shape (a failing upstream for benchmarks); an `x-fake-status`
header still wins."""

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
    parser.add_argument(
        "--status",
        type=int,
        metavar="N",
        help="answer every request with status N in the provider's error shape (FakeProvider.defaults['status'])",
    )
    args = parser.parse_args(argv)
    if args.status is not None and not 400 <= args.status <= 599:
        parser.error(f"--status must be an error status (400-599), got {args.status}")
    provider = FakeProvider(args.host, args.port, record=args.record)
    if args.status is not None:
        provider.defaults["status"] = args.status
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        runner.run(_serve(provider))


if __name__ == "__main__":
    main()
