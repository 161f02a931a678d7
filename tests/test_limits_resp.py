"""proxy/resp.py, the Redis client the limits use on the hot path, against the real Redis: commands and scripts
answer, many in flight share one connection in order, and every way Redis can fail (nobody listening, a
connection cut mid-request, no answer) raises RespUnavailable promptly, after which the client reconnects."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from redis.connection import parse_url

from proxy.limits import RedisLimiter
from proxy.resp import Resp, RespError, RespUnavailable, Script
from tests.tcp_proxy import TcpProxy

needs_redis = pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL (set in CI)")


def run(coro):
    return asyncio.run(coro)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def target():
    """(host, port, db) of REDIS_URL; the keys a test makes are under a prefix of its own, deleted afterwards."""
    if not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (set in CI)")
    parts = parse_url(django_settings.REDIS_URL)
    host, port, db = parts.get("host", "127.0.0.1"), parts.get("port", 6379), parts.get("db", 0)
    prefix = f"ingate:test:resp:{uuid.uuid4().hex}:"
    yield host, port, db, prefix
    client = redis.Redis(host=host, port=port, db=db)
    stale = list(client.scan_iter(prefix + "*"))
    if stale:
        client.delete(*stale)
    client.close()


def test_get_set_with_expiry_and_delete_reach_the_database_the_url_names(target):
    host, port, db, prefix = target

    async def main():
        client = Resp(f"redis://{host}:{port}/{db}")
        await client.set(prefix + "a", b"\x00binary\r\n", ex=30)
        got = await client.get(prefix + "a")
        missing = await client.get(prefix + "nothing")
        await client.close()
        return got, missing

    got, missing = run(main())
    assert got == b"\x00binary\r\n" and missing is None
    direct = redis.Redis(host=host, port=port, db=db)  # another client, on the same database, sees it
    assert direct.get(prefix + "a") == b"\x00binary\r\n"
    assert 28_000 < direct.pttl(prefix + "a") <= 30_000

    async def remove():
        client = Resp(f"redis://{host}:{port}/{db}")
        removed = await client.delete(prefix + "a", prefix + "nothing")
        await client.close()
        return removed

    assert run(remove()) == 1 and direct.get(prefix + "a") is None
    direct.close()


def test_a_script_redis_does_not_know_yet_runs_by_its_text_and_then_by_its_sha(target):
    host, port, db, prefix = target
    script = Script(f"-- {uuid.uuid4().hex}\nreturn {{KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}}")
    direct = redis.Redis(host=host, port=port, db=db)
    assert direct.script_exists(script.sha) == [False]

    async def main():
        client = Resp(f"redis://{host}:{port}/{db}")
        first = await client.evalsha(script, [prefix + "n"], ["x"])
        second = await client.evalsha(script, [prefix + "n"], [2.5])
        await client.close()
        return first, second

    first, second = run(main())
    assert first == [prefix.encode() + b"n", b"x", 1] and second[1:] == [b"2.5", 2]
    assert direct.script_exists(script.sha) == [True]
    direct.close()


def test_an_error_reply_raises_and_leaves_the_connection_usable(target):
    host, port, db, prefix = target

    async def main():
        client = Resp(f"redis://{host}:{port}/{db}")
        await client.set(prefix + "text", "not a number")
        with pytest.raises(RespError, match="not an integer"):
            await client.execute("INCR", prefix + "text")
        after = await client.execute("INCR", prefix + "count")
        await client.close()
        return after

    assert run(main()) == 1


def test_a_thousand_commands_in_flight_on_one_connection_each_get_their_own_answer(target):
    host, port, db, prefix = target

    async def main():
        client = Resp(f"redis://{host}:{port}/{db}")
        keys = [f"{prefix}k{i}" for i in range(1000)]
        await asyncio.gather(*(client.set(key, key) for key in keys))
        values = await asyncio.gather(*(client.get(key) for key in keys))
        await client.close()
        return keys, values

    keys, values = run(main())
    assert values == [key.encode() for key in keys]


def test_nobody_listening_raises_unavailable_at_once():
    async def main():
        client = Resp(f"redis://127.0.0.1:{_closed_port()}/0", timeout=2.0)
        started = time.monotonic()
        with pytest.raises(RespUnavailable, match="cannot connect"):
            await client.get("k")
        return time.monotonic() - started

    assert run(main()) < 1.0


def test_a_redis_that_never_answers_raises_unavailable_within_the_timeout():
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)

        async def main():
            client = Resp(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.3)
            started = time.monotonic()
            results = await asyncio.gather(client.get("a"), client.get("b"), return_exceptions=True)
            return results, time.monotonic() - started

        results, took = run(main())
    assert all(isinstance(r, RespUnavailable) and "did not answer within 0.3s" in str(r) for r in results)
    assert 0.25 < took < 1.5


def test_a_connection_cut_mid_request_raises_unavailable_and_the_next_call_reconnects(target):
    host, port, db, prefix = target
    relay = TcpProxy(host, port)

    async def main():
        client = Resp(f"redis://127.0.0.1:{relay.port}/{db}", timeout=5.0)
        await client.set(prefix + "k", "before")
        relay.hold_replies()  # the command reaches Redis, its answer waits in the relay
        pending = asyncio.ensure_future(client.get(prefix + "k"))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        relay.cut()  # the connection is reset with the request in flight
        with pytest.raises(RespUnavailable, match="lost"):
            await pending
        took = time.monotonic() - started
        relay.forward()
        after = await client.get(prefix + "k")
        await client.close()
        return took, after

    try:
        took, after = run(main())
    finally:
        relay.close()
    assert took < 1.0  # told by the reset, not by the 5 s timeout
    assert after == b"before"


def test_a_closed_client_refuses_further_calls(target):
    host, port, db, _ = target

    async def main():
        client = Resp(f"redis://{host}:{port}/{db}")
        await client.execute("PING")
        await client.close()
        with pytest.raises(RespUnavailable, match="closed"):
            await client.execute("PING")

    run(main())


def test_a_url_that_is_not_redis_is_refused_when_the_client_is_made():
    with pytest.raises(ValueError, match="redis://"):
        Resp("http://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="redis://"):
        RedisLimiter("http://127.0.0.1:6379/0")  # at start, not as an outage at the first request
    with pytest.raises(ValueError, match="database number"):
        Resp("redis://127.0.0.1:6379/zero")


def test_a_unix_socket_url_reaches_redis_and_its_database(target, tmp_path):
    host, port, db, prefix = target
    path = str(tmp_path / "redis.sock")

    async def main():
        async def relay(reader, writer):  # Redis behind a unix socket, as a local install may offer it
            up_reader, up_writer = await asyncio.open_connection(host, port)

            async def pipe(src, dst):
                while data := await src.read(65536):
                    dst.write(data)
                dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

        server = await asyncio.start_unix_server(relay, path)
        client = Resp(f"unix://{path}?db={db}")
        await client.set(prefix + "unix", "via a socket file")
        await client.close()
        server.close()

    run(main())
    direct = redis.Redis(host=host, port=port, db=db)
    assert direct.get(prefix + "unix") == b"via a socket file"
    direct.close()
