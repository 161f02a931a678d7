"""Who may grant what: a principal never grants more than it holds, through a key or through its own membership.

Like test_api_permissions.py, the expectations are written out by hand rather than read from
`tenancy.permissions`, so a change to ROLE_SCOPES or the rank rules makes these tests fail.
"""

import pytest
from guardian.shortcuts import assign_perm

from tenancy import services
from tenancy.audit import Actor
from tenancy.keys import CREATOR_LEFT
from tenancy.models import APIKey, AuditLog, Membership, Role, Scope
from tenancy.permissions import Principal
from tenancy.tests.factories import AppFactory, MembershipFactory, UserFactory, make_key

KEYS = "/ingate/api/v1/keys/"
MEMBERSHIPS = "/ingate/api/v1/memberships/"

# role -> scopes it may put on a key (and keep on its keys at use time)
MAY_HOLD = {
    "viewer": {"proxy", "logs:read", "prompts:read"},
    "member": {"proxy", "logs:read", "prompts:read", "prompts:write", "evals:run", "scores:write"},
    "admin": set(Scope.values),
    "owner": set(Scope.values),
}
RANK = ["viewer", "member", "admin", "owner"]


def _as_user(user):
    return Actor(principal=Principal.for_user(user), via="test")


def _key_of(user, app, scopes):
    """A key `user` made while they held the role that allowed `scopes`."""
    return services.api_key_create(actor=_as_user(user), app=app, name=f"{user.username} key", scopes=scopes)


def _membership(world, role):
    return Membership.objects.get(org=world.own.org, user=world.own.users[role])


# --- escalate through a key: minting ----------------------------------------------------------------


@pytest.mark.parametrize("scope", Scope.values)
@pytest.mark.parametrize("role", ["member", "admin", "owner"])
def test_a_role_mints_keys_only_with_the_scopes_it_holds(world, client_for, role, scope):
    response = client_for(user=world.own.users[role]).post(
        KEYS, {"app": world.own.app.pk, "name": "mine", "scopes": [scope]}, format="json"
    )
    if scope in MAY_HOLD[role]:
        assert response.status_code == 201, response.content
        assert response.json()["scopes"] == [scope]
    else:
        assert response.status_code == 400, response.content
        assert "scopes" in response.json()
        assert f"cannot grant {scope}" in response.json()["scopes"][0]
        assert not APIKey.objects.filter(name="mine").exists()


@pytest.mark.parametrize("scope", Scope.values)
def test_a_viewer_never_mints_keys_without_a_grant(world, client_for, scope):
    response = client_for(user=world.own.users["viewer"]).post(
        KEYS, {"app": world.own.app.pk, "name": "mine", "scopes": [scope]}, format="json"
    )
    assert response.status_code == 403


@pytest.mark.parametrize("scope", Scope.values)
def test_a_manage_app_grantee_mints_keys_in_its_app_capped_by_its_role(world, client_for, scope):
    viewer = world.own.users["viewer"]
    assign_perm("tenancy.manage_app", viewer, world.own.app)
    client = client_for(user=viewer)
    response = client.post(KEYS, {"app": world.own.app.pk, "name": "granted", "scopes": [scope]}, format="json")
    assert response.status_code == (201 if scope in MAY_HOLD["viewer"] else 400), response.content
    sibling = AppFactory(org=world.own.org, slug="sibling")
    assert client.post(KEYS, {"app": sibling.pk, "name": "x", "scopes": ["proxy"]}, format="json").status_code == 403


def test_a_member_cannot_widen_a_key_to_admin_afterwards(world, client_for):
    member = world.own.users["member"]
    key, _ = _key_of(member, world.own.app, ["proxy"])
    response = client_for(user=member).patch(f"{KEYS}{key.pk}/", {"scopes": ["proxy", "admin"]}, format="json")
    assert response.status_code == 400 and "cannot grant admin" in response.json()["scopes"][0]
    key.refresh_from_db()
    assert key.scopes == ["proxy"]


