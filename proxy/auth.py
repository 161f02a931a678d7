"""Gateway-key checks on the hot path: resolved from an in-process cache (unknown keys too), read from the
database only on a miss, and dropped from the cache the moment a key changes (see invalidation.py)."""

from __future__ import annotations

import datetime
import hashlib
import logging
import time
from dataclasses import dataclass

from tenancy import keys, selectors, services
from tenancy.keys import MALFORMED, UNKNOWN, unusable_because
from tenancy.permissions import scopes_of_creator

from .cache import LoadingCache
from .codes import ErrorCode
from .db import DatabaseThreads
from .errors import ProxyError

log = logging.getLogger(__name__)

PROXY_SCOPE = "proxy"
_VERIFIED_MAX = 10_000  # keys remembered as checked; past that the memory starts over


@dataclass(frozen=True, slots=True)
class GatewayKey:
    id: int
    prefix: str
    digest: str
    org_id: int
    org_slug: str
    org_active: bool
    app_id: int
    team_id: int | None
    scopes: frozenset[str]  # in use: the key's own, narrowed to what its creator may hold now
    expires_at: float | None  # epoch seconds
    revoked: bool
    creator_id: int | None
    creator_left: bool  # made by someone no longer an active member of the org: unusable

    @classmethod
    def from_row(cls, row: dict) -> GatewayKey:
        expires = row["expires_at"]
        # The creator's standing is read with the key, so narrowing costs nothing per request; a change of
        # their membership drops the cached key (tenancy/signals.py).
        cap = scopes_of_creator(
            has_creator=row["created_by_id"] is not None,
            active=bool(row["created_by__is_active"]),
            staff=bool(row["created_by__is_staff"]),
            role=row["creator_role"],
        )
        own = frozenset(row["scopes"])
        return cls(
            id=row["id"],
            prefix=row["prefix"],
            digest=row["digest"],
            org_id=row["org_id"],
            org_slug=row["org__slug"],
            org_active=row["org__is_active"],
            app_id=row["app_id"],
            team_id=row["app__team_id"],
            scopes=own if cap is None else own & cap,
            expires_at=expires.timestamp() if expires else None,
            revoked=row["revoked_at"] is not None,
            creator_id=row["created_by_id"],
            creator_left=cap == frozenset(),
        )


def _unauthorized(message: str) -> ProxyError:
    return ProxyError(401, ErrorCode.INVALID_GATEWAY_KEY, message)


class KeyCache:
    def __init__(
        self,
        db: DatabaseThreads,
        *,
        ttl: float,
        miss_ttl: float,
        touch_interval: float,
    ):
        self._db = db
        self._touch_interval = touch_interval
        self._hmac_keys = keys.hmac_keys()  # settings are fixed for the life of the process
        self._cache: LoadingCache[str, GatewayKey] = LoadingCache(self._fetch, ttl=ttl, miss_ttl=miss_ttl)
        self._touched: dict[int, float] = {}
        # Keys already checked against their stored HMAC, by a SHA-256 of the plaintext (never the plaintext):
        # OpenSSL's HMAC releases the GIL, so checking it on every request handed the GIL to the record writer
        # and waited for it back. An entry counts only while it names the digest the cached key still has.
        self._verified: dict[bytes, str] = {}

    async def resolve(self, plaintext: str) -> GatewayKey:
        """The usable key for `plaintext`, or ProxyError 401/403 saying why not (never echoing the key)."""
        prefix = keys.parse_prefix(plaintext)
        if prefix is None:
            raise _unauthorized(MALFORMED)
        key = await self._cache.get(prefix)
        if key is None or not self._matches(plaintext, key):
            raise _unauthorized(UNKNOWN)
        reason = unusable_because(
            revoked=key.revoked,
            expired=key.expires_at is not None and key.expires_at <= time.time(),
            org_active=key.org_active,
            creator_left=key.creator_left,
        )
        if reason:
            raise _unauthorized(reason)
        if PROXY_SCOPE not in key.scopes:
            raise ProxyError(
                403,
                ErrorCode.MISSING_SCOPE,
                "This gateway key lacks the 'proxy' scope needed to call providers through Ingate.",
            )
        self._touch(key.id, time.monotonic())
        return key

    def _matches(self, plaintext: str, key: GatewayKey) -> bool:
        fingerprint = hashlib.sha256(plaintext.encode()).digest()  # under 2 KB: hashed holding the GIL
        if self._verified.get(fingerprint) == key.digest:
            return True
        if not keys.matches(plaintext, key.digest, self._hmac_keys):
            return False
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[fingerprint] = key.digest
        return True

    async def _fetch(self, prefix: str) -> GatewayKey | None:
        row = await self._db.run(selectors.gateway_key_by_prefix, prefix)
        return GatewayKey.from_row(row) if row else None

    # last-used stamps, off the request path

    def _touch(self, key_id: int, now: float) -> None:
        last = self._touched.get(key_id)
        if last is not None and now - last < self._touch_interval:
            return
        self._touched[key_id] = now
        at = datetime.datetime.now(datetime.UTC)
        self._db.submit(services.api_key_mark_used, key_id=key_id, at=at).add_done_callback(_log_failure)

    # invalidation

    def invalidate(self, *, prefix: str | None = None, org_id: int | None = None) -> None:
        """Forget one key, every key of an org, or (with no argument) everything."""
        if prefix is not None:
            self._cache.invalidate(prefix)
        elif org_id is not None:
            self._cache.invalidate(where=lambda key: key.org_id == org_id)
        else:
            self._cache.invalidate()


def _log_failure(future) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("Could not record a gateway key's last use: %s", exc)
