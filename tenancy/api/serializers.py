"""API representations. Related-object choices are always narrowed to what the caller may see."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from .. import cache, guardrails, limits, routes
from ..models import (
    MAX_TARGETS,
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
    Team,
    TeamMembership,
    model_name_validators,
)
from ..permissions import VIEW, allowed_org_ids, restrict, role_in
from .permissions import principal_of

User = get_user_model()


def checked_draft(serializer: serializers.Serializer, model, data: dict, fields, check):
    """An unsaved `model` of the org: `data` over what the instance being changed holds (for `fields`), checked by
    its service's `check`, the rules the write itself applies; their ValidationError becomes DRF field errors."""
    instance = serializer.instance
    obj = model(pk=instance.pk if instance else None, org=data.get("org") or instance.org)
    for name in fields:
        if name in data:
            setattr(obj, name, data[name])
        elif instance is not None:
            setattr(obj, name, getattr(instance, name))
    try:
        check(obj)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.message_dict) from None
    return obj


class ScopedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """A foreign key whose choices are the objects the caller may see (others read as 'does not exist')."""

    def get_queryset(self):
        return restrict(self.queryset, principal_of(self.context["request"]), VIEW)


class WorkOrgField(ScopedPrimaryKeyField):
    """The `org` of an org-scoped object: the organizations in which the caller may see objects of the
    serializer's model. Not the organizations it may see as such: a gateway key with only `prompts:write` or
    `evals:run` may not read its organization, yet works inside it."""

    def get_queryset(self):
        principal = principal_of(self.context["request"])
        if principal.is_staff:
            return Organization.objects.all()
        return Organization.objects.filter(pk__in=allowed_org_ids(principal, self.parent.Meta.model, VIEW))


class UsernameField(serializers.SlugRelatedField):
    def __init__(self, **kwargs):
        super().__init__(slug_field="username", queryset=User.objects.filter(is_active=True), **kwargs)

    def to_internal_value(self, data):
        try:
            return self.get_queryset().get(username=data)
        except User.DoesNotExist:
            self.fail("does_not_exist", slug_name="username", value=data)
        except (TypeError, ValueError):
            self.fail("invalid")


class OrganizationSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in this organization.")

    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "is_active", "timezone", "created_at", "role"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"slug": {"required": False}}

    def get_role(self, org) -> str | None:
        return role_in(principal_of(self.context["request"]), org)


class TeamSerializer(serializers.ModelSerializer):
    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())

    class Meta:
        model = Team
        fields = ["id", "org", "name", "slug", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"slug": {"required": False}}
        # Uniqueness is checked by the service (it knows the org on updates too).
        validators = []


class TeamMembershipSerializer(serializers.ModelSerializer):
    team = ScopedPrimaryKeyField(queryset=Team.objects.all())
    user = UsernameField()

    class Meta:
        model = TeamMembership
        fields = ["id", "team", "user", "created_at"]
        read_only_fields = ["created_at"]
        validators = []


class AppSerializer(serializers.ModelSerializer):
    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())
    team = ScopedPrimaryKeyField(queryset=Team.objects.all(), required=False, allow_null=True)

    class Meta:
        model = App
        fields = ["id", "org", "team", "name", "slug", "description", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"slug": {"required": False}}
        validators = []


class MembershipSerializer(serializers.ModelSerializer):
    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())
    user = UsernameField(help_text="Username of an existing user.")
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)

    class Meta:
        model = Membership
        fields = ["id", "org", "user", "role", "created_at"]
        read_only_fields = ["created_at"]
        validators = []


