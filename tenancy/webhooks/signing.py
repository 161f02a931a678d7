"""Standard Webhooks signing (the `standardwebhooks` library): secrets `whsec_<base64 of 32 random bytes>`,
signatures `v1,<base64 HMAC-SHA256 of id.timestamp.body>`. While a rotated-out secret is still valid, each
message carries both signatures (space-separated), so a receiver holding either verifies it."""

from __future__ import annotations

import base64
import datetime
import secrets

from standardwebhooks import Webhook

from .. import crypto


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def active_secrets(endpoint, now: datetime.datetime) -> list[str]:
    """The endpoint's current secret, then the previous one while its overlap lasts."""
    found = [crypto.decrypt(endpoint.secret_encrypted)]
    if endpoint.previous_secret_encrypted and endpoint.previous_expires_at and endpoint.previous_expires_at > now:
        found.append(crypto.decrypt(endpoint.previous_secret_encrypted))
    return found


def headers(secrets_: list[str], msg_id: str, at: datetime.datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` sent at `at`."""
    at = at.astimezone(datetime.UTC)
    signature = " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }
