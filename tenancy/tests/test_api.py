"""The tenancy API as a team uses it: create things in their org, keys shown once, secrets write-only."""

import pytest
from django.db import connection

from tenancy.models import APIKey, AuditLog, ProviderCredential
from tenancy.tests.factories import stored_secret


@pytest.fixture
def admin_client(world, client_for):
    return client_for(user=world.own.users["admin"])


def test_an_org_admin_builds_a_team_app_member_and_key_through_the_api(world, admin_client):
    org = world.own.org.pk
    team = admin_client.post("/ingate/api/v1/teams/", {"org": org, "name": "Search"}, format="json")
    assert team.status_code == 201 and team.json()["slug"] == "search"
    app = admin_client.post(
        "/ingate/api/v1/apps/", {"org": org, "name": "Ranker", "team": team.json()["id"]}, format="json"
    )
    assert app.status_code == 201
    member = admin_client.post(
        "/ingate/api/v1/memberships/", {"org": org, "user": "outsider", "role": "member"}, format="json"
    )
    assert member.status_code == 201
    key = admin_client.post(
        "/ingate/api/v1/keys/", {"app": app.json()["id"], "name": "ci", "scopes": ["proxy"]}, format="json"
    )
    assert key.status_code == 201
    plaintext = key.json()["key"]
    assert plaintext.startswith("sk-ingate-")
    # The key is never returned again.
    detail = admin_client.get(f"/ingate/api/v1/keys/{key.json()['id']}/")
    assert "key" not in detail.json() and plaintext not in detail.content.decode()
    listing = admin_client.get("/ingate/api/v1/keys/")
    assert plaintext not in listing.content.decode()
    # Every step is in the audit log, attributed to the admin, via the API.
    actions = list(
        AuditLog.objects.filter(actor_user=world.own.users["admin"], via="api").values_list("action", flat=True)
    )
    assert actions.count("create") == 3 and "key_create" in actions


def test_revoking_a_key_through_the_api_stops_it_working(world, admin_client, client_for):
    response = admin_client.post(f"/ingate/api/v1/keys/{world.own.key.pk}/revoke/")
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert client_for(key=world.own.plaintext).get("/ingate/api/v1/me/").status_code == 401


