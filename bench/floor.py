"""The floor for bench/sidebyside.py: a raw HTTP/1.1 relay with no gateway logic (no auth, no records, no
header rewriting). Request bytes go upstream as received, response bytes come back as they arrive (chunked
streams included), over pooled keep-alive upstream connections; httptools only finds where messages end.
Run: `.venv/bin/python bench/floor.py --port 8001 --upstream 127.0.0.1:9999`."""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal

import httptools
import uvloop

BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream, serving one client request at a time."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.head_only = False

    def connection_made(self, transport):
        self.transport = transport

    def send(self, client: Client, request: bytes, head_only: bool) -> None:
        self.client, self.head_only = client, head_only
        self.transport.write(request)

    def data_received(self, data: bytes):
        if self.client is not None:
            self.client.transport.write(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_headers_complete(self):
        if self.head_only:  # no body follows; the parser cannot know that, so this connection is not reused
            self.finish(reuse=False)

    def on_message_complete(self):
        if self.client is not None:
            self.finish(reuse=self.parser.should_keep_alive())

    def finish(self, reuse: bool) -> None:
        client, self.client = self.client, None
        if reuse:
            self.relay.idle.append(self)
        else:
            self.transport.close()
        client.next()

    def connection_lost(self, exc):
        if self in self.relay.idle:
            self.relay.idle.remove(self)
        if self.client is not None:  # cut mid-response: the client cannot get a whole answer any more
            self.client.transport.close()
            self.client = None


class Client(asyncio.Protocol):
    """One client connection: requests are buffered whole, then relayed one at a time."""

    def __init__(self, relay: Relay):
        self.relay = relay
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.queue: collections.deque[tuple[bytes, bool]] = collections.deque()
        self.busy = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.buffer += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self):
        # Whole chunks only: a client that pipelines two requests into one read is not supported (wrk and the
        # TTFB client send one request at a time per connection).
        self.queue.append((bytes(self.buffer), self.parser.get_method() == b"HEAD"))
        self.buffer.clear()
        if not self.busy:
            self.next()

    def next(self) -> None:
        if not self.queue or self.transport.is_closing():
            self.busy = False
            return
        self.busy = True
        request, head_only = self.queue.popleft()
        if self.relay.idle:
            self.relay.idle.pop().send(self, request, head_only)
        else:
            asyncio.get_running_loop().create_task(self.relay.connect(self, request, head_only))

    def connection_lost(self, exc):
        self.queue.clear()


class Relay:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.idle: list[Upstream] = []  # LIFO: the warmest connection first

    async def connect(self, client: Client, request: bytes, head_only: bool) -> None:
        try:
            _, upstream = await asyncio.get_running_loop().create_connection(
                lambda: Upstream(self), self.host, self.port
            )
        except OSError:
            client.transport.write(BAD_GATEWAY)
            client.transport.close()
            return
        upstream.send(client, request, head_only)


async def serve(port: int, upstream: str) -> None:
    host, _, up_port = upstream.rpartition(":")
    relay = Relay(host, int(up_port))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(relay), "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"floor relay on 127.0.0.1:{port} -> {upstream}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
