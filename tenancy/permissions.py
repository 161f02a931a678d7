"""Who may see or change what: the one place that decides.

Org roles map to permission sets; a gateway key acts inside its own org with what its scopes grant;
django-guardian adds per-object grants (`manage_app` on one app gives control of that app and its keys).
Every list and detail, in admin and the API, goes through `restrict()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db.models import Model, OuterRef, Q, QuerySet, Subquery
from guardian.shortcuts import get_objects_for_user

from .models import (
    APIKey,
    App,
    AuditLog,
    Budget,
    BudgetEvent,
    CacheSettings,
    GuardrailPolicy,
    Membership,
    Organization,
    ProviderCredential,
    RateLimit,
    Role,
    Route,
    Scope,
    StorageExport,
    StorageExportRun,
    Team,
    TeamMembership,
    WebhookDelivery,
    WebhookEndpoint,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
ALL = frozenset({VIEW, ADD, CHANGE, DELETE})


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user, or a gateway key (with its org and scopes)."""

    user: AbstractBaseUser | None = None
    key: APIKey | None = None
    scopes: frozenset[str] = field(default=frozenset())

    @classmethod
    def for_user(cls, user) -> Principal:
        return cls(user=user)

    @classmethod
    def for_key(cls, key: APIKey) -> Principal:
        """A key acts with its scopes as narrowed by its creator's current role (see `key_scopes_in_use`)."""
        return cls(key=key, scopes=key_scopes_in_use(key))

    @property
    def is_staff(self) -> bool:
        return bool(self.user is not None and self.user.is_active and self.user.is_staff)

    def __str__(self) -> str:
        if self.user is not None:
            return self.user.get_username()
        if self.key is not None:
            return f"key {self.key.display} ({self.key.name})"
        return "anonymous"


_VIEWER = {
    Organization: {VIEW},
    Team: {VIEW},
    TeamMembership: {VIEW},
    App: {VIEW},
    Membership: {VIEW},
    APIKey: {VIEW},
    ProviderCredential: {VIEW},
    Route: {VIEW},
    Budget: {VIEW},
    RateLimit: {VIEW},
    BudgetEvent: {VIEW},
    CacheSettings: {VIEW},
}
_MEMBER = {**_VIEWER, App: {VIEW, ADD, CHANGE}, APIKey: {VIEW, ADD, CHANGE}}
_ADMIN = {
    Organization: {VIEW, CHANGE},
    Team: ALL,
    TeamMembership: ALL,
    App: ALL,
    Membership: ALL,
    APIKey: ALL,
    ProviderCredential: ALL,
    # Routes decide where everyone's requests go and with which keys: managed like the credentials.
    Route: ALL,
    # Budgets and rate limits decide whose requests are refused: managed like routes; their events are the
    # system's record, read by everyone in the org.
    Budget: ALL,
    RateLimit: ALL,
    BudgetEvent: {VIEW},
    # What the response cache keeps, and purging it, decides what everyone's requests are answered with.
    CacheSettings: ALL,
    # The org's bucket holds all its records: who may point it elsewhere is who may hold its credentials.
    StorageExport: ALL,
    StorageExportRun: {VIEW},
    # Guardrail policies decide what may be sent and answered, and what their rules look for is itself telling:
    # admins and owners only.
    GuardrailPolicy: ALL,
    AuditLog: {VIEW},
    # Webhook endpoints send the org's events to a URL of one's choosing: managed like credentials; their log
    # (payloads included) is read, and sent again, by the same people.
    WebhookEndpoint: ALL,
    WebhookDelivery: {VIEW, CHANGE},
}
_OWNER = {**_ADMIN, Organization: {VIEW, CHANGE, DELETE}}

ROLE_PERMISSIONS: dict[str, dict[type[Model], set[str]]] = {
    Role.VIEWER: _VIEWER,
    Role.MEMBER: _MEMBER,
    Role.ADMIN: _ADMIN,
    Role.OWNER: _OWNER,
}

# What a gateway key may do through the management API, by scope, always inside its own org. The `admin` scope
# acts as an org admin: it reads the admin role's table (see scope_permissions), which other apps extend
# through grant(); each API view still requires its own scope of a key.
SCOPE_PERMISSIONS: dict[str, dict[type[Model], set[str]]] = {}


def scope_permissions(scope: str) -> dict[type[Model], set[str]]:
    if scope == Scope.ADMIN:
        return ROLE_PERMISSIONS[Role.ADMIN]
    return SCOPE_PERMISSIONS.get(scope, {})