def test_a_provider_secret_is_write_only_and_encrypted_at_rest(world, admin_client):
    created = admin_client.post(
        "/ingate/api/v1/provider-credentials/",
        {"org": world.own.org.pk, "provider": "openai", "secret": "sk-proj-supersecretvalue1234"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert "secret" not in body and body["secret_hint"] == "sk-…1234"
    assert (
        "supersecretvalue"
        not in admin_client.get(f"/ingate/api/v1/provider-credentials/{body['id']}/").content.decode()
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM tenancy_providercredential WHERE id = %s", [body["id"]])
        (stored,) = cursor.fetchone()
    assert stored and "supersecretvalue" not in stored
    credential = ProviderCredential.objects.get(pk=body["id"])
    assert stored_secret(credential) == "sk-proj-supersecretvalue1234"
    # Updating other fields keeps the secret; a new secret replaces it.
    admin_client.patch(
        f"/ingate/api/v1/provider-credentials/{body['id']}/",
        {"base_url": "https://proxy.example.com/v1"},
        format="json",
    )
    credential.refresh_from_db()
    assert stored_secret(credential) == "sk-proj-supersecretvalue1234"
    admin_client.patch(
        f"/ingate/api/v1/provider-credentials/{body['id']}/", {"secret": "sk-proj-rotated9999"}, format="json"
    )
    credential.refresh_from_db()
    assert stored_secret(credential) == "sk-proj-rotated9999"
    audit = str(
        list(AuditLog.objects.filter(object_type="tenancy.ProviderCredential").values_list("changes", flat=True))
    )
    assert "supersecretvalue" not in audit and "rotated9999" not in audit


@pytest.mark.parametrize(
    "endpoint,payload,field",
    [
        ("teams", {"name": "No org"}, "org"),
        ("apps", {"org": "not-a-number", "name": "x"}, "org"),
        ("memberships", {"org": 0, "user": "nobody-here", "role": "member"}, "user"),
        ("memberships", {"role": "emperor"}, "role"),
        ("keys", {"name": "k", "scopes": ["proxy", "root"]}, "scopes"),
        ("provider-credentials", {"provider": "openai"}, "secret"),
        ("provider-credentials", {"provider": "azure", "secret": "x"}, "base_url"),
        ("provider-credentials", {"provider": "openai_compatible", "name": "my-llm", "secret": "x"}, "base_url"),
        ("provider-credentials", {"provider": "skynet", "secret": "x"}, "provider"),
    ],
)
def test_invalid_payloads_get_field_errors_not_500(world, admin_client, endpoint, payload, field):
    payload = dict(payload)
    if endpoint in ("provider-credentials", "memberships") and payload.get("org") != 0:
        payload.setdefault("org", world.own.org.pk)
    if endpoint == "keys":
        payload["app"] = world.own.app.pk
    response = admin_client.post(f"/ingate/api/v1/{endpoint}/", payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()


def test_a_duplicate_slug_is_a_field_error(world, admin_client):
    response = admin_client.post(
        "/ingate/api/v1/apps/", {"org": world.own.org.pk, "name": "x", "slug": world.own.app.slug}, format="json"
    )
    assert response.status_code == 400
    assert "already exists" in str(response.json())


def test_an_admin_cannot_grant_the_owner_role_but_an_owner_can(world, client_for):
    payload = {"org": world.own.org.pk, "user": "outsider", "role": "owner"}
    refused = client_for(user=world.own.users["admin"]).post("/ingate/api/v1/memberships/", payload, format="json")
    assert refused.status_code == 403 and "owner" in refused.json()["detail"]
    granted = client_for(user=world.own.users["owner"]).post("/ingate/api/v1/memberships/", payload, format="json")
    assert granted.status_code == 201


def test_the_last_owner_cannot_step_down(world, client_for):
    from tenancy.models import Membership

    owner = world.own.users["owner"]
    membership = Membership.objects.get(org=world.own.org, user=owner)
    response = client_for(user=owner).patch(
        f"/ingate/api/v1/memberships/{membership.pk}/", {"role": "admin"}, format="json"
    )
    assert response.status_code == 400 and "at least one owner" in str(response.json())


def test_lists_paginate_and_filter(world, admin_client):
    for n in range(3):
        admin_client.post("/ingate/api/v1/apps/", {"org": world.own.org.pk, "name": f"Bulk {n}"}, format="json")
    page = admin_client.get("/ingate/api/v1/apps/?limit=2").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    filtered = admin_client.get(f"/ingate/api/v1/apps/?team={world.own.team.pk}").json()
    assert [row["id"] for row in filtered["results"]] == [world.own.app.pk]
    searched = admin_client.get("/ingate/api/v1/apps/?search=Bulk 1").json()
    assert [row["name"] for row in searched["results"]] == ["Bulk 1"]


def test_org_admins_read_their_orgs_audit_log_with_ip(world, admin_client):
    admin_client.post(
        "/ingate/api/v1/teams/", {"org": world.own.org.pk, "name": "Audited"}, format="json", REMOTE_ADDR="10.1.2.3"
    )
    entries = admin_client.get("/ingate/api/v1/audit-log/?action=create").json()["results"]
    mine = [e for e in entries if e["object_repr"].endswith("/audited")]
    assert mine and mine[0]["ip"] == "10.1.2.3" and mine[0]["actor_user"] == world.own.users["admin"].username
    assert all(e["org"] == world.own.org.pk for e in entries)


def test_the_openapi_schema_and_docs_page_are_served(api):
    schema = api.get("/ingate/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/ingate/api/v1/keys/{id}/revoke/" in paths and "/ingate/api/v1/provider-credentials/" in paths
    docs = api.get("/ingate/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn." not in docs.content  # served from vendored static files


def test_anonymous_calls_get_401_with_a_hint(api, db):
    response = api.get("/ingate/api/v1/apps/")
    assert response.status_code == 401
    assert "gateway key" in response.json()["detail"]


def test_key_creation_by_a_member_is_recorded_as_created_by_them(world, client_for):
    member = world.own.users["member"]
    response = client_for(user=member).post(
        "/ingate/api/v1/keys/", {"app": world.own.app.pk, "name": "mine"}, format="json"
    )
    assert response.status_code == 201 and response.json()["created_by"] == member.username
    assert APIKey.objects.get(pk=response.json()["id"]).scopes == ["proxy"]