class APIKeySerializer(serializers.ModelSerializer):
    app = ScopedPrimaryKeyField(queryset=App.objects.all())
    scopes = serializers.MultipleChoiceField(choices=Scope.choices, default=[Scope.PROXY])
    display = serializers.CharField(read_only=True, help_text="The visible part of the key.")
    status = serializers.CharField(read_only=True, help_text="active, expired or revoked")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = APIKey
        fields = [
            "id",
            "org",
            "app",
            "name",
            "display",
            "scopes",
            "status",
            "expires_at",
            "created_by",
            "created_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = ["org", "created_at", "revoked_at", "last_used_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["scopes"] = list(instance.scopes)
        return data


class APIKeyCreatedSerializer(APIKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The full key. Shown only in this response: store it now.")

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "key"]


class APIKeyUpdateSerializer(APIKeySerializer):
    class Meta(APIKeySerializer.Meta):
        read_only_fields = [*APIKeySerializer.Meta.read_only_fields, "app"]


class ProviderCredentialSerializer(serializers.ModelSerializer):
    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=True,
        style={"input_type": "password"},
        help_text="The provider API key. Write-only: only `secret_hint` is ever returned.",
    )
    name = serializers.SlugField(required=False, allow_blank=True, max_length=64)

    class Meta:
        model = ProviderCredential
        fields = [
            "id",
            "org",
            "provider",
            "name",
            "base_url",
            "api_version",
            "auth_style",
            "secret",
            "secret_hint",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["secret_hint", "created_at", "updated_at"]
        validators = []


class RouteTargetSerializer(serializers.Serializer):
    """One target of a route; a route's targets are written together, in order."""

    provider = serializers.CharField(
        max_length=64, help_text="A provider's name (openai, anthropic, groq, …) or your custom provider's name."
    )
    model = serializers.CharField(
        max_length=200, validators=model_name_validators, help_text="The provider's model, sent to it as is."
    )
    credential = serializers.SlugField(
        max_length=64,
        required=False,
        allow_null=True,
        allow_blank=True,
        default=None,
        help_text="The name of one of your credentials for this provider (a pooled key such as openai-backup); "
        "null: the credential named after the provider.",
    )
    weight = serializers.IntegerField(min_value=1, max_value=1000, default=1, help_text="Share under loadbalance.")
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text='Request parameters this target overrides, as a JSON object: {"temperature": 0.2}.',
    )

    def to_representation(self, target):
        return routes.target_snapshot(target)


class RouteSerializer(serializers.ModelSerializer):
    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())
    targets = RouteTargetSerializer(
        many=True,
        allow_empty=False,
        max_length=MAX_TARGETS,
        help_text="Where the route sends requests, in order (at least one). Writing it replaces the whole list.",
    )
    retry_on_statuses = serializers.ListField(
        child=serializers.IntegerField(min_value=400, max_value=599),
        required=False,
        max_length=200,
        help_text="Statuses that also move on to the next attempt, besides connect errors, timeouts, 429, 500, "
        "502, 503, 504 and 529: e.g. [400] for a too-long context, [401] for a revoked pooled key.",
    )

    class Meta:
        model = Route
        fields = [
            "id",
            "org",
            "name",
            "strategy",
            "targets",
            "retry_on_statuses",
            "retries_per_target",
            "max_attempts",
            "deadline_seconds",
            "first_byte_timeout_seconds",
            "drop_unsupported",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        # Uniqueness of the name in the org is checked with the rest of the route (tenancy.routes).
        validators = []

    def to_representation(self, route):
        data = super().to_representation(route)
        data["targets"] = [routes.target_snapshot(t) for t in route.targets.all()]
        return data

    def validate(self, data):
        """The whole route checked as the service will (one home for the rules: the models' clean), so every
        problem comes back as a field error, a target's under its position in `targets`."""
        org = data.get("org") or self.instance.org
        route = Route(pk=self.instance.pk if self.instance else None, org=org)
        for name in routes.ROUTE_FIELDS:
            value = data[name] if name in data else getattr(self.instance, name, None) if self.instance else None
            if value is not None or name == "first_byte_timeout_seconds":
                setattr(route, name, value)
        try:
            routes.check_name(route)
            route.full_clean(validate_unique=False, validate_constraints=False)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        if "targets" in data:
            data["targets"] = self._targets(org, route, data["targets"])
        return data

    def _targets(self, org, route, given):
        errors, resolved = [], []
        for target in given:
            target = dict(target)
            try:
                target["credential"] = routes.credential_by_name(org, target.get("credential"))
            except DjangoValidationError as exc:
                errors.append({"credential": exc.messages})
                resolved.append(None)
                continue
            errors.append({})
            resolved.append(target)
        built = routes.build_targets(route, [t for t in resolved if t is not None])
        checked = iter(routes.target_errors(route, built))
        errors = [found or next(checked) for found in errors]
        if any(errors):
            # Keyed by position, as DRF reports a target's own field errors.
            raise serializers.ValidationError({"targets": {str(i): found for i, found in enumerate(errors) if found}})
        return resolved


class RouteUpdateSerializer(RouteSerializer):
    class Meta(RouteSerializer.Meta):
        read_only_fields = [*RouteSerializer.Meta.read_only_fields, "org"]


class ScopedLimitSerializer(serializers.ModelSerializer):
    """A budget's or rate limit's scope: the team, app and key are chosen among what the caller may see, and the
    whole object is checked as the service will (tenancy.limits), so every problem is a field error."""

    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())
    team = ScopedPrimaryKeyField(queryset=Team.objects.all(), required=False, allow_null=True)
    app = ScopedPrimaryKeyField(queryset=App.objects.all(), required=False, allow_null=True)
    key = ScopedPrimaryKeyField(queryset=APIKey.objects.all(), required=False, allow_null=True)
    applies_to = serializers.CharField(source="scope_label", read_only=True, help_text="The scope, in words.")

    scope_fields = ["scope", "team", "app", "key", "user_id", "applies_to"]

    def validate(self, data):
        model = self.Meta.model
        names = limits.FIELDS[model]
        obj = model(pk=self.instance.pk if self.instance else None, org=data.get("org") or self.instance.org)
        changed_scope = self.instance is not None and "scope" in data and data["scope"] != self.instance.scope
        for name in names:
            if name in data:
                setattr(obj, name, data[name])
            elif self.instance is not None and not (changed_scope and name in ("team", "app", "key", "user_id")):
                setattr(obj, name, getattr(self.instance, name))
        try:
            limits.check(obj)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return data


