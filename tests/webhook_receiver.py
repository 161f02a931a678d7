"""A webhook receiver for tests: a real HTTP server on loopback that records what it is sent and answers as told
(a status per request, optionally after a delay, or a redirect)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int = 200
    delay: float = 0.0
    location: str = ""


@dataclass
class Receiver:
    url: str
    server: ThreadingHTTPServer
    answers: list[Answer] = field(default_factory=list)  # consumed in order; then 200
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the receiver got {len(self.received)} requests, expected {count}")
                self.arrived.wait(left)
        return list(self.received)


def start_receiver() -> Receiver:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            receiver = holder["r"]
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            answer = receiver.answers.pop(0) if receiver.answers else Answer()
            if answer.delay:
                time.sleep(answer.delay)
            with receiver.arrived:
                receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                receiver.arrived.notify_all()
            self.send_response(answer.status)
            if answer.location:
                self.send_header("location", answer.location)
            payload = f"answered {answer.status}".encode()
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks", server=server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return holder["r"]
