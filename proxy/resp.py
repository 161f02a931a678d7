"""A small Redis client for the hot path: asyncio Protocol connections kept open, commands pipelined on them
(each written at once, replies matched in order), replies parsed by hiredis. redis-py's asyncio client spent
70-130 µs of CPU per command on this machine, more than the round trip itself; this one ~20 µs (the asyncio
machinery of one await, mostly).

    client = Resp("redis://127.0.0.1:6379/0", timeout=2.0)
    await client.set("k", b"v", ex=60); await client.get("k"); await client.delete("k")
    script = Script("return redis.call('GET', KEYS[1])")
    await client.evalsha(script, ["k"], [])       # EVALSHA, and EVAL once if Redis does not know it yet

A client belongs to the event loop it is first used on. Every call either answers within `timeout` seconds or
raises `RespUnavailable` (refused, unreachable, timed out, connection dropped mid-request): callers decide what
an outage means. A connection that fails or times out is closed with everything pending on it (its replies
could no longer be matched), and the next call opens a new one. An error reply raises `RespError`.
Only what Ingate needs: redis://, rediss:// and unix:// URLs (password, user, db), no Cluster, no Sentinel,
no pub/sub.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

__all__ = ["Resp", "RespError", "RespUnavailable", "Script"]


class RespError(Exception):
    """Redis answered with an error (the message is Redis's: "NOSCRIPT …", "WRONGTYPE …", "ERR …")."""


class RespUnavailable(ConnectionError):
    """Redis could not be asked or did not answer in time; nothing is known of what the command did."""


class Script:
    """A Lua script and its SHA1, for `Resp.evalsha`."""

    __slots__ = ("text", "sha")

    def __init__(self, text: str):
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


class _Connection(asyncio.Protocol):
    """One socket: commands written in order, their futures answered in the same order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float):
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()  # gets() answers False until a whole reply is in
        self.waiting: collections.deque[tuple[asyncio.Future, asyncio.TimerHandle]] = collections.deque()
        self.broken: Exception | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._break(RespUnavailable(f"Redis sent something that is not RESP: {exc}"))
                return
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self._break(RespUnavailable("Redis sent a reply nothing was waiting for"))
                return
            future, timer = waiting.popleft()
            timer.cancel()
            if not future.done():
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(RespError(str(reply)))
                else:
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._break(RespUnavailable(f"the connection to Redis was lost ({exc or 'closed by Redis'})"))

    # --- commands -----------------------------------------------------------------------------------------

    def send(self, packed: bytes) -> asyncio.Future:
        future = self.loop.create_future()
        if self.broken is not None:
            future.set_exception(self.broken)
            return future
        timer = self.loop.call_later(self.timeout, self._timed_out)
        self.waiting.append((future, timer))
        self.transport.write(packed)
        return future

    def _timed_out(self) -> None:
        self._break(RespUnavailable(f"Redis did not answer within {self.timeout:g}s"))

    def _break(self, exc: Exception) -> None:
        """Fails everything pending and closes the socket: later replies could not be told apart."""
        if self.broken is None:
            self.broken = exc
        while self.waiting:
            future, timer = self.waiting.popleft()
            timer.cancel()
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class Resp:
    """See the module docstring. `connections` sockets are opened lazily and used in turn."""

    def __init__(self, url: str, *, timeout: float = 2.0, connections: int = 1):
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"a Redis URL starts with redis://, rediss:// or unix://, not {url.split(':', 1)[0]}://")
        self.socket_path = parts.path if parts.scheme == "unix" else ""
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        if self.socket_path:
            db = parse_qs(parts.query).get("db", ["0"])[0]
        else:
            db = (parts.path or "/").strip("/") or "0"
        if not db.isdigit():
            raise ValueError(f"the Redis URL's path must be a database number, not {parts.path!r}")
        # Sent first on every new connection, pipelined with nothing else.
        self._hello: list[tuple] = []
        if parts.password is not None:
            auth = (unquote(parts.username), unquote(parts.password)) if parts.username else (unquote(parts.password),)
            self._hello.append(("AUTH", *auth))
        if db != "0":
            self._hello.append(("SELECT", db))
        self.timeout = timeout
        self._slots: list[_Connection | None] = [None] * max(1, connections)
        self._opening: list[asyncio.Future | None] = [None] * len(self._slots)
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # --- the commands Ingate uses ---------------------------------------------------------------------------

    async def execute(self, *args):
        """One command (str, bytes, int or float arguments); its reply as hiredis gives it (bytes, int, list…)."""
        index = self._next
        self._next = (index + 1) % len(self._slots)
        connection = self._slots[index]
        if connection is None or connection.broken is not None or self._closed:
            connection = await self._connection(index)
        return await connection.send(hiredis.pack_command(args))

    async def get(self, key: str) -> bytes | None:
        return await self.execute("GET", key)

    async def set(self, key: str, value: bytes | str, *, ex: float | None = None) -> None:
        if ex is None:
            await self.execute("SET", key, value)
        else:
            await self.execute("SET", key, value, "PX", max(1, round(ex * 1000)))

    async def delete(self, *keys: str) -> int:
        return await self.execute("DEL", *keys) if keys else 0

    async def evalsha(self, script: Script, keys: Sequence, args: Sequence):
        """Runs `script` by its SHA (one round trip); when Redis does not have it (a restart, SCRIPT FLUSH),
        by its text, which loads it for next time."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.execute("EVAL", script.text, len(keys), *keys, *args)

    async def close(self) -> None:
        self._closed = True
        for index, connection in enumerate(self._slots):
            self._slots[index] = None
            if connection is not None and connection.transport is not None:
                connection._break(RespUnavailable("the client was closed"))

    # --- connections ----------------------------------------------------------------------------------------

    async def _connection(self, index: int) -> _Connection:
        """Slot `index`'s connection, opened anew (it was never opened, or it broke)."""
        if self._closed:
            raise RespUnavailable("the client was closed")
        opening = self._opening[index]
        if opening is None:  # the first caller opens it; the others wait for the same attempt
            opening = self._opening[index] = asyncio.ensure_future(self._open(index))
        try:
            return await asyncio.shield(opening)
        finally:
            if opening.done():
                self._opening[index] = None

    async def _open(self, index: int) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("a Resp client is used on one event loop only")

        def protocol():
            return _Connection(loop, self.timeout)

        if self.socket_path:
            where, connecting = self.socket_path, loop.create_unix_connection(protocol, self.socket_path)
        else:
            where = f"{self.host}:{self.port}"
            connecting = loop.create_connection(protocol, self.host, self.port, ssl=self.ssl)
        try:
            _, connection = await asyncio.wait_for(connecting, self.timeout)
        except (TimeoutError, OSError) as exc:
            raise RespUnavailable(f"cannot connect to Redis at {where} ({exc or 'timed out'})") from exc
        if self._hello:
            replies = [connection.send(hiredis.pack_command(command)) for command in self._hello]
            try:
                await asyncio.gather(*replies)
            except RespError as exc:
                connection._break(RespUnavailable(str(exc)))
                raise RespUnavailable(f"Redis refused the connection's setup: {exc}") from exc
        self._slots[index] = connection
        return connection