class BudgetSerializer(ScopedLimitSerializer):
    thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        required=False,
        max_length=100,
        help_text="Percentages of the amount that record an alert once per period (default [50, 80, 100]).",
    )
    amount_usd = serializers.DecimalField(
        max_digits=16, decimal_places=6, help_text="USD per period, greater than zero."
    )

    class Meta:
        model = Budget
        fields = [
            "id",
            "org",
            "name",
            *ScopedLimitSerializer.scope_fields,
            "amount_usd",
            "period",
            "hard",
            "thresholds",
            "fail_open",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class BudgetUpdateSerializer(BudgetSerializer):
    class Meta(BudgetSerializer.Meta):
        read_only_fields = [*BudgetSerializer.Meta.read_only_fields, "org"]


class RateLimitSerializer(ScopedLimitSerializer):
    class Meta:
        model = RateLimit
        fields = [
            "id",
            "org",
            "name",
            *ScopedLimitSerializer.scope_fields,
            "requests_per_minute",
            "tokens_per_minute",
            "concurrent",
            "count_cache_reads",
            "fail_open",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class RateLimitUpdateSerializer(RateLimitSerializer):
    class Meta(RateLimitSerializer.Meta):
        read_only_fields = [*RateLimitSerializer.Meta.read_only_fields, "org"]


class CacheSettingsSerializer(serializers.ModelSerializer):
    """Response cache settings: the org's default (no app) or one app's, checked as the service will."""

    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())
    app = ScopedPrimaryKeyField(
        queryset=App.objects.all(),
        required=False,
        allow_null=True,
        help_text="Empty: the org's default. An app's settings replace the default for that app's requests.",
    )
    endpoints = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        max_length=64,
        help_text="Endpoints whose answers are kept (names such as chat.completions, messages); empty: all of them.",
    )

    class Meta:
        model = CacheSettings
        fields = [
            "id",
            "org",
            "app",
            "enabled",
            "ttl_seconds",
            "max_entry_bytes",
            "endpoints",
            "cache_positive_temperature",
            "namespace_per_app",
            "allow_files",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        validators = []  # the (org, app) uniqueness is checked by the model's clean, as a field error on `app`

    def validate(self, data):
        obj = checked_draft(self, CacheSettings, data, cache.FIELDS, cache.check)
        if "endpoints" in data:
            data["endpoints"] = obj.endpoints
        return data


class GuardrailPolicySerializer(serializers.ModelSerializer):
    """A guardrail policy: the org's default, an app's or a key's; its checks compiled as the service will (a bad
    regex or schema is a field error on `checks` naming the check and its field)."""

    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())
    app = ScopedPrimaryKeyField(
        queryset=App.objects.all(), required=False, allow_null=True, help_text="Empty: the org's default."
    )
    key = ScopedPrimaryKeyField(
        queryset=APIKey.objects.all(),
        required=False,
        allow_null=True,
        help_text="A gateway key's own policy (replaces its app's and the org's).",
    )
    checks = serializers.JSONField(
        required=False,
        help_text="A list of checks: {name, kind (regex, keywords, pii, models, max_size, json, moderation, judge), "
        "action (block, redact, flag), direction (request, response, both), message?} plus what the kind takes.",
    )

    class Meta:
        model = GuardrailPolicy
        fields = [
            "id",
            "org",
            "app",
            "key",
            "name",
            "enabled",
            "checks",
            "message",
            "stream_mode",
            "restore",
            "redact_stored",
            "on_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        validators = []  # one policy per org default, app and key: the model's clean says so on the field

    def validate(self, data):
        obj = checked_draft(self, GuardrailPolicy, data, guardrails.FIELDS, guardrails.check)
        if "checks" in data:
            data["checks"] = obj.checks
        return data


class GuardrailPolicyUpdateSerializer(GuardrailPolicySerializer):
    class Meta(GuardrailPolicySerializer.Meta):
        read_only_fields = [*GuardrailPolicySerializer.Meta.read_only_fields, "org", "app", "key"]


class CacheSettingsUpdateSerializer(CacheSettingsSerializer):
    class Meta(CacheSettingsSerializer.Meta):
        read_only_fields = [*CacheSettingsSerializer.Meta.read_only_fields, "org", "app"]


class CachePurgeSerializer(serializers.Serializer):
    """What to drop from the response cache: all of an org's entries, one namespace's, or one entry."""

    org = serializers.PrimaryKeyRelatedField(queryset=Organization.objects.all())
    namespace = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=256,
        help_text="Only this namespace's entries (an app's namespace, or what requests sent as "
        "X-Ingate-Cache-Namespace; empty string: entries of no namespace).",
    )
    key = serializers.RegexField(
        r"^[0-9a-f]{64}$",
        required=False,
        allow_null=True,
        help_text="Only this entry: its cache key (64 hex digits), in the namespace given or in any.",
        error_messages={"invalid": "A cache key is 64 lowercase hex digits."},
    )

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None:
            principal = principal_of(request)
            if not principal.is_staff:
                fields["org"].queryset = Organization.objects.filter(
                    pk__in=allowed_org_ids(principal, CacheSettings, VIEW)
                )
        return fields


class CachePurgeResultSerializer(serializers.Serializer):
    org = serializers.IntegerField()
    namespace = serializers.CharField(allow_null=True)
    key = serializers.CharField(allow_null=True)
    dropped = serializers.IntegerField(help_text="How many entries were dropped.")


class BudgetEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = BudgetEvent
        fields = [
            "id",
            "budget",
            "org",
            "kind",
            "threshold",
            "user_id",
            "period_start",
            "spend",
            "amount_usd",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


class AuditLogSerializer(serializers.ModelSerializer):
    actor_user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    actor_key = serializers.SlugRelatedField(slug_field="prefix", read_only=True)

    class Meta:
        model = AuditLog
        fields = [
            "id",
            "created_at",
            "org",
            "org_slug",
            "actor",
            "actor_user",
            "actor_key",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "ip",
            "via",
        ]
        read_only_fields = fields