# --- who may grant what ------------------------------------------------------------------------
#
# A principal never grants more than it holds. A role may hold (and so put on the keys it makes) only these
# scopes; a key's scopes are checked against them again at every use, with its creator's *current* role, so
# demoting or removing someone narrows or disables the keys they made. Viewers may call providers (that is
# what a key handed to them is for) and read, never change; `admin` belongs to admins and owners alone.
ALL_SCOPES: frozenset[str] = frozenset(Scope.values)
ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.VIEWER: frozenset({Scope.PROXY, Scope.LOGS_READ, Scope.PROMPTS_READ}),
    Role.MEMBER: frozenset(
        {Scope.PROXY, Scope.LOGS_READ, Scope.PROMPTS_READ, Scope.PROMPTS_WRITE, Scope.EVALS_RUN, Scope.SCORES_WRITE}
    ),
    Role.ADMIN: ALL_SCOPES,
    Role.OWNER: ALL_SCOPES,
}

# Roles from the least to the most: nobody sets a role above their own, and only owners change the role of
# someone at or above their own rank.
ROLE_RANK: dict[str, int] = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def scopes_of_creator(*, has_creator: bool, active: bool, staff: bool, role: str | None) -> frozenset[str] | None:
    """What a key's creator may hold right now in the key's org; None when the key has no creator (made by the
    system: a management command or bootstrap), which keeps the key's own scopes. An inactive creator, or
    one who is no longer a member, holds nothing: their keys stop working."""
    if not has_creator:
        return None
    if not active:
        return frozenset()
    if staff:
        return ALL_SCOPES
    return ROLE_SCOPES.get(role, frozenset())


def creator_role_subquery() -> Subquery:
    """Annotates a key query with its creator's role in the key's org (`creator_role`), saving a query per key."""
    return Subquery(
        Membership.objects.filter(user_id=OuterRef("created_by_id"), org_id=OuterRef("org_id")).values("role")[:1]
    )


def creator_role(key: APIKey) -> str | None:
    """The key's creator's role in the key's org (one query unless the caller annotated `creator_role`)."""
    if hasattr(key, "creator_role"):
        return key.creator_role
    return (
        Membership.objects.filter(user_id=key.created_by_id, org_id=key.org_id).values_list("role", flat=True).first()
    )


def _creator_cap(key: APIKey) -> frozenset[str] | None:
    if key.created_by_id is None:
        return None
    creator = key.created_by
    return scopes_of_creator(has_creator=True, active=creator.is_active, staff=creator.is_staff, role=creator_role(key))


def key_scopes_in_use(key: APIKey) -> frozenset[str]:
    """A key's effective scopes: its own, narrowed to what its creator may hold now."""
    cap = _creator_cap(key)
    return frozenset(key.scopes) if cap is None else frozenset(key.scopes) & cap


def key_creator_left(key: APIKey) -> bool:
    """Was the key made by someone who holds nothing in its org any more (removed or deactivated)?"""
    return _creator_cap(key) == frozenset()


def grantable_scopes(principal: Principal, org: Organization) -> frozenset[str]:
    """The scopes `principal` may put on a key of `org`: never more than it holds itself there.

    A key grants at most its own effective scopes, in its own org. A principal with neither user nor key is
    the system (management commands, bootstrap): views refuse anonymous callers before any service runs."""
    if principal.is_staff:
        return ALL_SCOPES
    if principal.key is not None:
        return principal.scopes if principal.key.org_id == org.pk else frozenset()
    if principal.user is None:
        return ALL_SCOPES
    if not principal.user.is_active:
        return frozenset()
    return ROLE_SCOPES.get(role_in(principal, org), frozenset())


def grant(
    model: type[Model], *, roles: dict[str, set[str]], scopes: dict[str, set[str]] | None = None, org_path: str = "org"
) -> None:
    """Let other apps put their org-scoped models under the same rules (called from AppConfig.ready).
    `org_path`: how the model reaches its organization, when it has no `org` field of its own."""
    if org_path != "org":
        _ORG_PATH[model] = org_path
    for role, actions in roles.items():
        ROLE_PERMISSIONS[role][model] = set(actions)
    for scope, actions in (scopes or {}).items():
        SCOPE_PERMISSIONS.setdefault(scope, {})[model] = set(actions)


