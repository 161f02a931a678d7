"""Tenancy API: views validate, check the caller's rights through `tenancy.permissions`, and call services."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import decorators, exceptions, mixins, response, status, viewsets

from proxy.response_cache.store import CacheUnavailable

from .. import cache, guardrails, limits, routes, services
from ..audit import Actor
from ..models import (
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
    Route,
    RouteTarget,
    Team,
    TeamMembership,
)
from ..permissions import CHANGE, DELETE, VIEW, allowed_anywhere, can, can_add, can_in_org, restrict
from . import serializers as s
from .permissions import principal_of

_OBJECT_ACTIONS = {
    "update": CHANGE,
    "partial_update": CHANGE,
    "destroy": DELETE,
    "revoke": CHANGE,
    # webhooks (tenancy/api/webhooks.py)
    "rotate_secret": CHANGE,
    "test_event": CHANGE,
    "deliveries": VIEW,
    "redeliver": CHANGE,
}


class ScopedViewSet(viewsets.GenericViewSet):
    """Lists and details go through `restrict`; changes also need the right to change that object."""

    model: type

    @property
    def principal(self):
        return principal_of(self.request)

    @property
    def actor(self) -> Actor:
        return Actor.from_request(self.request, via="api", principal=self.principal)

    def get_queryset(self):
        return restrict(self.queryset, self.principal, VIEW)

    def get_object(self):
        obj = super().get_object()
        action = _OBJECT_ACTIONS.get(self.action)
        if action and not can(self.principal, action, obj):
            raise exceptions.PermissionDenied(
                f"Your role does not allow you to {action} this {self.model._meta.verbose_name}."
            )
        return obj

    def require_add(self, org: Organization, app: App | None = None) -> None:
        if not can_add(self.principal, self.model, org, app):
            raise exceptions.PermissionDenied(
                f"Your role in {org.name} does not allow you to add a {self.model._meta.verbose_name}."
            )


class CrudViewSet(
    ScopedViewSet,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """Subclasses say how to create, update and delete through their services."""

    # Fields a client may change after creation.
    updatable: tuple[str, ...] = ()

    def perform_create(self, serializer):
        serializer.instance = self.create_object(serializer.validated_data)

    def perform_update(self, serializer):
        fields = {k: v for k, v in serializer.validated_data.items() if k in self.updatable}
        serializer.instance = self.update_object(serializer.instance, fields)

    def perform_destroy(self, instance):
        self.delete_object(instance)


class OrganizationViewSet(CrudViewSet):
    model = Organization
    queryset = Organization.objects.all()
    serializer_class = s.OrganizationSerializer
    filterset_fields = ["slug", "is_active"]
    search_fields = ["name", "slug"]
    updatable = ("name", "is_active", "timezone")

    def create_object(self, data):
        if not self.principal.is_staff:
            raise exceptions.PermissionDenied("Only staff create organizations; ask your Ingate administrator.")
        return services.organization_create(actor=self.actor, name=data["name"], slug=data.get("slug", ""))

    def update_object(self, org, fields):
        return services.organization_update(actor=self.actor, org=org, **fields)

    def delete_object(self, org):
        services.organization_delete(actor=self.actor, org=org)


class TeamViewSet(CrudViewSet):
    model = Team
    queryset = Team.objects.select_related("org")
    serializer_class = s.TeamSerializer
    filterset_fields = ["org", "slug"]
    search_fields = ["name", "slug"]
    updatable = ("name", "slug")

    def create_object(self, data):
        self.require_add(data["org"])
        return services.team_create(actor=self.actor, org=data["org"], name=data["name"], slug=data.get("slug", ""))

    def update_object(self, team, fields):
        return services.team_update(actor=self.actor, team=team, **fields)

    def delete_object(self, team):
        services.team_delete(actor=self.actor, team=team)


class TeamMembershipViewSet(CrudViewSet):
    model = TeamMembership
    queryset = TeamMembership.objects.select_related("team__org", "user")
    serializer_class = s.TeamMembershipSerializer
    filterset_fields = ["team"]
    http_method_names = ["get", "post", "delete", "head", "options"]

    def create_object(self, data):
        self.require_add(data["team"].org)
        return services.team_member_add(actor=self.actor, team=data["team"], user=data["user"])

    def delete_object(self, membership):
        services.team_member_remove(actor=self.actor, membership=membership)


class AppViewSet(CrudViewSet):
    model = App
    queryset = App.objects.select_related("org", "team")
    serializer_class = s.AppSerializer
    filterset_fields = ["org", "team", "slug"]
    search_fields = ["name", "slug"]
    updatable = ("name", "slug", "team", "description")

    def create_object(self, data):
        self.require_add(data["org"])
        return services.app_create(
            actor=self.actor,
            org=data["org"],
            name=data["name"],
            slug=data.get("slug", ""),
            team=data.get("team"),
            description=data.get("description", ""),
        )

    def update_object(self, app, fields):
        return services.app_update(actor=self.actor, app=app, **fields)

    def delete_object(self, app):
        services.app_delete(actor=self.actor, app=app)


class MembershipViewSet(CrudViewSet):
    model = Membership
    queryset = Membership.objects.select_related("org", "user")
    serializer_class = s.MembershipSerializer
    filterset_fields = ["org", "role"]
    search_fields = ["user__username", "user__email"]
    updatable = ("role",)

    def create_object(self, data):
        self.require_add(data["org"])
        return services.membership_create(actor=self.actor, org=data["org"], user=data["user"], role=data["role"])

    def update_object(self, membership, fields):
        if "role" not in fields:
            return membership
        return services.membership_update(actor=self.actor, membership=membership, role=fields["role"])

    def delete_object(self, membership):
        services.membership_delete(actor=self.actor, membership=membership)


class APIKeyViewSet(CrudViewSet):
    model = APIKey
    queryset = APIKey.objects.select_related("org", "app", "created_by")
    serializer_class = s.APIKeySerializer
    filterset_fields = ["org", "app"]
    search_fields = ["name", "prefix"]
    updatable = ("name", "scopes", "expires_at")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.APIKeyUpdateSerializer
        return s.APIKeySerializer

    @extend_schema(responses={201: s.APIKeyCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        app = serializer.validated_data["app"]
        self.require_add(app.org, app)
        key, plaintext = services.api_key_create(
            actor=self.actor,
            app=app,
            name=serializer.validated_data["name"],
            scopes=sorted(serializer.validated_data["scopes"]),
            expires_at=serializer.validated_data.get("expires_at"),
        )
        data = s.APIKeyCreatedSerializer(key, context=self.get_serializer_context()).data
        data["key"] = plaintext
        return response.Response(data, status=status.HTTP_201_CREATED)

    def update_object(self, key, fields):
        if "scopes" in fields:
            fields["scopes"] = sorted(fields["scopes"])
        return services.api_key_update(actor=self.actor, key=key, **fields)

    def delete_object(self, key):
        services.api_key_delete(actor=self.actor, key=key)

    @extend_schema(request=None, responses=s.APIKeySerializer)
    @decorators.action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        """Revoke the key: every request with it is refused from now on."""
        key = services.api_key_revoke(actor=self.actor, key=self.get_object())
        return response.Response(self.get_serializer(key).data)


class ProviderCredentialViewSet(CrudViewSet):
    model = ProviderCredential
    queryset = ProviderCredential.objects.select_related("org")
    serializer_class = s.ProviderCredentialSerializer
    filterset_fields = ["org", "provider", "name"]
    search_fields = ["name"]
    updatable = ("base_url", "api_version", "auth_style", "secret")

    def create_object(self, data):
        self.require_add(data["org"])
        return services.provider_credential_create(
            actor=self.actor,
            org=data["org"],
            provider=data["provider"],
            secret=data.get("secret", ""),
            name=data.get("name", ""),
            base_url=data.get("base_url", ""),
            api_version=data.get("api_version", ""),
            auth_style=data.get("auth_style", ""),
        )

    def update_object(self, credential, fields):
        secret = fields.pop("secret", None) or None
        return services.provider_credential_update(actor=self.actor, credential=credential, secret=secret, **fields)

    def delete_object(self, credential):
        services.provider_credential_delete(actor=self.actor, credential=credential)


class RouteViewSet(CrudViewSet):
    """Routes (virtual models): a name clients send as `model`, and the ordered targets that serve it."""

    model = Route
    queryset = Route.objects.select_related("org").prefetch_related(
        Prefetch("targets", queryset=RouteTarget.objects.select_related("credential").order_by("position", "pk"))
    )
    serializer_class = s.RouteSerializer
    filterset_fields = ["org", "name", "strategy", "enabled"]
    search_fields = ["name"]
    updatable = (*routes.ROUTE_FIELDS, "targets")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.RouteUpdateSerializer
        return s.RouteSerializer

    def create_object(self, data):
        self.require_add(data["org"])
        fields = {k: v for k, v in data.items() if k in routes.ROUTE_FIELDS}
        return routes.route_create(actor=self.actor, org=data["org"], targets=data["targets"], **fields)

    def update_object(self, route, fields):
        return routes.route_update(actor=self.actor, route=route, **fields)

    def delete_object(self, route):
        routes.route_delete(actor=self.actor, route=route)


class BudgetViewSet(CrudViewSet):
    """Budgets: a USD amount per period on the org, a team, an app, a gateway key or an end user."""

    model = Budget
    queryset = Budget.objects.select_related("org", "team", "app", "key")
    serializer_class = s.BudgetSerializer
    filterset_fields = ["org", "scope", "team", "app", "key", "user_id", "period", "hard", "enabled"]
    search_fields = ["name", "user_id"]
    updatable = limits.BUDGET_FIELDS

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.BudgetUpdateSerializer
        return s.BudgetSerializer

    def create_object(self, data):
        self.require_add(data["org"])
        fields = {k: v for k, v in data.items() if k in limits.BUDGET_FIELDS}
        return limits.budget_create(actor=self.actor, org=data["org"], **fields)

    def update_object(self, budget, fields):
        return limits.budget_update(actor=self.actor, budget=budget, **fields)

    def delete_object(self, budget):
        limits.budget_delete(actor=self.actor, budget=budget)


class RateLimitViewSet(CrudViewSet):
    """Rate limits: requests per minute, tokens per minute and concurrent requests, on the same scopes."""

    model = RateLimit
    queryset = RateLimit.objects.select_related("org", "team", "app", "key")
    serializer_class = s.RateLimitSerializer
    filterset_fields = ["org", "scope", "team", "app", "key", "user_id", "enabled"]
    search_fields = ["name", "user_id"]
    updatable = limits.RATE_LIMIT_FIELDS

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.RateLimitUpdateSerializer
        return s.RateLimitSerializer

    def create_object(self, data):
        self.require_add(data["org"])
        fields = {k: v for k, v in data.items() if k in limits.RATE_LIMIT_FIELDS}
        return limits.rate_limit_create(actor=self.actor, org=data["org"], **fields)

    def update_object(self, rate_limit, fields):
        return limits.rate_limit_update(actor=self.actor, rate_limit=rate_limit, **fields)

    def delete_object(self, rate_limit):
        limits.rate_limit_delete(actor=self.actor, rate_limit=rate_limit)


class CacheSettingsViewSet(CrudViewSet):
    """Response cache settings: the org's default, and per app settings that replace it for that app."""

    model = CacheSettings
    queryset = CacheSettings.objects.select_related("org", "app")
    serializer_class = s.CacheSettingsSerializer
    filterset_fields = ["org", "app", "enabled"]
    updatable = cache.UPDATABLE

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.CacheSettingsUpdateSerializer
        return s.CacheSettingsSerializer

    def create_object(self, data):
        self.require_add(data["org"])
        fields = {k: v for k, v in data.items() if k in cache.FIELDS}
        return cache.cache_settings_create(actor=self.actor, org=data["org"], **fields)

    def update_object(self, settings, fields):
        return cache.cache_settings_update(actor=self.actor, settings=settings, **fields)

    def delete_object(self, settings):
        cache.cache_settings_delete(actor=self.actor, settings=settings)