@pytest.mark.parametrize(
    "change",
    [
        lambda client, key: client.patch(f"{KEYS}{key.pk}/", {"scopes": ["proxy"]}, format="json"),
        lambda client, key: client.patch(f"{KEYS}{key.pk}/", {"name": "renamed"}, format="json"),
        lambda client, key: client.post(f"{KEYS}{key.pk}/revoke/"),
    ],
    ids=["narrow", "rename", "revoke"],
)
def test_a_member_changes_only_the_keys_they_made_not_an_admins(world, client_for, change):
    member = world.own.users["member"]
    admins, _ = _key_of(world.own.users["admin"], world.own.app, ["proxy", "admin"])
    own, _ = _key_of(member, world.own.app, ["proxy", "logs:read"])
    client = client_for(user=member)
    refused = change(client, admins)
    assert refused.status_code == 403, refused.content
    assert "change the keys you made" in refused.json()["detail"]
    admins.refresh_from_db()
    assert admins.scopes == ["proxy", "admin"] and admins.name == "own-admin key" and admins.revoked_at is None
    assert change(client, own).status_code == 200


def test_admins_change_any_key_of_their_org_and_app_grantees_the_keys_of_their_app(world, client_for):
    members, _ = _key_of(world.own.users["member"], world.own.app, ["proxy"])
    assert client_for(user=world.own.users["admin"]).post(f"{KEYS}{members.pk}/revoke/").status_code == 200
    admins, _ = _key_of(world.own.users["admin"], world.own.app, ["proxy", "admin"])
    viewer = world.own.users["viewer"]
    assign_perm("tenancy.manage_app", viewer, world.own.app)
    assert client_for(user=viewer).post(f"{KEYS}{admins.pk}/revoke/").status_code == 200


def test_an_admin_cannot_add_admin_to_a_key_its_member_creator_could_never_use(world, client_for):
    key, _ = _key_of(world.own.users["member"], world.own.app, ["proxy"])
    response = client_for(user=world.own.users["admin"]).patch(
        f"{KEYS}{key.pk}/", {"scopes": ["proxy", "admin"]}, format="json"
    )
    assert response.status_code == 400
    assert "made by own-member" in response.json()["scopes"][0]


def test_a_key_cannot_mint_a_key_with_scopes_it_lacks(world, client_for):
    _, plaintext = _key_of(world.own.users["admin"], world.own.app, ["admin"])
    client = client_for(key=plaintext)
    refused = client.post(KEYS, {"app": world.own.app.pk, "name": "wider", "scopes": ["admin", "proxy"]}, format="json")
    assert refused.status_code == 400
    assert "cannot grant proxy" in refused.json()["scopes"][0] and "this key holds" in refused.json()["scopes"][0]
    assert (
        client.post(KEYS, {"app": world.own.app.pk, "name": "same", "scopes": ["admin"]}, format="json").status_code
        == 201
    )


def test_a_key_minted_by_a_key_belongs_to_the_person_behind_it(world, client_for):
    admin = world.own.users["admin"]
    _, plaintext = _key_of(admin, world.own.app, ["admin", "proxy"])
    made = client_for(key=plaintext).post(
        KEYS, {"app": world.own.app.pk, "name": "child", "scopes": ["admin"]}, format="json"
    )
    assert made.status_code == 201 and made.json()["created_by"] == admin.username
    services.membership_update(actor=Actor.system("test"), membership=_membership(world, "admin"), role=Role.MEMBER)
    child = client_for(key=made.json()["key"])
    assert child.get(MEMBERSHIPS).status_code == 403


def test_a_key_made_by_the_system_keeps_its_scopes(world, client_for):
    _, plaintext = make_key(app=world.own.app, scopes=["admin"])  # management command, no creator
    assert client_for(key=plaintext).get("/ingate/api/v1/audit-log/").status_code == 200


