"""Gateway-key authentication for the management API (the proxy has its own cached path)."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions

from . import keys
from .keys import MALFORMED, UNKNOWN, KeyRejected, unusable_because
from .models import APIKey
from .permissions import Principal, creator_role_subquery, key_creator_left


def key_lookup(plaintext: str) -> APIKey:
    """The usable key row for `plaintext`, or KeyRejected saying why not (malformed, unknown, revoked, expired)."""
    prefix = keys.parse_prefix(plaintext)
    if prefix is None:
        raise KeyRejected(MALFORMED)
    key = (
        APIKey.objects.select_related("org", "app", "created_by")
        .annotate(creator_role=creator_role_subquery())
        .filter(prefix=prefix)
        .first()
    )
    if key is None or not keys.matches(plaintext, key.digest):
        raise KeyRejected(UNKNOWN)
    reason = unusable_because(
        revoked=key.revoked_at is not None,
        expired=key.expires_at is not None and key.expires_at <= timezone.now(),
        org_active=key.org.is_active,
        creator_left=key_creator_left(key),
    )
    if reason:
        raise KeyRejected(reason)
    return key


class GatewayKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer sk-ingate-…` (or `X-Ingate-Key`) for programs using the API."""

    keyword = "Bearer"

    def authenticate(self, request):
        raw = request.META.get("HTTP_X_INGATE_KEY", "")
        if not raw:
            header = authentication.get_authorization_header(request).decode("latin-1")
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            raw = value.strip()
            if not raw:
                raise exceptions.AuthenticationFailed("Empty bearer token.")
        try:
            key = key_lookup(raw)
        except KeyRejected as exc:
            raise exceptions.AuthenticationFailed(exc.reason) from None
        from .services import api_key_mark_used

        api_key_mark_used(key_id=key.pk, last_used_at=key.last_used_at)
        return (None, Principal.for_key(key))

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated calls.
        return 'Bearer realm="ingate"'
