"""Organizations, teams, apps, memberships, gateway keys, provider credentials, routes, budgets and rate limits,
response cache settings, and the audit log."""

import json
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from proxy import providers
from proxy.response_cache.key import CACHEABLE_ENDPOINTS

from . import periods
from .keys import KEY_MARKER


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


# --- routes (virtual models) -----------------------------------------------------------------------------

# A route's name is what clients send as `model`, so it takes what model names contain (`gpt-4o`,
# `claude-3-5-sonnet@20240620`, `meta-llama/Llama-3-70b`, `llama3:8b`), but no spaces or control characters.
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*\Z"
# The way one route would name another; refused, since a target always names a provider's own model.
ROUTE_REFERENCE = "route:"
# What moves a request on to the next attempt without being asked: connect errors and timeouts (no status), and
# these statuses. A route opts in to more (retry_on_statuses): a 400 for a too-long context, a 401 of one pooled key.
DEFAULT_MOVE_ON_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
MAX_TARGETS = 20
MAX_PARAMS_BYTES = 16_384
# Parameters a target may not override: the model is the target's own field, and a client that asked for a
# stream (or not) must get what it asked for.
FIXED_PARAMS = frozenset({"model", "stream"})


def _finite(value: float) -> None:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValidationError("Enter a finite number.")


def _model_name(value: str) -> None:
    if value.startswith(ROUTE_REFERENCE):
        raise ValidationError(
            f"'{ROUTE_REFERENCE}' names a route; routes do not nest, so a name may not start with it.",
            code="route_reference",
        )


model_name_validators = [
    RegexValidator(
        MODEL_NAME,
        "Use letters, digits and . _ : / @ + - only (no spaces), starting with a letter or digit.",
        code="invalid",
    )
]
# A target's model that names a route is refused by RouteTarget.clean, which can tell a loop from nesting.
route_name_validators = [*model_name_validators, _model_name]


class Strategy(models.TextChoices):
    FALLBACK = "fallback", "Fallback: targets in order"
    LOADBALANCE = "loadbalance", "Load balance: weighted random over healthy targets"
    LOWEST_LATENCY = "lowest-latency", "Lowest latency: fastest recent first byte, with a little exploration"


def whole_numbers(value, low: int, high: int, *, not_a_list: str, out_of_range: str) -> list[int]:
    """A list of whole numbers from `low` to `high` as stored: each once, sorted. ValidationError (with the given
    messages; `out_of_range` ends before the offending values, which are appended) else."""
    if not isinstance(value, list | tuple):
        raise ValidationError(not_a_list)
    wrong = [v for v in value if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high]
    if wrong:
        shown = ", ".join(repr(v) for v in wrong[:5])
        raise ValidationError(f"{out_of_range}; not {shown}.")
    return sorted(set(value))


def clean_statuses(value) -> list[int]:
    """The opt-in statuses as stored: whole numbers from 400 to 599, each once, sorted. ValidationError else."""
    return whole_numbers(
        value,
        400,
        599,
        not_a_list="Give a list of HTTP statuses, such as [400, 401].",
        out_of_range="Statuses are whole numbers from 400 to 599 (an error answer)",
    )


