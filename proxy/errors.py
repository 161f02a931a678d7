"""Errors the gateway itself raises on a provider path, in that provider's own error shape, so every SDK
raises its usual exception (openai.AuthenticationError, anthropic.RateLimitError, …)."""

from __future__ import annotations

import json

# What each provider calls an error of a given status.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    504: "upstream_timeout",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    504: "timeout_error",
}
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ProxyError(Exception):
    """A request the gateway answers itself. `code` is a stable machine-readable name (`invalid_gateway_key`, …)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(shape: str, status: int, code: str, message: str) -> bytes:
    if shape == "anthropic":
        body: object = {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    elif shape == "gemini":
        body = {"error": {"code": status, "message": message, "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}}
    elif shape == "ollama":
        body = {"error": message}
    else:
        body = {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(status, "api_error"),
                "param": None,
                "code": code,
            }
        }
    return json.dumps(body).encode()


def error_headers(shape: str, status: int) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json")]
    if status in (401, 403, 400, 404, 413):
        # Retrying cannot fix these. Claude Code and the Anthropic/OpenAI SDKs honour this header; without it
        # they retry a 401 about ten times with backoff before showing the message.
        headers.append((b"x-should-retry", b"false"))
    return headers
