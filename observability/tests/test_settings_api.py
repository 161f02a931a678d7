"""Org admins set body keeping, retention and their own model prices through the API; others only read."""

import pytest

from observability.models import ObservabilitySettings, PriceOverride
from tenancy.models import AuditLog

SETTINGS = "/ingate/api/v1/observability-settings/"
PRICES = "/ingate/api/v1/price-overrides/"


def test_an_admin_sets_and_changes_the_orgs_observability_settings(client_for, world):
    admin = client_for(user=world.own.users["admin"])
    created = admin.post(
        SETTINGS,
        {"org": world.own.org.pk, "body_mode": "full", "body_max_bytes": 4096, "retention_days": 14},
        format="json",
    )
    assert created.status_code == 201, created.json()
    changed = admin.patch(f"{SETTINGS}{world.own.org.pk}/", {"retention_days": 90}, format="json")
    assert changed.status_code == 200 and changed.json()["retention_days"] == 90
    row = ObservabilitySettings.objects.get(org=world.own.org)
    assert (row.body_mode, row.body_max_bytes, row.retention_days) == ("full", 4096, 90)
    assert AuditLog.objects.filter(object_type__icontains="observabilitysettings").count() == 2


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_viewers_and_members_read_settings_but_cannot_change_them(client_for, world, role):
    ObservabilitySettings.objects.create(org=world.own.org)
    api = client_for(user=world.own.users[role])
    assert api.get(SETTINGS).json()["results"][0]["body_mode"] == "metadata"
    refused = api.post(SETTINGS, {"org": world.own.org.pk, "body_mode": "full"}, format="json")
    assert refused.status_code == 403
    assert (
        api.post(
            PRICES,
            {"org": world.own.org.pk, "model": "m", "input_per_mtok": "1", "output_per_mtok": "2"},
            format="json",
        ).status_code
        == 403
    )


def test_bad_settings_get_field_errors(client_for, world):
    admin = client_for(user=world.own.users["admin"])
    reply = admin.post(
        SETTINGS, {"org": world.own.org.pk, "body_mode": "everything", "retention_days": 0}, format="json"
    )
    assert reply.status_code == 400 and {"body_mode", "retention_days"} <= set(reply.json())


def test_price_overrides_are_per_org_unique_by_model_and_audited(client_for, world):
    admin = client_for(user=world.own.users["admin"])
    body = {
        "org": world.own.org.pk,
        "model": "ft:gpt-4o-mini:acme::x",
        "input_per_mtok": "0.30",
        "output_per_mtok": "1.20",
    }
    assert admin.post(PRICES, body, format="json").status_code == 201
    duplicate = admin.post(PRICES, body, format="json")
    assert duplicate.status_code == 400
    other = client_for(user=world.other.users["admin"])
    assert other.get(PRICES).json()["results"] == []
    refused = other.post(PRICES, {**body, "org": world.own.org.pk}, format="json")
    assert refused.status_code == 400 and "org" in refused.json()  # another org's id reads as unknown
    assert PriceOverride.objects.count() == 1
    assert AuditLog.objects.filter(action="create", object_type__icontains="priceoverride").count() == 1