class Route(models.Model):
    """A virtual model of an org: a name clients send as `model` (`smart`, or a real model's name it shadows)
    and the ordered targets that serve it. Targets are final: a target's model goes to its provider as is and is
    never looked up as a route again, so routes cannot chain or loop."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="routes")
    name = models.CharField(
        max_length=200,
        validators=route_name_validators,
        help_text="What clients send as `model`. May be a real model's name (gpt-4o): the route then serves it.",
    )
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.FALLBACK)
    retry_on_statuses = models.JSONField(
        default=list,
        blank=True,
        help_text="Statuses that also move on to the next attempt, besides connect errors, timeouts, 429, 500, "
        "502, 503, 504 and 529: e.g. [400] for a too-long context, [401] for a revoked pooled key.",
    )
    retries_per_target = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(5)],
        help_text="Tries of the same target again before the next one (0 to 5).",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Upstream calls one request may make in all, retries included (1 to 10).",
    )
    deadline_seconds = models.FloatField(
        default=60.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600.0), _finite],
        help_text="No new attempt starts after this many seconds from the request's arrival.",
    )
    first_byte_timeout_seconds = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(600.0), _finite],
        help_text="A target that has sent nothing after this many seconds is left for the next one (empty: "
        "no limit beyond the deadline).",
    )
    drop_unsupported = models.BooleanField(
        default=False,
        help_text="When a target speaks another format, drop parameters it cannot take instead of refusing "
        "the request.",
    )
    enabled = models.BooleanField(default=True, help_text="A disabled route is ignored: its name goes on as is.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="route_name_unique_in_org")]

    def __str__(self) -> str:
        return f"{self.org.slug}/{self.name}" if self.org_id else self.name

    def clean(self) -> None:
        errors = {}
        try:
            self.retry_on_statuses = clean_statuses(self.retry_on_statuses)
        except ValidationError as exc:
            errors["retry_on_statuses"] = exc.messages
        limit, deadline = self.first_byte_timeout_seconds, self.deadline_seconds
        if limit is not None and deadline is not None and limit >= deadline:
            errors["first_byte_timeout_seconds"] = [
                f"The first-byte limit ({limit:g} s) must be shorter than the deadline ({deadline:g} s)."
            ]
        if errors:
            raise ValidationError(errors)


def provider_names_of(org_id: int) -> set[str]:
    """The provider names a route target of `org_id` may use: the registry's and the org's custom ones."""
    custom = ProviderCredential.objects.filter(org_id=org_id, provider=Provider.OPENAI_COMPATIBLE)
    return set(providers.PROVIDER_NAMES) | set(custom.values_list("name", flat=True))


class RouteTarget(models.Model):
    """One place a route sends its requests: a provider (registry name or the org's custom one), its model, and
    optionally which of the org's keys for that provider to use (a pool), a weight and parameter overrides."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="targets")
    position = models.PositiveSmallIntegerField(default=0, help_text="Order within the route, from 0.")
    provider = models.CharField(
        max_length=64, help_text="A provider's name (openai, anthropic, groq, …) or your custom provider's."
    )
    model = models.CharField(
        max_length=200, validators=model_name_validators, help_text="The provider's model, sent to it as is."
    )
    # RESTRICT: a credential a route uses cannot be deleted on its own (change the route first); deleting the
    # org deletes both.
    credential = models.ForeignKey(
        ProviderCredential,
        on_delete=models.RESTRICT,
        null=True,
        blank=True,
        related_name="route_targets",
        help_text="Which of your keys for this provider; empty: the one named after the provider.",
    )
    weight = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Share of requests under load balancing (1 to 1000).",
    )
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text='Request parameters this target overrides, as a JSON object: {"temperature": 0.2}.',
    )

    class Meta:
        ordering = ["route", "position", "pk"]
        verbose_name = "route target"

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        # The route may be unsaved (checked before it is: admin's inline forms, the API), but is always set.
        route = self.route if self.route_id is not None or RouteTarget.route.is_cached(self) else None
        org_id = route.org_id if route is not None else None
        if self.provider and org_id is not None:
            message = self._provider_problem(route)
            if message:
                errors["provider"] = [message]
        if self.model and route is not None and route.name and self.model == ROUTE_REFERENCE + route.name:
            errors["model"] = [
                f"This target names its own route ({route.name}): a loop. Name a provider's model instead."
            ]
        elif self.model and self.model.startswith(ROUTE_REFERENCE):
            errors["model"] = [
                f"Routes do not nest: name a provider's model, not {self.model!r}. List that route's targets here."
            ]
        if self.credential_id is not None and org_id is not None and "provider" not in errors:
            message = self._credential_problem(org_id)
            if message:
                errors["credential"] = [message]
        try:
            self.params = clean_params(self.params)
        except ValidationError as exc:
            errors["params"] = exc.messages
        if errors:
            raise ValidationError(errors)

    def _provider_problem(self, route: Route) -> str:
        # Read once per route object: its targets are checked together.
        names = route.__dict__.get("_provider_names")
        if names is None:
            names = route.__dict__["_provider_names"] = provider_names_of(route.org_id)
        if self.provider in names:
            return ""
        if self.provider == route.name:
            return f"{self.provider!r} is this route's own name, not a provider: a route cannot target itself."
        if route.org_id and Route.objects.filter(org_id=route.org_id, name=self.provider).exists():
            return f"{self.provider!r} is a route, not a provider: routes do not nest."
        known = ", ".join(sorted(names))
        return f"Unknown provider {self.provider!r}. Known: {known}."

    def _credential_problem(self, org_id: int) -> str:
        credential = self.credential
        if credential.org_id != org_id:
            return "This credential belongs to another organization."
        # An OpenAI-compatible credential is a provider of its own name; a built-in one names its provider.
        for_provider = credential.name if credential.provider == Provider.OPENAI_COMPATIBLE else credential.provider
        if for_provider != self.provider:
            return f"The credential {credential.name!r} is for {for_provider}, not {self.provider}."
        return ""


