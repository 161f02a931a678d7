"""Budgets, rate limits and budget events."""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from .. import periods
from .orgs import APIKey, App, Organization, Team
from .routing import whole_numbers


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
