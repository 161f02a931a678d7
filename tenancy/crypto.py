"""Provider credentials at rest: Fernet with rotation (the first INGATE_ENCRYPTION_KEY encrypts, all decrypt)."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialDecryptError(Exception):
    """The stored secret was encrypted with a key that is no longer configured."""


@cache
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.INGATE_ENCRYPTION_KEYS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialDecryptError(
            "Cannot decrypt a stored provider credential: INGATE_ENCRYPTION_KEY does not include the key it was "
            "encrypted with. Add the old key after the new one (comma-separated) to rotate."
        ) from exc


def hint(secret: str) -> str:
    """What is ever shown of a secret after saving: its first and last few characters."""
    if len(secret) <= 8:
        return "…" + secret[-2:] if len(secret) > 4 else "…"
    return f"{secret[:3]}…{secret[-4:]}"
