"""Where a webhook may be sent (SSRF): only http(s), and only to public addresses unless the instance allows
private ones (INGATE_WEBHOOK_ALLOW_PRIVATE). A host is resolved and every address it has is checked, when the
endpoint is saved and again at each attempt; the attempt then connects to the address that was checked (the
Host header and TLS name stay the host's), so a DNS answer that changes in between (rebinding) cannot point it
elsewhere."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings


class UnsafeURL(ValueError):
    """The URL may not receive webhooks; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """A checked URL: what to connect to (`connect_url`, the address in place of the host) and the host's name
    for the Host header and TLS (SNI and certificate)."""

    url: str
    connect_url: str
    host: str
    host_header: str


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def _parts(url: str):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"Not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("Webhook URLs must start with http:// or https://.")
    if not parts.hostname:
        raise UnsafeURL("The URL names no host.")
    if parts.username or parts.password:
        raise UnsafeURL("Leave credentials out of the URL; the signature proves where a webhook comes from.")
    return parts, port or (443 if parts.scheme == "https" else 80)


def resolve(url: str, *, allow_private: bool | None = None) -> Target:
    """Check `url` and pick the address to send to. UnsafeURL when it is not http(s), does not resolve, or
    resolves to an address that is not public (while private ones are not allowed)."""
    if allow_private is None:
        allow_private = settings.INGATE_WEBHOOK_ALLOW_PRIVATE
    parts, port = _parts(url)
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"The host {host} does not resolve ({exc}).") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses:
        raise UnsafeURL(f"The host {host} does not resolve.")
    if not allow_private:
        bad = [str(a) for a in addresses if _forbidden(a)]
        if bad:
            raise UnsafeURL(
                f"{host} resolves to {bad[0]}, a private, loopback, link-local or multicast address; webhooks "
                "go to public addresses only (an instance administrator can allow private ones with "
                "INGATE_WEBHOOK_ALLOW_PRIVATE)."
            )
    address = addresses[0]
    shown = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{shown}:{port}"
    connect_url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    default_port = port == (443 if parts.scheme == "https" else 80)
    host_header = parts.hostname if default_port else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # an IPv6 literal
        host_header = f"[{parts.hostname}]" + ("" if default_port else f":{port}")
    return Target(url=url, connect_url=connect_url, host=parts.hostname, host_header=host_header)


def check(url: str) -> None:
    """For forms and serializers: UnsafeURL unless `url` may receive webhooks now."""
    resolve(url)
