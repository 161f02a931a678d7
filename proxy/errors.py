"""Errors the gateway itself raises on a provider path, in that provider's own error shape (the body comes from
the request's wire format, proxy/formats), so every SDK raises its usual exception (openai.AuthenticationError,
anthropic.RateLimitError, …)."""

from __future__ import annotations


class ProxyError(Exception):
    """A request the gateway answers itself. `code` is a stable machine-readable name (`invalid_gateway_key`, …)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, sent as Retry-After (a route's targets paused, a rate limit)
        self.headers = headers or []  # more response headers (x-ratelimit-*, x-should-retry)


def error_headers(status: int) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json")]
    if status in (401, 403, 400, 404, 413):
        # Retrying cannot fix these. Claude Code and the Anthropic/OpenAI SDKs honour this header; without it
        # they retry a 401 about ten times with backoff before showing the message.
        headers.append((b"x-should-retry", b"false"))
    return headers