def test_a_staff_users_key_keeps_its_scopes_without_a_membership(world, client_for):
    _, plaintext = _key_of(world.staff, world.own.app, ["admin"])
    assert client_for(key=plaintext).get("/ingate/api/v1/audit-log/").status_code == 200


def test_create_gateway_key_keeps_any_scope_for_the_operator(db):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("create_gateway_key", "--org", "cli-org", "--app", "cli-app", "--scopes", "proxy,admin", stdout=out)
    assert APIKey.objects.get(org__slug="cli-org").scopes == ["proxy", "admin"]


# --- escalate through a key: use after a demotion ---------------------------------------------------


def test_an_admin_key_made_before_a_demotion_loses_admin_at_once(world, client_for):
    admin = world.own.users["admin"]
    _, plaintext = _key_of(admin, world.own.app, ["proxy", "admin"])
    client = client_for(key=plaintext)
    assert client.get("/ingate/api/v1/audit-log/").status_code == 200

    services.membership_update(
        actor=_as_user(world.own.users["owner"]), membership=_membership(world, "admin"), role=Role.MEMBER
    )

    own_membership = _membership(world, "admin")
    patched = client.patch(f"{MEMBERSHIPS}{own_membership.pk}/", {"role": "admin"}, format="json")
    assert patched.status_code == 403 and "'admin' scope" in patched.json()["detail"]
    assert client.get("/ingate/api/v1/audit-log/").status_code == 403
    credential = client.post(
        "/ingate/api/v1/provider-credentials/",
        {"org": world.own.org.pk, "provider": "anthropic", "secret": "x"},
        format="json",
    )
    assert credential.status_code == 403
    me = client.get("/ingate/api/v1/me/").json()
    assert me["scopes"] == ["proxy", "admin"] and me["scopes_in_use"] == ["proxy"]
    assert _membership(world, "admin").role == Role.MEMBER


def test_removing_a_member_disables_the_keys_they_made(world, client_for):
    member = world.own.users["member"]
    _, plaintext = _key_of(member, world.own.app, ["proxy", "prompts:read"])
    services.membership_delete(actor=_as_user(world.own.users["owner"]), membership=_membership(world, "member"))
    response = client_for(key=plaintext).get("/ingate/api/v1/me/")
    assert response.status_code == 401 and response.json()["detail"] == CREATOR_LEFT


def test_deactivating_a_user_disables_the_keys_they_made(world, client_for):
    admin = world.own.users["admin"]
    _, plaintext = _key_of(admin, world.own.app, ["admin"])
    admin.is_active = False
    admin.save()
    assert client_for(key=plaintext).get(MEMBERSHIPS).status_code == 401


def test_deleting_a_user_revokes_the_keys_they_made_instead_of_orphaning_them(world, client_for):
    admin = world.own.users["admin"]
    key, plaintext = _key_of(admin, world.own.app, ["admin"])
    admin.delete()
    key.refresh_from_db()
    assert key.revoked_at is not None and key.created_by is None
    assert client_for(key=plaintext).get(MEMBERSHIPS).status_code == 401
    entry = AuditLog.objects.get(action="key_revoke", object_id=str(key.pk))
    assert "own-admin deleted" in entry.changes["reason"]


def test_a_demotion_audits_which_keys_it_narrowed_and_disabled(world):
    admin = world.own.users["admin"]
    wide, _ = _key_of(admin, world.own.app, ["proxy", "admin"])
    plain, _ = _key_of(admin, world.own.app, ["proxy"])
    owner = _as_user(world.own.users["owner"])
    services.membership_update(actor=owner, membership=_membership(world, "admin"), role=Role.MEMBER)
    entry = AuditLog.objects.get(action="keys_narrowed")
    assert entry.org_id == world.own.org.pk and entry.actor == "own-owner"
    assert entry.changes["reason"] == "role admin -> member"
    assert entry.changes["keys"] == [
        {"id": wide.pk, "key": wide.display, "before": ["admin", "proxy"], "after": ["proxy"]}
    ]

    services.membership_delete(actor=owner, membership=_membership(world, "admin"))
    removal = AuditLog.objects.filter(action="keys_narrowed").exclude(pk=entry.pk).get()
    assert removal.changes["reason"] == "removed from the organization"
    assert {k["id"]: k["after"] for k in removal.changes["keys"]} == {wide.pk: [], plain.pk: []}


