"""A TCP forwarder that tests put in front of PostgreSQL, Redis or the gateway to stage an outage without
touching the real servers (others use them): forward, refuse (listener closed, connections reset), hang
(connections accepted and kept, nothing forwarded either way until it forwards again), hold replies (requests
reach the server, its answers wait) or cut (open connections reset, new ones accepted)."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self._holding_replies = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listen()

    # --- modes ---------------------------------------------------------------------------------------

    def forward(self) -> None:
        """Pass bytes both ways again (connections held by hang() or hold_replies() carry on where they stopped)."""
        if self._listener is None:
            self._listen()
        self._holding_replies.clear()
        self._flowing.set()

    def hold_replies(self) -> None:
        """Pass the clients' bytes on but hold the server's back: seen from a client, its commands are applied
        and their answers never come (until forward())."""
        self._holding_replies.set()

    def hang(self) -> None:
        """Accept connections and keep them open, but pass nothing: a database or Redis that stopped answering."""
        if self._listener is None:
            self._listen()
        self._flowing.clear()

    def refuse(self) -> None:
        """Close the listener (new connections are refused) and reset every open connection."""
        self._flowing.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.cut()

    def cut(self) -> None:
        """Reset every open connection and keep accepting new ones: a load balancer restart, a flaky network."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def close(self) -> None:
        self.refuse()

    # --- plumbing ------------------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # the same port after refuse(): clients keep their address
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy-accept", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by refuse()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        ends = {client: upstream, upstream: client}
        try:
            while True:
                self._flowing.wait()
                readable, _, _ = select.select(list(ends), [], [], 0.05)
                if not self._flowing.is_set():
                    continue  # hang: what was sent stays unread in the kernel's buffers
                moved = False
                for sock in readable:
                    if sock is upstream and self._holding_replies.is_set():
                        continue
                    data = sock.recv(65536)
                    if not data:
                        return
                    ends[sock].sendall(data)
                    moved = True
                if readable and not moved:
                    time.sleep(0.01)  # only held replies are waiting: do not spin on them
        except (OSError, ValueError):
            return
        finally:
            for sock in ends:
                _reset(sock)
            with self._lock:
                if (client, upstream) in self._pairs:
                    self._pairs.remove((client, upstream))


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
