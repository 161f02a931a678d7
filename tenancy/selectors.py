"""Reads the proxy needs, returned as plain data (the proxy never holds model instances)."""

from __future__ import annotations

from typing import Any

from . import crypto
from .models import APIKey, ProviderCredential
from .permissions import creator_role_subquery


def gateway_key_by_prefix(prefix: str) -> dict[str, Any] | None:
    """The key row for a prefix with what the proxy checks (org state, app, team, and its creator's standing
    in the org: the proxy narrows the key's scopes to it, see `tenancy.permissions.scopes_of_creator`), or None."""
    return (
        APIKey.objects.filter(prefix=prefix)
        .annotate(creator_role=creator_role_subquery())
        .values(
            "id",
            "prefix",
            "digest",
            "scopes",
            "expires_at",
            "revoked_at",
            "org_id",
            "app_id",
            "app__team_id",
            "org__slug",
            "org__is_active",
            "created_by_id",
            "created_by__is_active",
            "created_by__is_staff",
            "creator_role",
        )
        .first()
    )


def provider_credentials_of(org_id: int) -> list[dict[str, Any]]:
    """Every provider credential of an org, secrets decrypted. For the proxy's in-memory cache only."""
    rows = list(
        ProviderCredential.objects.filter(org_id=org_id).values(
            "name", "provider", "base_url", "api_version", "auth_style", "secret_encrypted"
        )
    )
    for row in rows:
        token = row.pop("secret_encrypted")
        row["secret"] = crypto.decrypt(token) if token else ""
    return rows
