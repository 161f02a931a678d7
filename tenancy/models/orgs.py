"""Organizations, teams, apps, memberships, gateway keys and provider credentials."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from proxy import providers

from .. import periods
from ..keys import KEY_MARKER


def validate_timezone(value: str) -> None:
    try:
        periods.zone(value)
    except ValueError as exc:
        raise ValidationError(str(exc), code="invalid_timezone") from None


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # After created_at: in the class body this name hides django.utils.timezone.
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="IANA time zone (UTC, Europe/Paris, America/New_York): budget periods reset at its midnights.",
    )

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
    SCORES_WRITE = "scores:write", "Score request records (feedback from an application)"
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
    OpenAI-compatible endpoint, the name used in `/p/<name>/…` and `X-Ingate-Provider`. A built-in provider may
    have more keys under other names (`openai-backup`): a key pool that route targets pick by name; requests
    that name no route keep using the credential named after the provider.
    """

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="provider_credentials")
    provider = models.CharField(max_length=32, choices=Provider.choices)
    name = models.SlugField(
        max_length=64,
        help_text="The provider's own name for the key every request uses; another name (openai-backup) for an "
        "extra key that only routes use; for a custom OpenAI-compatible endpoint, the name requests use.",
    )
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

    @property
    def is_pooled(self) -> bool:
        """An extra key of a built-in provider (`openai-backup`): only routes use it, by name; the plain proxy
        uses the credential named after the provider."""
        return self.provider != Provider.OPENAI_COMPATIBLE and bool(self.name) and self.name != self.provider

    def clean(self) -> None:
        if self.provider != Provider.OPENAI_COMPATIBLE:
            if not self.name:
                self.name = self.provider
            elif self.name != self.provider and self.name in providers.PROVIDER_NAMES:
                raise ValidationError(
                    {
                        "name": f"{self.name!r} is another provider's name. Name a {self.get_provider_display()} "
                        f"credential {self.provider!r} (the one every request uses), or give an extra key for "
                        f"routes a name of its own, such as '{self.provider}-backup'."
                    }
                )
        elif self.name in providers.PROVIDER_NAMES and self.name not in providers.COMPATIBLE_PROVIDERS:
            raise ValidationError({"name": f"{self.name!r} is a built-in provider; choose it as the provider instead."})
        elif self.name not in providers.COMPATIBLE_PROVIDERS and not self.base_url:
            raise ValidationError({"base_url": "A custom OpenAI-compatible provider needs its base URL."})
        if self.provider == Provider.AZURE and not self.base_url:
            raise ValidationError(
                {"base_url": "Azure OpenAI needs your resource endpoint, e.g. https://NAME.openai.azure.com."}
            )
