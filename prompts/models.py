"""The prompt registry: namespaces, prompts, immutable versions, and labels (environments) pointing at one
version each, with every move of a label kept."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from ingate.immutable import Immutable
from tenancy.models import Organization

_PATH = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$", "Use lower-case words separated by '/', e.g. support/billing."
)
_SLUG = RegexValidator(r"^[a-z0-9][a-z0-9_-]*$", "Use lower-case letters, digits, '-' and '_'.")

STANDARD_LABELS = ("development", "staging", "production")


class Namespace(models.Model):
    """A folder of prompts; nesting is in the path (`support/billing` sits inside `support`)."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="prompt_namespaces")
    path = models.CharField(max_length=200, validators=[_PATH])
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name", "path"]
        constraints = [models.UniqueConstraint(fields=["org", "path"], name="namespace_path_unique_in_org")]

    def __str__(self) -> str:
        return self.path


class Prompt(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="prompts")
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="prompts")
    name = models.CharField(max_length=100, validators=[_SLUG])
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["namespace__path", "name"]
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="prompt_name_unique_in_namespace")]

    def __str__(self) -> str:
        return f"{self.namespace.path}/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.namespace.path}/{self.name}"


class PromptVersion(Immutable):
    """One version of a prompt, never changed once saved: chat messages and/or a text template with
    {{variable}} placeholders, the model and its parameters."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(editable=False)
    messages = models.JSONField(default=list, blank=True, help_text='[{"role": "system", "content": "…{{name}}…"}, …]')
    template = models.TextField(blank=True, help_text="A text template, for completion-style prompts.")
    variables = models.JSONField(
        default=dict, blank=True, help_text='Optional types: {"name": "string", "count": "number"}'
    )
    model = models.CharField(max_length=200, blank=True)
    parameters = models.JSONField(default=dict, blank=True, help_text="temperature, max_tokens, response_format, …")
    commit_message = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    author_name = models.CharField(max_length=200, blank=True, help_text="Who made it, as text (survives the user).")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    immutable_hint = "create a new version instead."

    class Meta:
        ordering = ["prompt", "-number"]
        constraints = [models.UniqueConstraint(fields=["prompt", "number"], name="prompt_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.prompt}@{self.number}"


class Label(models.Model):
    """An environment (`production`, …, or any name an org uses) pointing at one version of a prompt."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=50, validators=[_SLUG])
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="labels")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["prompt", "name"]
        constraints = [models.UniqueConstraint(fields=["prompt", "name"], name="label_unique_per_prompt")]

    def __str__(self) -> str:
        return f"{self.prompt}@{self.name} -> {self.version.number}"


class LabelMove(models.Model):
    """Every time a label moved: what rollback reads, and the history the UI shows."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="label_moves")
    label = models.CharField(max_length=50)
    from_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    to_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, help_text="set, promote or rollback")
    actor = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.prompt} {self.label}: {self.from_version_id} -> {self.to_version_id}"
