"""Routes (virtual models) and their targets."""

import json

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from proxy import providers

from .orgs import Organization, Provider, ProviderCredential

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