class GuardrailPolicyViewSet(CrudViewSet):
    """Guardrail policies: the org's default, and an app's or a key's that replace it for their requests."""

    model = GuardrailPolicy
    queryset = GuardrailPolicy.objects.select_related("org", "app", "key")
    serializer_class = s.GuardrailPolicySerializer
    filterset_fields = ["org", "app", "key", "enabled"]
    search_fields = ["name"]
    updatable = guardrails.UPDATABLE

    def check_permissions(self, request):
        super().check_permissions(request)
        if not allowed_anywhere(self.principal, GuardrailPolicy, VIEW):
            raise exceptions.PermissionDenied("Only organization admins and owners can see guardrail policies.")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.GuardrailPolicyUpdateSerializer
        return s.GuardrailPolicySerializer

    def create_object(self, data):
        self.require_add(data["org"])
        fields = {k: v for k, v in data.items() if k in guardrails.FIELDS}
        return guardrails.guardrail_policy_create(actor=self.actor, org=data["org"], **fields)

    def update_object(self, policy, fields):
        return guardrails.guardrail_policy_update(actor=self.actor, policy=policy, **fields)

    def delete_object(self, policy):
        guardrails.guardrail_policy_delete(actor=self.actor, policy=policy)


class CacheUnreachable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "cache_unavailable"


