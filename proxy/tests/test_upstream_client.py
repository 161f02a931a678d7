"""The upstream client against real loopback servers that answer byte by byte as scripted: framing, pooling,
and above all that no answer (or part of one) ever reaches a request it does not belong to."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
import trustme
import uvloop

from proxy.upstream_client import ConnectError, Disconnected, UpstreamClient, UpstreamTimeout


def run(main, *, loop: str = "uvloop"):
    return uvloop.run(main()) if loop == "uvloop" else asyncio.run(main())


class Script:
    """A TCP server on loopback; `answer(reader, writer, n)` serves the n-th request of a connection. Counts
    connections and keeps what each request looked like."""

    def __init__(self, answer, ssl_context: ssl.SSLContext | None = None):
        self.answer = answer
        self.ssl = ssl_context
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Script:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    @property
    def url(self) -> str:
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.ssl else 'http'}://{'localhost' if self.ssl else '127.0.0.1'}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                if await self.answer(reader, writer, n) is False:
                    return
                n += 1
        finally:
            writer.close()


def answer_with(body: bytes, *, extra: bytes = b"", status: bytes = b"200 OK"):
    async def answer(reader, writer, n):
        writer.write(
            b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\ncontent-type: application/json\r\n" % len(body)
        )
        writer.write(extra + b"\r\n" + body)
        await writer.drain()

    return answer


def client(**timeouts) -> UpstreamClient:
    return UpstreamClient(connect_timeout=timeouts.get("connect", 2.0), read_timeout=timeouts.get("read", 2.0))


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_answers_with_a_length_come_whole_and_the_connection_carries_the_next_request(loop):
    async def main():
        async with Script(answer_with(b'{"n":1}')) as server:
            upstream = client()
            for _ in range(3):
                response = await upstream.request(
                    "POST", server.url + "/v1/chat", [(b"content-type", b"application/json")], b"{}"
                )
                assert response.status == 200 and response.content_type == "application/json"
                assert response.content_length == 7 and await response.read() == b'{"n":1}'
                response.release()
            await upstream.close()
            assert server.connections == 1
            first = server.requests[0]
            assert first.startswith(b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:")
            assert b"\r\ncontent-type: application/json\r\nContent-Length: 2\r\n\r\n{}" in first

    run(main, loop=loop)


def test_a_chunked_stream_is_handed_over_chunk_by_chunk_as_it_arrives():
    async def main():
        gate = asyncio.Event()

        async def answer(reader, writer, n):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"d\r\ndata: first\n\n\r\n")
            await writer.drain()
            await gate.wait()
            writer.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
            await writer.drain()

        async with Script(answer) as server:
            upstream = client()
            response = await upstream.request("POST", server.url + "/v1/chat", [], b"{}")
            assert response.content_length is None
            assert await response.chunk() == b"data: first\n\n"  # before the second was even sent
            gate.set()
            assert await response.chunk() == b"data: second\n\n"
            assert await response.chunk() == b""
            response.release()
            again = await upstream.request("GET", server.url + "/v1/models", [])  # on the same connection
            assert await again.read() == b"data: first\n\ndata: second\n\n"
            again.release()
            await upstream.close()
            assert server.connections == 1

    run(main)


def test_a_body_that_ends_with_the_connection_is_whole_and_the_connection_is_not_reused():
    async def main():
        async def answer(reader, writer, n):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
            await writer.drain()
            return False  # close

        async with Script(answer) as server:
            upstream = client()
            for _ in range(2):
                response = await upstream.request("GET", server.url + "/", [])
                assert await response.read() == b"all of it"
                response.release()
            await upstream.close()
            assert server.connections == 2

    run(main)


def test_a_server_that_says_close_gets_a_new_connection_for_the_next_request():
    async def main():
        async with Script(answer_with(b"ok", extra=b"connection: close\r\n")) as server:
            upstream = client()
            for _ in range(2):
                response = await upstream.request("POST", server.url + "/x", [], b"1")
                assert await response.read() == b"ok"
                response.release()
            await upstream.close()
            assert server.connections == 2

    run(main)


def test_an_answer_cut_mid_body_is_an_error_and_the_next_request_gets_only_its_own_answer():
    async def main():
        async def answer(reader, writer, n):
            if len(server.requests) == 1:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
                await writer.drain()
                return False
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond")
            await writer.drain()

        async with Script(answer) as server:
            upstream = client()
            response = await upstream.request("POST", server.url + "/x", [], b"1")
            with pytest.raises(Disconnected):
                await response.read()
            response.close()
            response = await upstream.request("POST", server.url + "/x", [], b"2")
            assert await response.read() == b"second"
            response.release()
            await upstream.close()

    run(main)


def test_an_answer_left_unread_closes_its_connection_so_its_rest_never_reaches_the_next_request():
    async def main():
        async def answer(reader, writer, n):
            body = b"A" * 10 if len(server.requests) == 1 else b"B" * 10
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n" + body)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(body)
            await writer.drain()

        async with Script(answer) as server:
            upstream = client()
            first = await upstream.request("POST", server.url + "/x", [], b"1")
            assert await first.chunk() == b"A" * 10
            first.close()  # the caller went away mid-answer
            second = await upstream.request("POST", server.url + "/x", [], b"2")
            assert await second.read() == b"B" * 20
            second.release()
            await upstream.close()
            assert server.connections == 2

    run(main)


def test_a_server_sending_two_answers_to_one_request_is_not_trusted_with_another():
    async def main():
        async def answer(reader, writer, n):
            own = b"mine-%d" % len(server.requests)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n" + own)
            if len(server.requests) == 1:  # and a stray answer after it, as if for someone else
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray")
            await writer.drain()

        async with Script(answer) as server:
            upstream = client()
            first = await upstream.request("POST", server.url + "/x", [], b"1")
            assert await first.read() == b"mine-1"
            first.release()
            second = await upstream.request("POST", server.url + "/x", [], b"2")
            assert await second.read() == b"mine-2"
            second.release()
            await upstream.close()
            assert server.connections == 2

    run(main)


def test_a_silent_upstream_times_out_waiting_for_the_head_and_mid_body():
    async def main():
        async def answer(reader, writer, n):
            if len(server.requests) == 2:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf!")
                await writer.drain()
            await asyncio.sleep(5)

        async with Script(answer) as server:
            upstream = client(read=0.2)
            started = time.perf_counter()
            with pytest.raises(UpstreamTimeout, match="did not answer within 0.2s"):
                await upstream.request("POST", server.url + "/x", [], b"1")
            assert 0.15 < time.perf_counter() - started < 1.5
            response = await upstream.request("POST", server.url + "/x", [], b"2")
            assert await response.chunk() == b"half!"
            with pytest.raises(UpstreamTimeout):
                await response.chunk()
            response.close()
            await upstream.close()

    run(main)


def test_a_slow_trickle_within_the_read_timeout_is_not_a_timeout():
    async def main():
        async def answer(reader, writer, n):
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(5):
                await asyncio.sleep(0.1)
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

        async with Script(answer) as server:
            upstream = client(read=0.3)  # the whole answer takes 0.5 s, each wait 0.1 s
            response = await upstream.request("POST", server.url + "/x", [], b"1")
            assert await response.read() == b"xxxxx"
            response.release()
            await upstream.close()

    run(main)


def test_nothing_listening_is_a_connect_error():
    async def main():
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        upstream = client()
        with pytest.raises(ConnectError):
            await upstream.request("POST", f"http://127.0.0.1:{port}/x", [], b"1")
        await upstream.close()

    run(main)


def test_informational_answers_are_skipped_for_the_final_one():
    async def main():
        async def answer(reader, writer, n):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\nx-final: yes\r\n\r\ndone")
            await writer.drain()

        async with Script(answer) as server:
            upstream = client()
            response = await upstream.request("POST", server.url + "/x", [], b"1")
            assert response.status == 201 and await response.read() == b"done"
            assert (b"x-final", b"yes") in response.raw_headers and all(h != b"link" for h, _ in response.raw_headers)
            response.release()
            await upstream.close()

    run(main)


def test_a_head_answer_has_no_body_even_with_a_length():
    async def main():
        async def answer(reader, writer, n):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
            await writer.drain()

        async with Script(answer) as server:
            upstream = client()
            response = await upstream.request("HEAD", server.url + "/x", [])
            assert response.status == 200 and await response.read() == b""
            response.release()
            await upstream.close()

    run(main)


def test_a_pooled_connection_the_server_closed_is_replaced_without_an_error():
    async def main():
        async def answer(reader, writer, n):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            return False  # closes after answering, without saying so: the client pooled it

        async with Script(answer) as server:
            upstream = client()
            for method in ("POST", "GET", "POST"):
                response = await upstream.request(method, server.url + "/x", [], b"1" if method == "POST" else None)
                assert await response.read() == b"ok"
                response.release()
                await asyncio.sleep(0.05)  # the close arrives while the connection sits in the pool
            await upstream.close()
            assert server.connections == 3 and len(server.requests) == 3  # nothing sent twice

    run(main)


def test_header_values_cannot_smuggle_a_second_request_and_paths_cannot_break_the_request_line():
    async def main():
        async with Script(answer_with(b"ok")) as server:
            upstream = client()
            with pytest.raises(ValueError, match="line break"):
                await upstream.request("POST", server.url + "/x", [(b"authorization", b"Bearer k\r\nX-Evil: 1")], b"1")
            response = await upstream.request("GET", server.url + "/v1/models/a b\r\nX: y", [])
            assert await response.read() == b"ok"
            response.release()
            await upstream.close()
            assert server.requests[0].startswith(b"GET /v1/models/a%20b%0D%0AX:%20y HTTP/1.1\r\n")

    run(main)


def test_a_slow_reader_holds_back_the_upstream_instead_of_buffering_its_whole_answer():
    size = 16 << 20

    async def main():
        async def answer(reader, writer, n):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
            for _ in range(size >> 16):
                writer.write(b"x" * 65536)
                await writer.drain()

        async with Script(answer) as server:
            upstream = client()
            response = await upstream.request("GET", server.url + "/big", [])
            await asyncio.sleep(0.5)  # the reader is busy; the server keeps writing
            assert response._pending < 4 << 20  # held to about the high-water mark, not 16 MiB
            received = len(await response.read())
            assert received == size
            response.release()
            await upstream.close()

    run(main)


def test_https_upstreams_are_verified_and_named_by_their_host():
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)

    async def main():
        async with Script(answer_with(b"secure"), ssl_context=server_context) as server:
            trusting = ssl.create_default_context()
            authority.configure_trust(trusting)
            upstream = UpstreamClient(connect_timeout=2, read_timeout=2, ssl_context=trusting)
            response = await upstream.request("POST", server.url + "/v1/chat", [], b"{}")
            assert await response.read() == b"secure"
            response.release()
            assert server.requests[0].split(b"\r\n")[1].startswith(b"Host: localhost:")
            await upstream.close()

            default = client()  # the system's trust store does not know this CA: refused, not sent
            with pytest.raises(ConnectError):
                await default.request("POST", server.url + "/v1/chat", [], b"{}")
            await default.close()
            assert len(server.requests) == 1

    run(main)


def test_a_reused_connection_dropped_before_any_answer_is_retried_only_when_the_method_is_idempotent():
    async def main():
        async def answer(reader, writer, n):
            if n == 1:
                return False  # the second request on a connection: dropped unanswered, as in an idle-close race
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

        async with Script(answer) as server:
            upstream = client()
            for method in ("GET", "GET"):
                response = await upstream.request(method, server.url + "/v1/models", [])
                assert await response.read() == b"ok"
                response.release()
            assert len(server.requests) == 3  # the second GET went twice: once dropped, once answered

            with pytest.raises(Disconnected):  # a POST may have started a generation: never sent twice
                await upstream.request("POST", server.url + "/v1/chat", [], b"{}")
            assert len(server.requests) == 4
            response = await upstream.request("POST", server.url + "/v1/chat", [], b"{}")  # a new connection
            assert await response.read() == b"ok"
            response.release()
            assert len(server.requests) == 5
            await upstream.close()

    run(main)