def clean_params(value) -> dict:
    """Per-target parameter overrides: a JSON object, without `model` or `stream`, of reasonable size."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError('Give the parameters as a JSON object, such as {"temperature": 0.2}.')
    fixed = sorted(FIXED_PARAMS & set(value))
    if fixed:
        raise ValidationError(
            f"A target cannot override {', '.join(fixed)}: the model is the target's own field, and streaming is "
            "what the client asked for."
        )
    if len(json.dumps(value)) > MAX_PARAMS_BYTES:
        raise ValidationError(f"The parameters are too large (more than {MAX_PARAMS_BYTES} bytes of JSON).")
    return value


# --- budgets and rate limits -----------------------------------------------------------------------------


class LimitScope(models.TextChoices):
    ORG = "org", "Organization"
    TEAM = "team", "Team"
    APP = "app", "App"
    KEY = "key", "Gateway key"
    USER = "user", "End user"


class Period(models.TextChoices):
    DAY = periods.DAY, "Day"
    WEEK = periods.WEEK, "Week (from Monday)"
    MONTH = periods.MONTH, "Month"
    TOTAL = periods.TOTAL, "Total (never resets)"


DEFAULT_THRESHOLDS = (50, 80, 100)
# The object each scope names; `user` names an end user by text (the record's user_id), optionally in one app.
_SCOPE_OBJECT = {LimitScope.TEAM: "team", LimitScope.APP: "app", LimitScope.KEY: "key"}


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


def clean_thresholds(value) -> list[int]:
    """Alert thresholds as stored: whole percentages from 1 to 100, each once, sorted. ValidationError else."""
    return whole_numbers(
        value,
        1,
        100,
        not_a_list="Give the alert thresholds as a list of percentages, such as [50, 80, 100].",
        out_of_range="Thresholds are whole percentages from 1 to 100",
    )


class ScopedLimit(models.Model):
    """What a budget or a rate limit applies to: the whole org, one team, app or gateway key of it, or an end user
    (the `user_id` requests carry), either everywhere in the org or within one app. A user-scoped row with an app
    and no user_id is that app's default: every user of the app gets it, unless the app has a row for that user."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="%(class)ss")
    scope = models.CharField(max_length=8, choices=LimitScope.choices, default=LimitScope.ORG)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="%(class)ss")
    app = models.ForeignKey(
        App,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="%(class)ss",
        help_text="App scope: the app. User scope: only this app's requests (with no user: each user of the app).",
    )
    key = models.ForeignKey(APIKey, on_delete=models.CASCADE, null=True, blank=True, related_name="%(class)ss")
    user_id = models.CharField(
        max_length=200,
        blank=True,
        help_text="User scope: the end user, as requests name it (X-Ingate-User, the body's user). Empty, with an "
        "app: the default for each user of that app.",
    )
    name = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True, help_text="A disabled one is not enforced.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        abstract = True
        ordering = ["org__name", "scope", "pk"]

    @property
    def is_user_default(self) -> bool:
        return self.scope == LimitScope.USER and self.app_id is not None and not self.user_id

    def scope_label(self) -> str:
        """What it applies to, as pages and the admin list show it."""
        if self.scope == LimitScope.ORG:
            return "whole organization"
        if self.scope == LimitScope.USER:
            where = f" in app {self.app.slug}" if self.app_id else ""
            return f"each user{where} (default)" if not self.user_id else f"user {self.user_id}{where}"
        obj = getattr(self, _SCOPE_OBJECT[self.scope])
        shown = obj.display if isinstance(obj, APIKey) else obj.slug
        return f"{self.get_scope_display().lower()} {shown}"

    def __str__(self) -> str:
        return self.name or self.scope_label()

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        self.user_id = (self.user_id or "").strip()
        wanted = {_SCOPE_OBJECT.get(self.scope)} | ({"app"} if self.scope == LimitScope.USER else set())
        for field in ("team", "app", "key"):
            present = getattr(self, f"{field}_id") is not None
            if field == _SCOPE_OBJECT.get(self.scope) and not present:
                errors[field] = [f"A {self.get_scope_display().lower()} budget or limit needs its {field}."]
            elif present and field not in wanted:
                errors[field] = [f"Leave {field} empty for scope {self.scope}."]
            elif present and self.org_id is not None and getattr(self, field).org_id != self.org_id:
                errors[field] = [f"This {field} belongs to another organization."]
        if self.scope == LimitScope.USER:
            if not self.user_id and self.app_id is None and "app" not in errors:
                errors["user_id"] = ["Name the end user, or choose an app to set the default for each of its users."]
        elif self.user_id:
            errors["user_id"] = ["Only a user-scoped budget or limit names an end user."]
        if errors:
            raise ValidationError(errors)