def test_a_promotion_writes_no_narrowing_entry(world):
    _key_of(world.own.users["member"], world.own.app, ["proxy"])
    services.membership_update(actor=Actor.system("test"), membership=_membership(world, "member"), role=Role.ADMIN)
    assert not AuditLog.objects.filter(action="keys_narrowed").exists()


# --- escalate through my own membership ----------------------------------------------------------------


@pytest.mark.parametrize("role,target", [(r, t) for i, r in enumerate(RANK) for t in RANK[i + 1 :]])
def test_patching_my_own_membership_up_is_refused(world, client_for, role, target):
    mine = _membership(world, role)
    response = client_for(user=world.own.users[role]).patch(f"{MEMBERSHIPS}{mine.pk}/", {"role": target}, format="json")
    assert response.status_code == 403, response.content
    assert _membership(world, role).role == role


def test_an_admin_may_step_down_to_member(world, client_for):
    mine = _membership(world, "admin")
    response = client_for(user=world.own.users["admin"]).patch(
        f"{MEMBERSHIPS}{mine.pk}/", {"role": "member"}, format="json"
    )
    assert response.status_code == 200 and _membership(world, "admin").role == Role.MEMBER


# actor role -> roles it may give a newcomer (members and viewers may not add anyone)
MAY_ADD_AS = {"viewer": set(), "member": set(), "admin": {"viewer", "member", "admin"}, "owner": set(RANK)}


@pytest.mark.parametrize("new_role", RANK)
@pytest.mark.parametrize("role", RANK)
def test_nobody_adds_a_member_with_a_role_above_their_own(world, client_for, role, new_role):
    newcomer = UserFactory(username="newcomer")
    response = client_for(user=world.own.users[role]).post(
        MEMBERSHIPS, {"org": world.own.org.pk, "user": newcomer.username, "role": new_role}, format="json"
    )
    assert response.status_code == (201 if new_role in MAY_ADD_AS[role] else 403), response.content


# actor role -> roles of others it may change or remove (only owners touch someone at or above their rank)
MAY_CHANGE = {"viewer": set(), "member": set(), "admin": {"viewer", "member"}, "owner": set(RANK)}


@pytest.mark.parametrize("target", RANK)
@pytest.mark.parametrize("role", RANK)
def test_only_owners_change_someone_at_or_above_their_rank(world, client_for, role, target):
    other = MembershipFactory(org=world.own.org, role=target, user=UserFactory(username=f"peer-{target}"))
    client = client_for(user=world.own.users[role])
    changed = client.patch(f"{MEMBERSHIPS}{other.pk}/", {"role": "viewer"}, format="json")
    assert changed.status_code == (200 if target in MAY_CHANGE[role] else 403), changed.content
    other.refresh_from_db()
    removed = client.delete(f"{MEMBERSHIPS}{other.pk}/")
    assert removed.status_code == (204 if target in MAY_CHANGE[role] else 403), removed.content


def test_an_admin_key_cannot_make_owners_or_touch_admins(world, client_for):
    _, plaintext = _key_of(world.own.users["admin"], world.own.app, ["admin"])
    client = client_for(key=plaintext)
    member = _membership(world, "member")
    assert client.patch(f"{MEMBERSHIPS}{member.pk}/", {"role": "owner"}, format="json").status_code == 403
    peer = MembershipFactory(org=world.own.org, role=Role.ADMIN)
    assert client.patch(f"{MEMBERSHIPS}{peer.pk}/", {"role": "viewer"}, format="json").status_code == 403
    assert client.patch(f"{MEMBERSHIPS}{member.pk}/", {"role": "admin"}, format="json").status_code == 200


