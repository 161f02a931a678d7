"""Every write to tenancy objects. Each one validates, saves and writes its audit entry in one transaction."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model, Q
from django.utils import timezone
from django.utils.text import slugify

from proxy.providers import REGISTRY

from . import crypto, keys
from .audit import Actor, audit_record, diff, snapshot
from .models import (
    APIKey,
    App,
    AuthStyle,
    Membership,
    Organization,
    ProviderCredential,
    Role,
    Scope,
    Team,
    TeamMembership,
)
from .permissions import (
    ROLE_RANK,
    creator_role,
    creator_role_subquery,
    grantable_scopes,
    grants_app,
    key_scopes_in_use,
    role_in,
    scopes_of_creator,
)
from .webhooks import sources as webhook_sources

User = get_user_model()


# --- generic audited writes -------------------------------------------------------------------


def audited_create(*, actor: Actor, obj: Model) -> Model:
    """Validate, save and audit a new object (other apps' services build on this and `audited_update`)."""
    obj.full_clean()
    obj.save()
    audit_record(actor=actor, action="create", obj=obj, changes={"after": snapshot(obj)})
    return obj


def audited_update(*, actor: Actor, obj: Model, fields: dict[str, Any]) -> Model:
    before = snapshot(obj)
    for name, value in fields.items():
        setattr(obj, name, value)
    obj.full_clean()
    obj.save()
    changes = diff(before, snapshot(obj))
    if changes:
        audit_record(actor=actor, action="update", obj=obj, changes=changes)
    return obj


def _delete(*, actor: Actor, obj: Model) -> None:
    audit_record(actor=actor, action="delete", obj=obj, changes={"before": snapshot(obj)})
    obj.delete()


def _unique_slug(value: str, taken) -> str:
    base = slugify(value)[:90] or "item"
    slug, n = base, 2
    while taken(slug):
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def audited_save(*, actor: Actor, obj: Model, change: bool) -> Model:
    """Save an object edited in a form (Django admin) and audit it; the form already validated it."""
    before = snapshot(type(obj)._default_manager.get(pk=obj.pk)) if change else None
    obj.save()
    if before is None:
        audit_record(actor=actor, action="create", obj=obj, changes={"after": snapshot(obj)})
    elif changes := diff(before, snapshot(obj)):
        audit_record(actor=actor, action="update", obj=obj, changes=changes)
    return obj


@transaction.atomic
def audited_delete(*, actor: Actor, obj: Model) -> None:
    _delete(actor=actor, obj=obj)


# --- organizations -----------------------------------------------------------------------------


@transaction.atomic
def organization_create(*, actor: Actor, name: str, slug: str = "", owner=None) -> Organization:
    slug = slug or _unique_slug(name, lambda s: Organization.objects.filter(slug=s).exists())
    org = audited_create(actor=actor, obj=Organization(name=name, slug=slug))
    if owner is not None:
        membership_create(actor=actor, org=org, user=owner, role=Role.OWNER)
    return org


@transaction.atomic
def organization_update(*, actor: Actor, org: Organization, **fields) -> Organization:
    return audited_update(actor=actor, obj=org, fields=fields)


@transaction.atomic
def organization_delete(*, actor: Actor, org: Organization) -> None:
    _delete(actor=actor, obj=org)


# --- teams ---------------------------------------------------------------------------------------


@transaction.atomic
def team_create(*, actor: Actor, org: Organization, name: str, slug: str = "") -> Team:
    slug = slug or _unique_slug(name, lambda s: Team.objects.filter(org=org, slug=s).exists())
    return audited_create(actor=actor, obj=Team(org=org, name=name, slug=slug))


@transaction.atomic
def team_update(*, actor: Actor, team: Team, **fields) -> Team:
    return audited_update(actor=actor, obj=team, fields=fields)


@transaction.atomic
def team_delete(*, actor: Actor, team: Team) -> None:
    _delete(actor=actor, obj=team)


@transaction.atomic
def team_member_add(*, actor: Actor, team: Team, user) -> TeamMembership:
    if not Membership.objects.filter(org_id=team.org_id, user=user).exists():
        raise ValidationError(
            {"user": f"{user} is not a member of {team.org.name}; add them to the organization first."}
        )
    return audited_create(actor=actor, obj=TeamMembership(team=team, user=user))


@transaction.atomic
def team_member_remove(*, actor: Actor, membership: TeamMembership) -> None:
    _delete(actor=actor, obj=membership)


# --- apps ----------------------------------------------------------------------------------------


def _check_team(org: Organization, team: Team | None) -> None:
    if team is not None and team.org_id != org.pk:
        raise ValidationError({"team": "The team belongs to another organization."})


@transaction.atomic
def app_create(
    *, actor: Actor, org: Organization, name: str, slug: str = "", team: Team | None = None, description: str = ""
) -> App:
    _check_team(org, team)
    slug = slug or _unique_slug(name, lambda s: App.objects.filter(org=org, slug=s).exists())
    return audited_create(actor=actor, obj=App(org=org, team=team, name=name, slug=slug, description=description))


@transaction.atomic
def app_update(*, actor: Actor, app: App, **fields) -> App:
    if "team" in fields:
        _check_team(app.org, fields["team"])
    return audited_update(actor=actor, obj=app, fields=fields)


@transaction.atomic
def app_delete(*, actor: Actor, app: App) -> None:
    _delete(actor=actor, obj=app)


# --- memberships ---------------------------------------------------------------------------------


def _check_owner_rules(*, actor: Actor, org: Organization, roles: set[str]) -> None:
    """Only owners (or staff) grant or take away the owner role."""
    if Role.OWNER in roles and not actor.principal.is_staff and actor.user is not None:
        if role_in(actor.principal, org) != Role.OWNER:
            raise PermissionDenied("Only an owner of the organization can grant or remove the owner role.")
    if Role.OWNER in roles and actor.key is not None:
        raise PermissionDenied("Gateway keys cannot grant or remove the owner role; sign in as an owner.")


def _check_rank_rules(
    *, actor: Actor, org: Organization, target: Membership | None = None, role: str | None = None
) -> None:
    """A principal never grants more than it holds: no role above its own, and only owners change or remove
    someone at or above their own rank (anyone may lower or leave their own membership)."""
    principal = actor.principal
    if principal.is_staff or (principal.user is None and principal.key is None):
        return  # staff, and the system (management commands), hold every role
    mine = role_in(principal, org)
    rank = ROLE_RANK.get(mine, -1)
    if role is not None and ROLE_RANK[role] > rank:
        raise PermissionDenied(
            f"You cannot grant the {role} role in {org.name}: it is above your own ({mine or 'no role'})."
        )
    if target is None or mine == Role.OWNER:
        return
    own = principal.user is not None and target.user_id == principal.user.pk
    if own and (role is None or ROLE_RANK[role] <= ROLE_RANK[target.role]):
        return
    if ROLE_RANK[target.role] >= rank:
        raise PermissionDenied(
            f"Only an owner can change or remove a member whose role ({target.role}) is at or above yours ({mine})."
        )


def _keys_made_by(user_id: int, org_id: int) -> list[APIKey]:
    return list(
        APIKey.objects.select_related("created_by")
        .annotate(creator_role=creator_role_subquery())
        .filter(created_by_id=user_id, org_id=org_id, revoked_at__isnull=True)
    )


def _audit_narrowed_keys(*, actor: Actor, org: Organization, user, before: list[APIKey], reason: str) -> None:
    """After a demotion or removal: one audit entry naming the keys of `user` whose scopes it narrowed."""
    was = {key.pk: key_scopes_in_use(key) for key in before}
    narrowed = [
        {"id": key.pk, "key": key.display, "before": sorted(was[key.pk]), "after": sorted(now)}
        for key in _keys_made_by(user.pk, org.pk)
        if (now := key_scopes_in_use(key)) != was.get(key.pk, now)
    ]
    if narrowed:
        audit_record(
            actor=actor,
            action="keys_narrowed",
            org=org,
            object_repr=f"keys made by {user.get_username()}",
            changes={"reason": reason, "user": user.get_username(), "keys": narrowed},
        )


def _check_not_last_owner(membership: Membership) -> None:
    if (
        membership.role == Role.OWNER
        and not Membership.objects.filter(org_id=membership.org_id, role=Role.OWNER).exclude(pk=membership.pk).exists()
    ):
        raise ValidationError({"role": "An organization needs at least one owner; make someone else owner first."})


@transaction.atomic
def membership_create(*, actor: Actor, org: Organization, user, role: str = Role.MEMBER) -> Membership:
    # An organization's first owner is created with it, before anyone holds a role there.
    if Membership.objects.filter(org=org).exists():
        _check_owner_rules(actor=actor, org=org, roles={role})
        _check_rank_rules(actor=actor, org=org, role=role)
    return audited_create(actor=actor, obj=Membership(org=org, user=user, role=role))


@transaction.atomic
def membership_update(*, actor: Actor, membership: Membership, role: str) -> Membership:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _check_owner_rules(actor=actor, org=membership.org, roles={membership.role, role})
    _check_rank_rules(actor=actor, org=membership.org, target=membership, role=role)
    if role != Role.OWNER:
        _check_not_last_owner(membership)
    keys_before = _keys_made_by(membership.user_id, membership.org_id)
    old_role = membership.role
    membership = audited_update(actor=actor, obj=membership, fields={"role": role})
    _audit_narrowed_keys(
        actor=actor, org=membership.org, user=membership.user, before=keys_before, reason=f"role {old_role} -> {role}"
    )
    return membership


@transaction.atomic
def membership_delete(*, actor: Actor, membership: Membership) -> None:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _check_owner_rules(actor=actor, org=membership.org, roles={membership.role})
    _check_rank_rules(actor=actor, org=membership.org, target=membership)
    _check_not_last_owner(membership)
    keys_before = _keys_made_by(membership.user_id, membership.org_id)
    TeamMembership.objects.filter(team__org_id=membership.org_id, user_id=membership.user_id).delete()
    _delete(actor=actor, obj=membership)
    _audit_narrowed_keys(
        actor=actor,
        org=membership.org,
        user=membership.user,
        before=keys_before,
        reason="removed from the organization",
    )


# --- gateway keys --------------------------------------------------------------------------------


def _clean_scopes(scopes) -> list[str]:
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise ValidationError({"scopes": f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(Scope.values)}."})
    if not scopes:
        raise ValidationError({"scopes": "Give the key at least one scope."})
    return [s for s in Scope.values if s in set(scopes)]


def api_key_check_scopes(*, actor: Actor, org: Organization, scopes, key: APIKey | None = None) -> None:
    """Refuse scopes beyond what the actor holds in `org` (a key: its own effective scopes). On an existing key
    only the scopes being added count, and they must also be within what the key's creator may hold, since
    the key is narrowed to that at every use."""
    adding = set(scopes) - (set(key.scopes) if key is not None else set())
    holds = grantable_scopes(actor.principal, org)
    if beyond := sorted(adding - holds):
        who = "this key holds" if actor.key is not None else "you hold"
        raise ValidationError(
            {
                "scopes": f"You cannot grant {', '.join(beyond)}: a key gets at most the scopes {who} in {org.name} "
                f"({', '.join(sorted(holds)) or 'none'})."
            }
        )
    if key is not None and key.created_by_id is not None:
        cap = scopes_of_creator(
            has_creator=True, active=key.created_by.is_active, staff=key.created_by.is_staff, role=creator_role(key)
        )
        if beyond := sorted(adding - cap):
            raise ValidationError(
                {
                    "scopes": f"This key was made by {key.created_by.get_username()}, whose role cannot hold "
                    f"{', '.join(beyond)}; the key would never use it. Make a new key instead."
                }
            )


@transaction.atomic
def api_key_create(
    *,
    actor: Actor,
    app: App,
    name: str,
    scopes: list[str] | tuple[str, ...] = (Scope.PROXY,),
    expires_at: datetime.datetime | None = None,
) -> tuple[APIKey, str]:
    """Create a gateway key. Returns the key row and the plaintext, which is never available again.

    Its scopes are capped by what the actor holds (`api_key_check_scopes`). A key minted by a key records the
    minting key's creator, so the check at every use follows the person behind both."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    scopes = _clean_scopes(scopes)
    api_key_check_scopes(actor=actor, org=app.org, scopes=scopes)
    if actor.key is not None:
        creator_id = actor.key.created_by_id
    else:
        creator_id = actor.user.pk if actor.user is not None and actor.user.pk else None
    new = keys.generate()
    key = APIKey(
        org_id=app.org_id,
        app=app,
        name=name,
        prefix=new.prefix,
        digest=new.digest,
        scopes=scopes,
        expires_at=expires_at,
        created_by_id=creator_id,
    )
    key.full_clean()
    key.save()
    audit_record(actor=actor, action="key_create", obj=key, changes={"after": snapshot(key)})
    webhook_sources.key_created(key, actor)
    return key, new.plaintext


def _check_may_change_key(*, actor: Actor, key: APIKey) -> None:
    """Admins and owners change any key of their org; below that, only the keys one made (a key acting counts
    as the person behind it) or the keys of an app one was granted: a member does not revoke, re-date or rename
    an admin's key."""
    principal = actor.principal
    if principal.is_staff or (actor.user is None and actor.key is None):
        return  # staff and the system (management commands)
    role = role_in(principal, key.org)
    if role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.ADMIN]:
        return
    person = actor.user.pk if actor.user is not None else actor.key.created_by_id
    if person is not None and key.created_by_id == person:
        return
    if grants_app(principal, key.app):
        return
    raise PermissionDenied("Only admins and owners change gateway keys made by others; change the keys you made.")


def api_key_may_change(*, actor: Actor, key: APIKey) -> bool:
    """Whether `api_key_update`/`api_key_revoke` would let the actor change the key (the keys page's buttons)."""
    try:
        _check_may_change_key(actor=actor, key=key)
    except PermissionDenied:
        return False
    return True


@transaction.atomic
def api_key_update(*, actor: Actor, key: APIKey, **fields) -> APIKey:
    _check_may_change_key(actor=actor, key=key)
    if "scopes" in fields:
        fields["scopes"] = _clean_scopes(fields["scopes"])
        api_key_check_scopes(actor=actor, org=key.org, scopes=fields["scopes"], key=key)
    return audited_update(actor=actor, obj=key, fields=fields)


@transaction.atomic
def api_key_revoke(*, actor: Actor, key: APIKey) -> APIKey:
    key = APIKey.objects.select_for_update().get(pk=key.pk)
    _check_may_change_key(actor=actor, key=key)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor, action="key_revoke", obj=key, changes={"revoked_at": [None, key.revoked_at.isoformat()]}
        )
        webhook_sources.key_revoked(key, actor)
    return key


