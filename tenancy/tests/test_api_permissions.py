"""The permission matrix: each role × each endpoint × own org vs another org → allowed or denied.

The expectations are written out by hand (not derived from `tenancy.permissions`), so a change to the
role table that widens or narrows access makes this test fail.
"""

import pytest

from tenancy.models import Role
from tenancy.tests.factories import MembershipFactory, UserFactory, make_credential

# endpoint -> role -> allowed actions: l(ist) r(etrieve) c(reate) u(pdate) d(elete)
EXPECTED = {
    "teams": {"owner": "lrcud", "admin": "lrcud", "member": "lr", "viewer": "lr"},
    "apps": {"owner": "lrcud", "admin": "lrcud", "member": "lrcu", "viewer": "lr"},
    "memberships": {"owner": "lrcud", "admin": "lrcud", "member": "lr", "viewer": "lr"},
    "team-memberships": {"owner": "lrcd", "admin": "lrcd", "member": "lr", "viewer": "lr"},
    # The target key was made by the system: members change only keys they made (test_grants.py).
    "keys": {"owner": "lrcud", "admin": "lrcud", "member": "lrc", "viewer": "lr"},
    "provider-credentials": {"owner": "lrcud", "admin": "lrcud", "member": "lr", "viewer": "lr"},
    "audit-log": {"owner": "lr", "admin": "lr", "member": "", "viewer": ""},
    "organizations": {"owner": "lrud", "admin": "lru", "member": "lr", "viewer": "lr"},
}
ACTIONS = "lrcud"


def _target(world, tenant, endpoint):
    """The object an endpoint's detail actions work on, and the payloads to create/update one."""
    org = tenant.org
    newcomer = UserFactory(username=f"new-{org.slug}")
    MembershipFactory(org=org, user=newcomer, role=Role.VIEWER)
    if endpoint == "teams":
        return tenant.team, {"org": org.pk, "name": "New team"}, {"name": "Renamed"}
    if endpoint == "apps":
        return tenant.app, {"org": org.pk, "name": "New app"}, {"name": "Renamed"}
    if endpoint == "memberships":
        extra = MembershipFactory(org=org, role=Role.MEMBER)
        return (
            extra,
            {"org": org.pk, "user": UserFactory(username=f"joiner-{org.slug}").username, "role": "member"},
            {"role": "viewer"},
        )
    if endpoint == "team-memberships":
        from tenancy.models import TeamMembership

        extra = TeamMembership.objects.create(team=tenant.team, user=tenant.users["viewer"])
        return extra, {"team": tenant.team.pk, "user": newcomer.username}, None
    if endpoint == "keys":
        return tenant.key, {"app": tenant.app.pk, "name": "k", "scopes": ["proxy"]}, {"name": "Renamed"}
    if endpoint == "provider-credentials":
        cred = make_credential(org)
        return (
            cred,
            {"org": org.pk, "provider": "anthropic", "secret": "sk-ant-xyz"},
            {"base_url": "https://example.com/v1"},
        )
    if endpoint == "audit-log":
        from tenancy.models import AuditLog

        return AuditLog.objects.filter(org=org).first(), None, None
    if endpoint == "organizations":
        return org, None, {"name": "Renamed Org"}
    raise AssertionError(endpoint)


def _do(client, endpoint, action, obj, create, update):
    base = f"/ingate/api/v1/{endpoint}/"
    if action == "l":
        return client.get(base)
    if action == "r":
        return client.get(f"{base}{obj.pk}/")
    if action == "c":
        return client.post(base, create, format="json")
    if action == "u":
        return client.patch(f"{base}{obj.pk}/", update, format="json")
    return client.delete(f"{base}{obj.pk}/")


CASES = [
    (endpoint, role, action)
    for endpoint in EXPECTED
    for role in Role.values
    for action in ACTIONS
    if not (action == "c" and endpoint in ("audit-log", "organizations"))
    and not (action == "u" and endpoint in ("audit-log", "team-memberships"))
    and not (action == "d" and endpoint == "audit-log")
]


@pytest.mark.parametrize("endpoint,role,action", CASES)
def test_role_permissions_in_own_org(world, client_for, endpoint, role, action):
    obj, create, update = _target(world, world.own, endpoint)
    response = _do(client_for(user=world.own.users[role]), endpoint, action, obj, create, update)
    allowed = action in EXPECTED[endpoint][role]
    if allowed:
        assert response.status_code in (200, 201, 204), response.content
        if action == "l":
            ids = {row["id"] for row in response.json()["results"]}
            assert obj.pk in ids
    else:
        assert response.status_code == 403, response.content
        assert response.json()["detail"]


