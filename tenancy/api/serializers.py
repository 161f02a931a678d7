"""API representations. Related-object choices are always narrowed to what the caller may see."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from ..models import (
    APIKey,
    App,
    AuditLog,
    Membership,
    Organization,
    ProviderCredential,
    Role,
    Scope,
    Team,
    TeamMembership,
)
from ..permissions import VIEW, allowed_org_ids, restrict, role_in
from .permissions import principal_of

User = get_user_model()


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
        fields = ["id", "name", "slug", "is_active", "created_at", "role"]
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