def test_the_last_owner_can_be_neither_demoted_nor_removed(world, client_for):
    owner = world.own.users["owner"]
    mine = _membership(world, "owner")
    client = client_for(user=owner)
    demoted = client.patch(f"{MEMBERSHIPS}{mine.pk}/", {"role": "admin"}, format="json")
    assert demoted.status_code == 400 and "at least one owner" in demoted.json()["role"][0]
    assert client.delete(f"{MEMBERSHIPS}{mine.pk}/").status_code == 400
    MembershipFactory(org=world.own.org, role=Role.OWNER)
    assert client.patch(f"{MEMBERSHIPS}{mine.pk}/", {"role": "admin"}, format="json").status_code == 200


# --- every scope-bearing action, by role and through that role's widest key ----------------------------

# action -> roles whose session may do it
ACTIONS = {
    "read audit log": {"admin", "owner"},
    "add credential": {"admin", "owner"},
    "create team": {"admin", "owner"},
    "create app": {"member", "admin", "owner"},
    "create key": {"member", "admin", "owner"},
    "add membership": {"admin", "owner"},
}


def _act(client, world, action):
    org = world.own.org.pk
    if action == "read audit log":
        return client.get("/ingate/api/v1/audit-log/")
    if action == "add credential":
        return client.post(
            "/ingate/api/v1/provider-credentials/", {"org": org, "provider": "anthropic", "secret": "x"}, format="json"
        )
    if action == "create team":
        return client.post("/ingate/api/v1/teams/", {"org": org, "name": "T"}, format="json")
    if action == "create app":
        return client.post("/ingate/api/v1/apps/", {"org": org, "name": "A"}, format="json")
    if action == "create key":
        return client.post(KEYS, {"app": world.own.app.pk, "name": "k", "scopes": ["proxy"]}, format="json")
    newcomer = UserFactory(username="joiner")
    return client.post(MEMBERSHIPS, {"org": org, "user": newcomer.username, "role": "viewer"}, format="json")


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", RANK)
def test_each_role_does_what_its_session_may(world, client_for, role, action):
    response = _act(client_for(user=world.own.users[role]), world, action)
    assert (response.status_code in (200, 201)) == (role in ACTIONS[action]), response.content


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", RANK)
def test_a_key_made_with_every_scope_a_role_holds_does_no_more_than_its_session(world, client_for, role, action):
    """Escalate through a key: a role's widest key (made while it was admin, then demoted to `role`)."""
    user = world.own.users[role]
    membership = _membership(world, role)
    services.membership_update(actor=Actor.system("test"), membership=membership, role=Role.OWNER)
    _, plaintext = _key_of(user, world.own.app, Scope.values)
    if role != "owner":
        services.membership_update(actor=Actor.system("test"), membership=membership, role=role)
    response = _act(client_for(key=plaintext), world, action)
    may = role in ACTIONS[action] and role in ("admin", "owner")  # a key acts on the org only with `admin`
    assert (response.status_code in (200, 201)) == may, response.content


# --- ?org= of another org -----------------------------------------------------------------------------
# The API's lists: tests/test_permission_matrix.py, for every list endpoint registered there.


@pytest.mark.parametrize(
    "page", ["/ingate/", "/ingate/logs/", "/ingate/sessions/", "/ingate/prompts/", "/ingate/evals/"]
)
def test_another_orgs_slug_on_a_page_is_not_found(world, client_for, page):
    client = client_for(user=world.own.users["owner"])
    assert client.get(f"{page}?org={world.other.org.slug}").status_code == 404
    assert client.get(f"{page}?org={world.own.org.slug}").status_code == 200