@transaction.atomic
def api_keys_revoke_made_by(*, actor: Actor, user) -> int:
    """Revoke every live key `user` made; run before the user is deleted, because a key whose creator is gone
    (created_by emptied) would count as made by the system and keep all its scopes."""
    made = APIKey.objects.select_for_update().filter(created_by_id=user.pk, revoked_at__isnull=True)
    revoked = 0
    for key in made:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="key_revoke",
            obj=key,
            changes={
                "revoked_at": [None, key.revoked_at.isoformat()],
                "reason": f"creator {user.get_username()} deleted",
            },
        )
        webhook_sources.key_revoked(key, actor)
        revoked += 1
    return revoked


@transaction.atomic
def api_key_delete(*, actor: Actor, key: APIKey) -> None:
    _delete(actor=actor, obj=key)


def api_key_mark_used(
    *, key_id: int, at: datetime.datetime | None = None, last_used_at: datetime.datetime | None = None
) -> bool:
    """Stamp a key's use at most once per INGATE_KEY_LAST_USED_INTERVAL (a write per request would not scale);
    True when a write happened. Callers holding the row pass its `last_used_at`: a recent one costs no query.
    The proxy also limits itself in memory and calls this off the request path."""
    at = at or timezone.now()
    cutoff = at - datetime.timedelta(seconds=settings.INGATE_KEY_LAST_USED_INTERVAL)
    if last_used_at is not None and last_used_at > cutoff:
        return False
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=cutoff)
    return bool(APIKey.objects.filter(stale, pk=key_id).update(last_used_at=at))


