"""Guardrail policies per org, app or key: a list of checks (validated and compiled when saved; see
proxy/guardrails/checks.py for what each kind takes) and how the answer side behaves."""

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from proxy.guardrails.checks import CheckError, clean_checks

from .orgs import APIKey, App, Organization


class StreamMode(models.TextChoices):
    HOLD = "hold", "Hold: release each piece of a stream once it is checked"
    WATCH = "watch", "Watch: pass the stream on, end it with an error on a violation"


class OnError(models.TextChoices):
    BLOCK = "block", "Block the request (fail closed)"
    ALLOW = "allow", "Let it through and record the failure"


def default_checks() -> list:
    return []


class GuardrailPolicy(models.Model):
    """The checks that apply to an org's requests: its default (no app, no key), an app's, or a key's; the most
    specific one applies alone (key, then app, then the org's default)."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="guardrail_policies")
    app = models.ForeignKey(
        App, on_delete=models.CASCADE, null=True, blank=True, related_name="guardrail_policies",
        help_text="Empty: the org's default. An app's policy replaces the default for that app's requests.",
    )  # fmt: skip
    key = models.ForeignKey(
        APIKey, on_delete=models.CASCADE, null=True, blank=True, related_name="guardrail_policies",
        help_text="A gateway key's own policy replaces its app's and the org's.",
    )  # fmt: skip
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    checks = models.JSONField(
        default=default_checks,
        blank=True,
        help_text='A list of checks, e.g. [{"name": "pii", "kind": "pii", "action": "redact"}, {"name": '
        '"no-secrets", "kind": "regex", "pattern": "sk-[A-Za-z0-9]{20,}", "action": "block"}].',
    )
    message = models.CharField(
        max_length=500, blank=True, help_text="What a client whose request or answer is blocked reads."
    )
    stream_mode = models.CharField(max_length=8, choices=StreamMode.choices, default=StreamMode.HOLD)
    restore = models.BooleanField(
        default=False, help_text="Put redacted values back into the answer (placeholders such as <EMAIL_1>)."
    )
    redact_stored = models.BooleanField(
        default=False, help_text="Redact PII in the bodies kept in full mode before they are written."
    )
    on_error = models.CharField(max_length=8, choices=OnError.choices, default=OnError.BLOCK)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name", "app__name", "pk"]
        verbose_name = "guardrail policy"
        verbose_name_plural = "guardrail policies"
        constraints = [
            models.UniqueConstraint(
                fields=["org"],
                condition=models.Q(app__isnull=True, key__isnull=True),
                name="guardrail_policy_unique_org_default",
            ),
            models.UniqueConstraint(
                fields=["org", "app"], condition=models.Q(key__isnull=True), name="guardrail_policy_unique_app"
            ),
            models.UniqueConstraint(fields=["org", "key"], name="guardrail_policy_unique_key"),
        ]

    def __str__(self) -> str:
        where = f"key {self.key.prefix}" if self.key_id else f"app {self.app.slug}" if self.app_id else "org default"
        return f"{self.org.slug if self.org_id else '?'}: {self.name} ({where})"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        try:
            self.checks = clean_checks(self.checks)
        except CheckError as exc:
            errors["checks"] = [str(exc)]
        if self.org_id is not None:
            if self.app_id is not None and self.app.org_id != self.org_id:
                errors["app"] = ["This app belongs to another organization."]
            if self.key_id is not None and self.key.org_id != self.org_id:
                errors["key"] = ["This key belongs to another organization."]
            if self.key_id is not None:
                self.app = None  # a key's policy is found by the key alone
            taken = GuardrailPolicy.objects.filter(org_id=self.org_id, app_id=self.app_id, key_id=self.key_id)
            if not errors and taken.exclude(pk=self.pk).exists():
                which = "This key" if self.key_id else "This app" if self.app_id else "The organization's default"
                errors["key" if self.key_id else "app"] = [f"{which} already has a policy; change that one instead."]
        if errors:
            raise ValidationError(errors)
