"""Organizations, teams, apps, memberships, gateway keys, provider credentials and the audit log."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from proxy import providers

from .keys import KEY_MARKER


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def org_id(self) -> int:
        # Lets the scoping code treat an organization like every other org-owned object.
        return self.pk


class Team(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="TeamMembership", related_name="ingate_teams")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "slug"], name="team_slug_unique_in_org")]

    def __str__(self) -> str:
        return f"{self.org.slug}/{self.slug}"


class App(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="apps")
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="apps")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "slug"], name="app_slug_unique_in_org")]
        # A per-object grant (django-guardian): full control of one app and its keys.
        permissions = [("manage_app", "Can manage this app and its gateway keys")]

    def __str__(self) -> str:
        return f"{self.org.slug}/{self.slug}"


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ingate_memberships")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["user", "org"], name="one_membership_per_user_and_org")]

    def __str__(self) -> str:
        return f"{self.user} in {self.org.slug} ({self.role})"


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ingate_team_memberships")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_team_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"

    @property
    def org_id(self) -> int:
        return self.team.org_id


class Scope(models.TextChoices):
    PROXY = "proxy", "Call providers through the gateway"
    LOGS_READ = "logs:read", "Read request records"
    PROMPTS_READ = "prompts:read", "Read prompts"
    PROMPTS_WRITE = "prompts:write", "Write prompts"
    EVALS_RUN = "evals:run", "Run evals"
    ADMIN = "admin", "Manage the organization through the API"


class APIKey(models.Model):
    """A gateway key. The full key is shown once; only its visible prefix and an HMAC digest are kept."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "gateway key"

    def __str__(self) -> str:
        return f"{self.name} ({self.display})"

    @property
    def display(self) -> str:
        return f"{KEY_MARKER}{self.prefix}…"

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"


# What a stored credential may be for: the registry's built-in providers (proxy.providers, the one list), or an
# org's own OpenAI-compatible endpoint; the registered compatible providers (Groq, …) are the latter by name.
Provider = models.TextChoices(
    "Provider",
    [(name.upper(), (name, providers.REGISTRY[name].label)) for name in providers.BUILTIN_PROVIDERS]
    + [(providers.OPENAI_COMPATIBLE.upper(), (providers.OPENAI_COMPATIBLE, providers.CUSTOM_COMPATIBLE.label))],
    module=__name__,
)

_AUTH_LABELS = {
    providers.AuthStyle.BEARER: "Authorization: Bearer",
    providers.AuthStyle.X_API_KEY: "x-api-key header",
    providers.AuthStyle.API_KEY: "api-key header",
    providers.AuthStyle.GOOG: "x-goog-api-key header",
    providers.AuthStyle.NONE: "No authentication",
}
# The proxy's auth styles (proxy.providers.AuthStyle) as model choices, with the words forms show.
AuthStyle = models.TextChoices(
    "AuthStyle", [(style.name, (style.value, _AUTH_LABELS[style])) for style in providers.AuthStyle], module=__name__
)


class ProviderCredential(models.Model):
    """An org's key for one provider, encrypted at rest and never shown again after saving.

    `name` is how the proxy finds it: the provider's own name (`openai`, `groq`, …) or, for a custom
    OpenAI-compatible endpoint, the name used in `/p/<name>/…` and `X-Ingate-Provider`.
    """

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="provider_credentials")
    provider = models.CharField(max_length=32, choices=Provider.choices)
    name = models.SlugField(max_length=64)
    base_url = models.URLField(blank=True, help_text="Overrides the provider's default upstream URL.")
    api_version = models.CharField(max_length=32, blank=True, help_text="Azure OpenAI api-version.")
    auth_style = models.CharField(max_length=16, choices=AuthStyle.choices, blank=True)
    secret_encrypted = models.TextField(blank=True, editable=False)
    secret_hint = models.CharField(max_length=32, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="credential_name_unique_in_org")]

    def __str__(self) -> str:
        return f"{self.org.slug}/{self.name}"

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.provider != Provider.OPENAI_COMPATIBLE:
            if self.name and self.name != self.provider:
                raise ValidationError(
                    {"name": f"A {self.get_provider_display()} credential is named {self.provider!r}."}
                )
            self.name = self.provider
        elif self.name in providers.PROVIDER_NAMES and self.name not in providers.COMPATIBLE_PROVIDERS:
            raise ValidationError({"name": f"{self.name!r} is a built-in provider; choose it as the provider instead."})
        elif self.name not in providers.COMPATIBLE_PROVIDERS and not self.base_url:
            raise ValidationError({"base_url": "A custom OpenAI-compatible provider needs its base URL."})
        if self.provider == Provider.AZURE and not self.base_url:
            raise ValidationError(
                {"base_url": "Azure OpenAI needs your resource endpoint, e.g. https://NAME.openai.azure.com."}
            )


class AuditLogQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit log is append-only.")

    def delete(self):
        raise PermissionError("The audit log is append-only.")


class AuditLog(models.Model):
    """Append-only record of who changed what. Rows are never updated or deleted by the application."""

    org = models.ForeignKey(Organization, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Kept as text too, so an entry still says which org it was about after the org is deleted.
    org_slug = models.CharField(max_length=100, blank=True)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_key = models.ForeignKey(APIKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor = models.CharField(max_length=200, help_text="Who acted, as text (survives deletion of the actor).")
    action = models.CharField(max_length=32, db_index=True)
    object_type = models.CharField(max_length=100, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=16, blank=True, help_text="admin, api, cli or web")
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["org", "-created_at"], name="audit_org_time")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_type} {self.object_repr}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("The audit log is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit log is append-only.")