# --- provider credentials ------------------------------------------------------------------------


def credential_needs_secret(*, provider: str, auth_style: str = "") -> bool:
    """A stored credential needs a secret unless its provider works without one (the registry says: a local
    Ollama usually has none) or it is set to send no authentication."""
    spec = REGISTRY.get(provider)
    return auth_style != AuthStyle.NONE and (spec is None or spec.needs_secret)


def _set_secret(credential: ProviderCredential, secret: str) -> None:
    credential.secret_encrypted = crypto.encrypt(secret) if secret else ""
    credential.secret_hint = crypto.hint(secret) if secret else ""


@transaction.atomic
def provider_credential_create(
    *,
    actor: Actor,
    org: Organization,
    provider: str,
    secret: str = "",
    name: str = "",
    base_url: str = "",
    api_version: str = "",
    auth_style: str = "",
) -> ProviderCredential:
    credential = ProviderCredential(
        org=org,
        provider=provider,
        name=name or provider,
        base_url=base_url,
        api_version=api_version,
        auth_style=auth_style,
    )
    if not secret and credential_needs_secret(provider=provider, auth_style=auth_style):
        raise ValidationError({"secret": "This provider needs an API key."})
    _set_secret(credential, secret)
    audited_create(actor=actor, obj=credential)
    webhook_sources.credential_changed(credential, "created", actor)
    return credential


@transaction.atomic
def provider_credential_update(
    *, actor: Actor, credential: ProviderCredential, secret: str | None = None, **fields
) -> ProviderCredential:
    """Update settings; `secret=None` keeps the stored secret, a new value replaces it."""
    if secret is not None:
        _set_secret(credential, secret)
    fields["updated_at"] = timezone.now()
    audited_update(actor=actor, obj=credential, fields=fields)
    webhook_sources.credential_changed(credential, "updated", actor)
    return credential


@transaction.atomic
def provider_credential_delete(*, actor: Actor, credential: ProviderCredential) -> None:
    webhook_sources.credential_changed(credential, "deleted", actor)
    _delete(actor=actor, obj=credential)


# --- users ---------------------------------------------------------------------------------------


@transaction.atomic
def user_create(*, actor: Actor, username: str, email: str = "", password: str | None = None, is_staff: bool = False):
    """Create a user; `is_staff` makes an instance administrator (staff and superuser)."""
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    audit_record(
        actor=actor,
        action="create",
        obj=user,
        object_repr=username,
        changes={"after": {"username": username, "is_staff": is_staff}},
    )
    return user