class CachePurgeViewSet(ScopedViewSet):
    """Drop cached answers of an org you administer: all of them, one namespace's, or one entry."""

    model = CacheSettings
    queryset = CacheSettings.objects.none()
    serializer_class = s.CachePurgeSerializer

    @extend_schema(request=s.CachePurgeSerializer, responses={200: s.CachePurgeResultSerializer})
    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        org = data["org"]
        if not can_in_org(self.principal, CacheSettings, CHANGE, org):
            raise exceptions.PermissionDenied(f"Your role in {org.name} does not allow you to purge its cache.")
        namespace, key = data.get("namespace"), data.get("key")
        try:
            dropped = cache.cache_purge(actor=self.actor, org=org, namespace=namespace, key=key)
        except CacheUnavailable as exc:
            raise CacheUnreachable(str(exc)) from None
        return response.Response({"org": org.pk, "namespace": namespace, "key": key, "dropped": dropped})


class BudgetEventViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Budget alerts: a budget's spend crossed one of its thresholds in a period (read-only)."""

    model = BudgetEvent
    queryset = BudgetEvent.objects.all()
    serializer_class = s.BudgetEventSerializer
    filterset_fields = ["org", "budget", "kind", "threshold", "user_id"]
    search_fields = ["user_id"]


class AuditLogViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """The audit log of the organizations you administer (read-only)."""

    model = AuditLog
    queryset = AuditLog.objects.select_related("actor_user", "actor_key")
    serializer_class = s.AuditLogSerializer
    filterset_fields = ["org", "action", "object_type", "actor_user", "via"]
    search_fields = ["actor", "object_repr"]

    def get_queryset(self):
        if not allowed_anywhere(self.principal, AuditLog, VIEW):
            raise exceptions.PermissionDenied("Only organization admins and owners can read the audit log.")
        return super().get_queryset()


@extend_schema(responses={200: dict})
@decorators.api_view(["GET"])
def me(request):
    """Who the API thinks you are, and your organizations."""
    principal = principal_of(request)
    if principal.key is not None:
        key = principal.key
        return response.Response(
            {
                "type": "key",
                "key": key.display,
                "name": key.name,
                "org": key.org.slug,
                "app": key.app.slug,
                "scopes": key.scopes,
                # What the key may do now: its scopes narrowed to what its creator's current role allows.
                "scopes_in_use": [s for s in key.scopes if s in principal.scopes],
            }
        )
    memberships = Membership.objects.filter(user=principal.user).select_related("org")
    return response.Response(
        {
            "type": "user",
            "username": principal.user.get_username(),
            "is_staff": principal.is_staff,
            "organizations": [{"id": m.org_id, "slug": m.org.slug, "role": m.role} for m in memberships],
        }
    )


me.cls.required_scope = None  # any valid key may ask who it is