def _positive(value: Decimal) -> None:
    if value is not None and value <= 0:
        raise ValidationError("Enter an amount greater than zero.")


class Budget(ScopedLimit):
    """A USD amount per period on a scope. Hard: requests are refused once the period's spend reaches it; soft:
    alerts only. Each alert threshold is recorded once per period (BudgetEvent). Every budget that applies to a
    request must pass. Unpriced requests are refused under a hard budget unless the org overrides the price."""

    amount_usd = models.DecimalField(
        max_digits=16, decimal_places=6, validators=[_positive], help_text="USD per period, greater than zero."
    )
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    hard = models.BooleanField(
        default=True, help_text="Refuse requests once reached; unticked: a soft budget, which only alerts."
    )
    thresholds = models.JSONField(
        default=default_thresholds,
        blank=True,
        help_text="Percentages of the amount that record an alert once per period, such as [50, 80, 100].",
    )
    fail_open = models.BooleanField(
        default=False,
        help_text="When Redis is unreachable: let requests through (ticked) or refuse them (the default).",
    )

    class Meta(ScopedLimit.Meta):
        indexes = [models.Index(fields=["org", "enabled"], name="budget_org_enabled")]

    def clean(self) -> None:
        errors = {}
        try:
            super().clean()
        except ValidationError as exc:
            errors.update(exc.message_dict)
        try:
            self.thresholds = clean_thresholds(self.thresholds if self.thresholds is not None else [])
        except ValidationError as exc:
            errors["thresholds"] = exc.messages
        if errors:
            raise ValidationError(errors)


class RateLimit(ScopedLimit):
    """Requests per minute, tokens per minute (input + output; cache reads only when `count_cache_reads`) and
    concurrent requests on a scope; at least one of the three is set."""

    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    concurrent = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Requests in flight at once."
    )
    count_cache_reads = models.BooleanField(
        default=False, help_text="Count cached prompt tokens (cache reads) in tokens per minute."
    )
    fail_open = models.BooleanField(
        default=True,
        help_text="When Redis is unreachable: let requests through (the default) or refuse them (unticked).",
    )

    class Meta(ScopedLimit.Meta):
        verbose_name = "rate limit"
        indexes = [models.Index(fields=["org", "enabled"], name="ratelimit_org_enabled")]

    def clean(self) -> None:
        errors = {}
        try:
            super().clean()
        except ValidationError as exc:
            errors.update(exc.message_dict)
        if self.requests_per_minute is None and self.tokens_per_minute is None and self.concurrent is None:
            errors["requests_per_minute"] = [
                "Set at least one of requests per minute, tokens per minute and concurrent requests."
            ]
        if errors:
            raise ValidationError(errors)


class BudgetEventKind(models.TextChoices):
    THRESHOLD = "threshold", "Threshold crossed"
    REACHED = "reached", "Budget reached"


