"""A routed request's attempt loop (see retry.py's docstring for the contract with `Plan` and `Health`).

Nothing goes to the client until an attempt is chosen: a failing target's answer is read (error bodies are
small) and kept, so that when no attempt is left the client gets the last real answer, in its own format. A
stream is chosen at its first byte (or, with the route's first-byte limit, once one arrived in time), so a
stream is never spliced with another provider's answer."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..codes import ErrorCode
from ..errors import ProxyError
from ..upstream_client import UpstreamError
from .retry import Exhausted, counts_against_health, should_move_on

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..relay import ProxyApp
    from .stage import Leg

_STREAM_TYPES = ("text/event-stream", "application/x-ndjson")
_ERROR_BODY_LIMIT = 1 << 20


class Buffered:
    """An answer already read whole (a failed attempt's, kept in case it is the last): the parts of
    `upstream_client.Response` the relay reads."""

    def __init__(self, response, body: bytes):
        self.status = response.status
        self.raw_headers = response.raw_headers
        self.content_type = response.content_type
        self.content_encoding = response.content_encoding
        self.content_length = len(body)
        self._body = body

    async def read(self) -> bytes:
        return self._body

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        body, self._body = self._body, b""
        if not body:
            raise StopAsyncIteration
        return body

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def _combined(routed, error: ProxyError) -> ProxyError:
    """When no target could even be asked for want of a credential, one 401 naming each of them."""
    if error.code != ErrorCode.MISSING_CREDENTIAL or len(routed.attempts) < 2:
        return error
    if any(attempt["error_code"] != ErrorCode.MISSING_CREDENTIAL for attempt in routed.attempts):
        return error
    named = "; ".join(f"{a['provider']}/{a['model']}: {a['error']}" for a in routed.attempts)
    return ProxyError(
        401, ErrorCode.MISSING_CREDENTIAL, f"No target of the route '{routed.name}' has a credential. {named}"
    )


def _kind(error: ProxyError) -> str:
    return "timeout" if error.code == ErrorCode.UPSTREAM_TIMEOUT else "connect"


async def routing_attempts(app: ProxyApp, ex: Exchange):
    """(answer, leg) of the attempt the client gets."""
    routed, record = ex.routed, ex.record
    plan, health = routed.plan, app.health
    record.overhead_ms = (time.perf_counter() - ex.started) * 1000
    while True:
        try:
            attempt = plan.next()
        except Exhausted as exc:
            if isinstance(exc.error, tuple):
                answer, leg = exc.error  # the last answer: relayed as the provider sent it (in the client's format)
                routed.chose(leg, record)
                return answer, leg
            if isinstance(exc.error, ProxyError):
                raise _combined(routed, exc.error) from None
            raise ProxyError(
                503,
                ErrorCode.ROUTE_UNAVAILABLE,
                f"The route '{routed.name}' has no target to try: {exc.message}.",
                retry_after=exc.retry_after,
            ) from None
        if attempt.probe and not await health.claim_probe(attempt.key):
            plan.release(attempt)
            continue
        if attempt.delay:
            await asyncio.sleep(attempt.delay)
        sent = time.perf_counter()
        try:
            leg = routed.leg(ex, attempt)
        except ProxyError as exc:
            # This target cannot take the request (no credential, a parameter its format cannot say): next one.
            routed.note(attempt, status=exc.status, error=exc.message, ms=0.0, code=exc.code)
            plan.failed(attempt, status=exc.status, error=exc)
            continue
        try:
            if attempt.timeout != float("inf"):
                async with asyncio.timeout(attempt.timeout):
                    response = await app._open(ex, leg.upstream.name, leg.url, leg.headers, leg.body)
            else:
                response = await app._open(ex, leg.upstream.name, leg.url, leg.headers, leg.body)
        except TimeoutError:
            error = ProxyError(
                504, ErrorCode.UPSTREAM_TIMEOUT, f"The route '{routed.name}' reached its deadline at {leg.label}."
            )
            health.record_failure(attempt.key, "timeout")
            routed.note(attempt, status=504, error=error.message, ms=(time.perf_counter() - sent) * 1000)
            plan.failed(attempt, error_kind="timeout", error=error)
            continue
        except ProxyError as exc:
            kind = _kind(exc)
            health.record_failure(attempt.key, kind)
            routed.note(attempt, status=exc.status, error=exc.message, ms=(time.perf_counter() - sent) * 1000)
            plan.failed(attempt, error_kind=kind, error=exc)
            continue
        status = response.status
        upstream_ms = (time.perf_counter() - sent) * 1000
        if should_move_on(status, None, routed.retry_on):
            try:
                body = await response.read() if (response.content_length or 0) <= _ERROR_BODY_LIMIT else b""
            except UpstreamError:
                body = b""
            finally:
                response.close() if not response.finished else response.release()
            if counts_against_health(status, None):
                health.record_failure(attempt.key, "status", status=status)
            error_type, message = leg.fmt.read_error(body, response.content_encoding)
            routed.note(attempt, status=status, error=message or error_type or f"HTTP {status}", ms=upstream_ms)
            plan.failed(attempt, status=status, headers=response.raw_headers, error=(Buffered(response, body), leg))
            continue
        limit = routed.first_byte_timeout
        if limit and status < 400 and response.content_type.startswith(_STREAM_TYPES):
            try:
                async with asyncio.timeout(limit):
                    first = await response.chunk()
            except (TimeoutError, UpstreamError):
                response.close()
                health.record_failure(attempt.key, "first_byte_timeout")
                error = ProxyError(
                    504,
                    ErrorCode.UPSTREAM_TIMEOUT,
                    f"The upstream {leg.upstream.name} sent no stream byte within the route's {limit:g}s.",
                )
                routed.note(attempt, status=504, error=error.message, ms=(time.perf_counter() - sent) * 1000)
                plan.failed(attempt, error_kind="first_byte_timeout", error=error)
                continue
            response.push_back(first)
        health.record_success(attempt.key, upstream_ms)
        routed.note(attempt, status=status, error="", ms=upstream_ms)
        record.upstream_ms = upstream_ms
        routed.chose(leg, record)
        return response, leg


__all__ = ["Buffered", "Leg", "routing_attempts"]