# How each model reaches its organization.
_ORG_PATH: dict[type[Model], str] = {
    Organization: "pk",
    TeamMembership: "team__org",
}


def org_path(model: type[Model]) -> str:
    return _ORG_PATH.get(model, "org")


def _roles_allowing(model: type[Model], action: str) -> list[str]:
    return [role for role, perms in ROLE_PERMISSIONS.items() if action in perms.get(model, ())]


def allowed_org_ids(principal: Principal, model: type[Model], action: str) -> QuerySet | list[int]:
    """The organizations in which the principal may do `action` on `model` (staff: see `restrict`)."""
    if principal.key is not None:
        granted = any(action in scope_permissions(s).get(model, ()) for s in principal.scopes)
        return [principal.key.org_id] if granted else []
    if principal.user is None or not principal.user.is_active:
        return []
    # A list, not a subquery: a handful of ids lets the planner use (org, time) indexes on big tables.
    return list(
        Membership.objects.filter(user=principal.user, role__in=_roles_allowing(model, action)).values_list(
            "org_id", flat=True
        )
    )


def _allows_org(allowed: QuerySet | list[int], org_id: int | None = None) -> bool:
    """Does an `allowed_org_ids` result include `org_id` (or any org, when None)?"""
    if isinstance(allowed, list):
        return bool(allowed) if org_id is None else org_id in allowed
    return (allowed if org_id is None else allowed.filter(org_id=org_id)).exists()


def allowed_anywhere(principal: Principal, model: type[Model], action: str) -> bool:
    """May the principal do `action` on `model` in at least one org?"""
    return principal.is_staff or _allows_org(allowed_org_ids(principal, model, action))


def _granted_app_ids(principal: Principal) -> QuerySet | list[int]:
    if principal.user is None or not principal.user.is_active:
        return []
    apps = get_objects_for_user(principal.user, "tenancy.manage_app", klass=App, accept_global_perms=False)
    return apps.values("pk")


def restrict(queryset: QuerySet, principal: Principal, action: str = VIEW) -> QuerySet:
    """Narrow `queryset` to the objects `principal` may `action`. Staff users see every org."""
    model = queryset.model
    if principal.is_staff:
        return queryset
    condition = Q(**{f"{org_path(model)}__in": allowed_org_ids(principal, model, action)})
    if model is App and action != ADD:
        condition |= Q(pk__in=_granted_app_ids(principal))
    elif model is APIKey:
        condition |= Q(app_id__in=_granted_app_ids(principal))
    return queryset.filter(condition)


def orgs_where(principal: Principal, model: type[Model], action: str) -> QuerySet:
    """The active organizations in which the principal may do `action` on `model` (staff: all of them): what
    org pickers and per-org pages offer."""
    orgs = Organization.objects.filter(is_active=True)
    return orgs if principal.is_staff else orgs.filter(pk__in=allowed_org_ids(principal, model, action))


def can(principal: Principal, action: str, obj: Model) -> bool:
    return restrict(type(obj)._default_manager.filter(pk=obj.pk), principal, action).exists()


def can_add(principal: Principal, model: type[Model], org: Organization, app: App | None = None) -> bool:
    """May the principal create a `model` in `org` (for a gateway key: under `app`)?"""
    if principal.is_staff:
        return True
    if _allows_org(allowed_org_ids(principal, model, ADD), org.pk):
        return True
    return model is APIKey and app is not None and grants_app(principal, app)


def can_in_org(principal: Principal, model: type[Model], action: str, org: Organization) -> bool:
    """May the principal do `action` on `model` objects of `org` (an org-wide operation, such as a cache purge)?"""
    return principal.is_staff or _allows_org(allowed_org_ids(principal, model, action), org.pk)


def grants_app(principal: Principal, app: App) -> bool:
    """Does the principal hold django-guardian's `manage_app` on `app` (control of that app and its keys)?"""
    granted = _granted_app_ids(principal)
    # An empty list means no user to grant to; otherwise one EXISTS query answers it.
    return not isinstance(granted, list) and granted.filter(pk=app.pk).exists()


def role_in(principal: Principal, org: Organization) -> str | None:
    """The principal's role in `org` (a key with the admin scope counts as admin)."""
    if principal.key is not None:
        return Role.ADMIN if principal.key.org_id == org.pk and Scope.ADMIN in principal.scopes else None
    if principal.user is None:
        return None
    return Membership.objects.filter(user=principal.user, org=org).values_list("role", flat=True).first()