@pytest.mark.parametrize("endpoint,role,action", CASES)
def test_no_role_reaches_another_orgs_objects(world, client_for, endpoint, role, action):
    obj, create, update = _target(world, world.other, endpoint)
    response = _do(client_for(user=world.own.users[role]), endpoint, action, obj, create, update)
    if action == "l":
        if EXPECTED[endpoint][role]:
            assert response.status_code == 200
            assert obj.pk not in {row["id"] for row in response.json()["results"]}
        else:
            assert response.status_code == 403
    elif action == "c":
        # The other org (or its app/team) is not even a valid choice for this caller.
        assert response.status_code == 400, response.content
        assert set(response.json()) & {"org", "app", "team"}
    elif endpoint == "audit-log" and not EXPECTED[endpoint][role]:
        assert response.status_code == 403
    else:
        assert response.status_code == 404, response.content


@pytest.mark.parametrize("endpoint", EXPECTED)
def test_a_user_without_membership_sees_nothing(world, client_for, endpoint):
    obj, _, _ = _target(world, world.own, endpoint)
    client = client_for(user=world.outsider)
    listing = client.get(f"/ingate/api/v1/{endpoint}/")
    if endpoint == "audit-log":
        assert listing.status_code == 403
        return
    assert listing.status_code == 200
    assert listing.json()["results"] == []
    assert client.get(f"/ingate/api/v1/{endpoint}/{obj.pk}/").status_code == 404


@pytest.mark.parametrize("endpoint", EXPECTED)
def test_staff_see_every_org(world, client_for, endpoint):
    own, _, _ = _target(world, world.own, endpoint)
    other, _, _ = _target(world, world.other, endpoint)
    response = client_for(user=world.staff).get(f"/ingate/api/v1/{endpoint}/?limit=500")
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert {own.pk, other.pk} <= ids


def test_an_admin_scoped_key_acts_as_admin_of_its_own_org_only(world, client_for):
    from tenancy.tests.factories import make_key

    _, plaintext = make_key(app=world.own.app, scopes=["admin"])
    client = client_for(key=plaintext)
    listing = client.get("/ingate/api/v1/apps/").json()["results"]
    assert {row["id"] for row in listing} == {world.own.app.pk}
    created = client.post("/ingate/api/v1/teams/", {"org": world.own.org.pk, "name": "By key"}, format="json")
    assert created.status_code == 201
    refused = client.post("/ingate/api/v1/teams/", {"org": world.other.org.pk, "name": "By key"}, format="json")
    assert refused.status_code == 400 and "org" in refused.json()
    assert client.get(f"/ingate/api/v1/apps/{world.other.app.pk}/").status_code == 404


def test_a_key_without_the_admin_scope_is_told_which_scope_is_missing(world, client_for):
    response = client_for(key=world.own.plaintext).get("/ingate/api/v1/teams/")
    assert response.status_code == 403
    assert "'admin' scope" in response.json()["detail"]


def test_a_per_app_grant_lets_a_viewer_manage_that_app_and_its_keys_only(world, client_for):
    from guardian.shortcuts import assign_perm

    from tenancy.tests.factories import AppFactory

    viewer = world.own.users["viewer"]
    sibling = AppFactory(org=world.own.org, slug="sibling")
    assign_perm("tenancy.manage_app", viewer, world.own.app)
    client = client_for(user=viewer)

    assert (
        client.patch(f"/ingate/api/v1/apps/{world.own.app.pk}/", {"name": "Mine now"}, format="json").status_code == 200
    )
    assert client.patch(f"/ingate/api/v1/apps/{sibling.pk}/", {"name": "Not mine"}, format="json").status_code == 403
    made = client.post("/ingate/api/v1/keys/", {"app": world.own.app.pk, "name": "granted"}, format="json")
    assert made.status_code == 201
    denied = client.post("/ingate/api/v1/keys/", {"app": sibling.pk, "name": "nope"}, format="json")
    assert denied.status_code == 403
    assert client.post(f"/ingate/api/v1/keys/{world.own.key.pk}/revoke/").status_code == 200
