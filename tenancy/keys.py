"""Gateway key format and digests.

A key looks like `sk-ingate-<prefix><secret>`: the 12-character prefix is stored in clear to find the
row and to show which key is which; only an HMAC-SHA256 digest of the whole key is stored, so a
database leak reveals no usable key. The HMAC key derives from SECRET_KEY (and its fallbacks, for rotation).
"""

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from django.conf import settings

KEY_MARKER = "sk-ingate-"
PREFIX_LENGTH = 12
SECRET_LENGTH = 40
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class NewKey:
    plaintext: str
    prefix: str
    digest: str


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def hmac_keys() -> list[bytes]:
    """The HMAC keys in use, newest first. Callers on a hot path compute them once and pass them in."""
    return [
        hashlib.sha256(b"ingate-gateway-key:" + secret.encode()).digest()
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    ]


def digest(plaintext: str, hmac_key: bytes | None = None) -> str:
    return hmac.digest(hmac_key or hmac_keys()[0], plaintext.encode(), "sha256").hex()  # the one-shot C path


def generate() -> NewKey:
    prefix = _random(PREFIX_LENGTH)
    plaintext = f"{KEY_MARKER}{prefix}{_random(SECRET_LENGTH)}"
    return NewKey(plaintext=plaintext, prefix=prefix, digest=digest(plaintext))


def parse_prefix(plaintext: str) -> str | None:
    """The lookup prefix of a well-formed key, or None when the string cannot be a gateway key."""
    if not plaintext.startswith(KEY_MARKER):
        return None
    body = plaintext[len(KEY_MARKER) :]
    if len(body) != PREFIX_LENGTH + SECRET_LENGTH or not body.isalnum() or not body.isascii():
        return None
    return body[:PREFIX_LENGTH]


def matches(plaintext: str, stored_digest: str, hmac_key_list: list[bytes] | None = None) -> bool:
    return any(hmac.compare_digest(digest(plaintext, key), stored_digest) for key in (hmac_key_list or hmac_keys()))


# --- why a presented key is refused -----------------------------------------------------------------------
# Plain strings shared by the management API (tenancy.authentication) and the proxy's cached check
# (proxy.auth), so the hot path imports no DRF and both refuse a key in the same words.

MALFORMED = (
    f"Malformed gateway key: expected {KEY_MARKER} followed by {PREFIX_LENGTH + SECRET_LENGTH} letters and digits."
)
UNKNOWN = "Unknown gateway key."
# The management API's answer to a caller with neither a session nor a key.
AUTHENTICATION_REQUIRED = (
    f"Authentication required: sign in, or send a gateway key as 'Authorization: Bearer {KEY_MARKER}…'."
)
CREATOR_LEFT = (
    "This gateway key was made by someone who is no longer an active member of its organization; "
    "ask an admin for a new key."
)


class KeyRejected(Exception):
    """A presented gateway key cannot be used; `reason` is safe to show (it never contains the key)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def unusable_because(*, revoked: bool, expired: bool, org_active: bool, creator_left: bool = False) -> str | None:
    """Why a known key cannot be used, or None; shared by the API and the proxy's cached check."""
    if revoked:
        return "This gateway key has been revoked."
    if expired:
        return "This gateway key has expired."
    if not org_active:
        return "The organization of this gateway key is deactivated."
    if creator_left:
        return CREATOR_LEFT
    return None
