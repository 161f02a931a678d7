"""The check a provider path passes before it goes upstream with a provider credential attached: plain
segments only, so a key holder cannot step outside the provider's base URL (`..`, an encoded `/`) or smuggle a
query (`%3F`) into the request the gateway signs with the org's key."""

from __future__ import annotations

import re
from urllib.parse import unquote

from .codes import ErrorCode
from .errors import ProxyError
from .providers import Route

# RFC 3986 unreserved characters plus ':' and '@' (Gemini's `{model}:{verb}`, fine-tuned ids such as
# `ft:gpt-4o-mini:acme::abc`). Every provider path Ingate routes fits in it, and because none of these characters
# needs escaping, the decoded path that was checked is byte for byte the path sent upstream (the upstream client,
# proxy/upstream_client.py, neither re-escapes it nor resolves dot segments). Left out on purpose: '%' (double
# encoding: `%252e` decodes to `%2e`, which the upstream decodes again), ';' (path parameters, which some servers
# strip before routing: `..;/`), '\' (a separator to some servers), spaces, controls and anything non-ASCII.
_SEGMENT = re.compile(r"[A-Za-z0-9._~:@-]*")
# An Azure deployment or a Gemini model named in the path: Azure allows letters, digits, '-', '_' and '.';
# Gemini names look like `gemini-2.5-flash` or `gemini-2.0-flash-001`. Starting with a letter or digit rules out
# '.', '..' and option-looking names.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")

_ALLOWED = "letters, digits and . - _ ~ : @"


def vet(raw_path: bytes | None, route: Route) -> None:
    """Refuse (ProxyError 400 `invalid_path`) a request whose path is not plain segments.

    `raw_path` is the ASGI scope's undecoded path, where an encoded '/' still differs from a separator (None for
    Ingate's own calls, which have no wire form); `route.path` is what would be appended to the upstream base.
    """
    checked = (route.path, route.model)
    if _vetted.get(raw_path) == checked:  # the same few paths over and over: checked once each
        return
    _check(raw_path, route)
    if len(_vetted) >= 4096:
        _vetted.clear()
    _vetted[raw_path] = checked


# Paths that passed: raw path -> (route path, model in the path). Bounded; only what passed gets in.
_vetted: dict[bytes | None, tuple[str, str | None]] = {}


def _check(raw_path: bytes | None, route: Route) -> None:
    if raw_path:
        # Checked per raw segment, decoded: `a%2Fb` is one segment holding a '/', not two segments.
        for segment in raw_path.decode("latin-1").split("/"):
            _check_segment(unquote(segment, errors="replace") if "%" in segment else segment, encoded="%" in segment)
    for segment in route.path.split("/"):
        _check_segment(segment, encoded=False)
    if route.model and not _NAME.fullmatch(route.model):
        what = "deployment" if route.provider == "azure" else "model"
        raise _refusal(
            f"The {what} name {route.model!r} in the path is not allowed: use {_ALLOWED}, starting with a letter or digit."
        )


def _check_segment(segment: str, *, encoded: bool) -> None:
    if _SEGMENT.fullmatch(segment) and segment not in (".", ".."):
        return
    shown = repr(segment)
    if segment in (".", ".."):
        problem = f"has a dot segment ({shown})"
    elif encoded and ("/" in segment or "\\" in segment):
        problem = f"has an encoded slash in the segment {shown}"
    elif "?" in segment or "#" in segment:
        problem = f"has a '?' or '#' inside the segment {shown}: send query parameters in the query string"
    elif "%" in segment:
        problem = f"has a '%' left in the segment {shown} once decoded (encoded twice, or a stray '%')"
    else:
        bad = next(char for char in segment if not _SEGMENT.fullmatch(char))
        problem = f"has the character {bad!r} in the segment {shown}"
    raise _refusal(f"The request path {problem}. Ingate forwards only path segments made of {_ALLOWED}.")


def _refusal(message: str) -> ProxyError:
    return ProxyError(400, ErrorCode.INVALID_PATH, message)