class BudgetEvent(models.Model):
    """A budget's spend crossed one of its thresholds in a period (100 % and more: `reached`). Recorded once per
    budget, period, threshold and (for an app's per-user default) user; `delivered_at` is for webhooks."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="events")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="budget_events")
    kind = models.CharField(max_length=12, choices=BudgetEventKind.choices)
    threshold = models.PositiveSmallIntegerField()
    user_id = models.CharField(max_length=200, blank=True, help_text="For an app's per-user default: which user.")
    period_start = models.DateTimeField()
    spend = models.DecimalField(max_digits=20, decimal_places=10)
    amount_usd = models.DecimalField(max_digits=16, decimal_places=6, help_text="The budget's amount at the time.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "budget event"
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_start", "threshold", "user_id"], name="budget_event_once_per_period"
            )
        ]
        indexes = [models.Index(fields=["org", "-created_at"], name="budget_event_org_time")]

    def __str__(self) -> str:
        who = f" ({self.user_id})" if self.user_id else ""
        return f"{self.budget}{who}: {self.threshold}% on {self.period_start:%Y-%m-%d}"


# --- the response cache ------------------------------------------------------------------------------------

MIB = 1024 * 1024
DEFAULT_CACHE_TTL = 24 * 3600
MAX_CACHE_TTL = 30 * 24 * 3600
DEFAULT_ENTRY_BYTES = MIB
MAX_ENTRY_BYTES = 16 * MIB  # proxy.response_cache.store refuses anything larger whatever the setting


class PositiveTemperature(models.TextChoices):
    NEVER = "never", "Never"
    WHEN_ASKED = "when_asked", "Only when the request asks (X-Ingate-Cache: on, Helicone-Cache-Enabled)"
    ALWAYS = "always", "Always"


def clean_cache_endpoints(value) -> list[str]:
    """The endpoints a cache setting covers, as stored: names from CACHEABLE_ENDPOINTS, each once, sorted; an empty
    list means all of them. ValidationError else."""
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValidationError('Give the endpoints as a list of names, such as ["chat.completions", "messages"].')
    unknown = sorted(set(value) - set(CACHEABLE_ENDPOINTS))
    if unknown:
        raise ValidationError(
            f"Not a cacheable endpoint: {', '.join(unknown[:5])}. Choose among {', '.join(CACHEABLE_ENDPOINTS)}; "
            "leave the list empty for all of them."
        )
    return sorted(set(value))


def default_cache_endpoints() -> list[str]:
    return []


class CacheSettings(models.Model):
    """Whether and how the response cache keeps an org's answers: the org's default (no app), and an app's own row
    that replaces it for that app's requests. Entries are never shared between orgs, whatever is set here."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="cache_settings")
    app = models.ForeignKey(
        App,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="cache_settings",
        help_text="Empty: the org's default. An app's row replaces the default for that app's requests.",
    )
    enabled = models.BooleanField(default=False)
    ttl_seconds = models.PositiveIntegerField(
        default=DEFAULT_CACHE_TTL,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CACHE_TTL)],
        help_text="How long an answer is kept, in seconds (1 second to 30 days; default 24 hours).",
    )
    max_entry_bytes = models.PositiveIntegerField(
        default=DEFAULT_ENTRY_BYTES,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_ENTRY_BYTES)],
        help_text="Larger answers are not kept (bytes, up to 16 MiB; default 1 MiB).",
    )
    endpoints = models.JSONField(
        default=default_cache_endpoints,
        blank=True,
        help_text='Endpoints whose answers are kept, such as ["chat.completions", "messages"]; empty: all of them.',
    )
    cache_positive_temperature = models.CharField(
        max_length=12,
        choices=PositiveTemperature.choices,
        default=PositiveTemperature.WHEN_ASKED,
        help_text="Requests that sample (temperature above 0, or unset) may give another answer when asked again.",
    )
    namespace_per_app = models.BooleanField(
        default=True, help_text="Each app keeps its own entries; unticked: the org's apps share them."
    )
    allow_files = models.BooleanField(
        default=False, help_text="Also keep answers to requests that carry files (documents, uploads)."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name", "app__name", "pk"]
        verbose_name = "cache settings"
        verbose_name_plural = "cache settings"
        constraints = [
            models.UniqueConstraint(fields=["org", "app"], name="cache_settings_unique_app"),
            models.UniqueConstraint(
                fields=["org"], condition=models.Q(app__isnull=True), name="cache_settings_unique_org_default"
            ),
        ]

    def __str__(self) -> str:
        where = f"app {self.app.slug}" if self.app_id else "org default"
        return f"{self.org.slug if self.org_id else '?'}: cache ({where})"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        try:
            self.endpoints = clean_cache_endpoints(self.endpoints)
        except ValidationError as exc:
            errors["endpoints"] = exc.messages
        if self.app_id is not None and self.org_id is not None and self.app.org_id != self.org_id:
            errors["app"] = ["This app belongs to another organization."]
        if self.org_id is not None:
            taken = CacheSettings.objects.filter(org_id=self.org_id, app_id=self.app_id).exclude(pk=self.pk)
            if "app" not in errors and taken.exists():
                which = "This app already has" if self.app_id else "The organization already has its default"
                errors["app"] = [f"{which} cache settings; change those instead."]
        if errors:
            raise ValidationError(errors)


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
