"""One pass over a request's headers: find the gateway key wherever the client's SDK put it, and build the
headers the upstream gets (the client's own, minus hop-by-hop, gateway and key headers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from tenancy.keys import KEY_MARKER

from .providers import AUTH_HEADERS

# RFC 9110 §7.6.1 connection-specific headers, plus those the relay recomputes (host, content-length).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)
# Where SDKs put their key: the headers of the auth styles (OpenAI/Ollama/compatible Bearer, Anthropic, Azure, Gemini).
KEY_HEADERS = tuple(header.encode() for header in AUTH_HEADERS.values())
_MARKER = KEY_MARKER.encode()
# Compressions the gateway can read on the side (for usage) while relaying them untouched.
_READABLE_ENCODINGS = ("gzip", "deflate", "identity")


def _key_of(name: bytes, value: bytes) -> bytes:
    if name == b"authorization":
        scheme, _, token = value.partition(b" ")
        return token.strip() if scheme.lower() == b"bearer" else value
    return value.strip()


def readable_accept_encoding(value: str) -> str:
    """`gzip, br, zstd` -> `gzip`: ask the upstream only for what the gateway can also decode."""
    kept = []
    for part in value.split(","):
        coding = part.split(";", 1)[0].strip().lower()
        if coding in _READABLE_ENCODINGS:
            kept.append(part.strip())
    return ", ".join(kept)


# What the one pass does with a header, by name (one dict lookup each; everything else is forwarded as is).
_KEY, _HOP, _ENCODING, _CONTENT_TYPE, _ANTHROPIC_VERSION, _ATTRIBUTION = range(6)
_ACTIONS = {
    **{name: _KEY for name in KEY_HEADERS},
    **{name: _HOP for name in HOP_BY_HOP},
    b"accept-encoding": _ENCODING,
    b"content-type": _CONTENT_TYPE,
    b"anthropic-version": _ANTHROPIC_VERSION,
    b"user-agent": _ATTRIBUTION,
    b"session-id": _ATTRIBUTION,
}
_readable_encodings: dict[bytes, bytes] = {}  # Accept-Encoding values seen -> what the gateway asks for instead


def _readable(value: bytes) -> bytes:
    found = _readable_encodings.get(value)
    if found is None:
        found = readable_accept_encoding(value.decode("latin-1")).encode("latin-1")
        if len(_readable_encodings) < 1000:
            _readable_encodings[value] = found
    return found


@dataclass(slots=True)
class Incoming:
    """What the proxy needs from the request headers, gathered in one loop."""

    forward: list[tuple[bytes, bytes]] = field(default_factory=list)  # to the upstream, as received
    keys: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)  # key header -> (key, header value)
    ingate: dict[bytes, bytes] = field(default_factory=dict)  # x-ingate-* headers (never forwarded)
    content_length: int | None = None
    content_type: str = ""
    anthropic_version: bool = False
    # What agents already send that attributes a request: user-agent, Codex's session-id, x-<vendor>-session-id.
    attribution: dict[str, str] = field(default_factory=dict)

    @classmethod
    def scan(cls, raw: list[tuple[bytes, bytes]]) -> Incoming:
        self = cls()
        forward = self.forward
        actions = _ACTIONS
        for name, value in raw:
            action = actions.get(name)
            if action is None:
                if name.startswith(b"x-ingate-"):
                    self.ingate[name] = value
                    continue
                if name.endswith(b"-session-id"):
                    self.attribution[name.decode("latin-1")] = value.decode("latin-1")
                forward.append((name, value))
            elif action == _KEY:
                self.keys[name] = (_key_of(name, value), value)
            elif action == _HOP:
                if name == b"content-length" and value.isdigit():
                    self.content_length = int(value)
            elif action == _ENCODING:
                readable = _readable(value)
                if readable:
                    forward.append((name, readable))
            else:
                if action == _CONTENT_TYPE:
                    self.content_type = value.decode("latin-1")
                elif action == _ANTHROPIC_VERSION:
                    self.anthropic_version = True
                else:
                    self.attribution[name.decode("latin-1")] = value.decode("latin-1")
                forward.append((name, value))
        return self

    def provider_header(self) -> str | None:
        value = self.ingate.get(b"x-ingate-provider")
        return value.decode("latin-1") if value else None

    def gateway_key(self, query_key: str | None) -> tuple[str | None, bool]:
        """(the gateway key, whether the client's own provider key goes through instead of a stored one).

        The gateway key is `X-Ingate-Key`, or whichever key header (or Gemini's `?key=`) holds an Ingate key.
        Any other key the client sent is its own provider key, forwarded as is (pass-through).
        """
        explicit = self.ingate.get(b"x-ingate-key")
        found = explicit.strip() if explicit else None
        own_key = False
        for value, _ in self.keys.values():
            if value.startswith(_MARKER):
                found = found or value
            elif value:
                own_key = True
        if query_key:
            if query_key.startswith(KEY_MARKER):
                found = found or query_key.encode()
            else:
                own_key = True
        return (found.decode("latin-1") if found else None), own_key

    def upstream_headers(
        self, auth: tuple[tuple[bytes, bytes], ...], passthrough: bool, *, identity: bool = False
    ) -> list[tuple[bytes, bytes]]:
        """The forwarded headers plus either the client's own key headers or the stored credential.
        `identity`: ask for an uncompressed answer (the gateway must edit the stream it relays)."""
        headers = [h for h in self.forward if h[0] != b"accept-encoding"] if identity else list(self.forward)
        if passthrough:
            for name, (key, value) in self.keys.items():
                if not key.startswith(_MARKER):  # a gateway key never reaches an upstream
                    headers.append((name, value))
        else:
            headers.extend(auth)
        return headers


def split_query(query: bytes) -> tuple[str, str | None]:
    """(query string to forward, the `key` parameter). A gateway key in `?key=` is removed; a provider key stays."""
    if not query:
        return "", None
    text = query.decode("latin-1")
    if "key=" not in text:
        return text, None
    pairs = parse_qsl(text, keep_blank_values=True)
    key = next((value for name, value in pairs if name == "key"), None)
    if key is not None and key.startswith(KEY_MARKER):
        return urlencode([(n, v) for n, v in pairs if n != "key"]), key
    return text, key
