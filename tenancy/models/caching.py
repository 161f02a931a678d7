"""Response cache settings per org and app."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from proxy.response_cache.key import CACHEABLE_ENDPOINTS

from .orgs import App, Organization

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
