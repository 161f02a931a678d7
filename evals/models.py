"""Evals: datasets whose every change is a new immutable version, and eval runs of a dataset version against
one or more targets (a prompt version or raw messages, on a provider/model with parameters), scored by
evaluators (evals/evaluators/). One result row per (target, item): that uniqueness is what keeps a
resumed run from counting an item twice."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from ingate.immutable import Immutable
from tenancy.models import Organization


class Dataset(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["org__name", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="dataset_name_unique_in_org")]

    def __str__(self) -> str:
        return self.name

    @property
    def latest(self) -> DatasetVersion | None:
        return self.versions.order_by("-number").first()


class DatasetVersion(Immutable):
    """A frozen set of items. Adding, editing or removing items makes the next version."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(editable=False)
    message = models.CharField(max_length=500, blank=True, help_text="What changed, like a commit message.")
    item_count = models.PositiveIntegerField(default=0, editable=False)
    author_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    immutable_hint = "create a new version instead."

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.dataset}@v{self.number}"


class DatasetItem(Immutable):
    """One case: input as chat messages and/or prompt variables, the expected output, metadata and tags.
    `key` stays the same for the same item across versions, which is how comparisons line items up."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="items")
    key = models.UUIDField(default=uuid.uuid4, editable=False)
    position = models.PositiveIntegerField()
    messages = models.JSONField(null=True, blank=True)
    variables = models.JSONField(default=dict, blank=True)
    expected = models.TextField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    source_record = models.UUIDField(null=True, blank=True, help_text="The request record it was made from, if any.")

    immutable_hint = "create a new dataset version instead."

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="dataset_item_position_unique"),
            models.UniqueConstraint(fields=["version", "key"], name="dataset_item_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.version} #{self.position}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


FINISHED = (RunStatus.CANCELLED, RunStatus.COMPLETED, RunStatus.FAILED)


class EvalRun(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="eval_runs")
    name = models.CharField(max_length=200, blank=True)
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="runs")
    evaluators = models.JSONField(default=list, help_text='[{"kind": "exact_match", "name": "exact", …}, …]')
    concurrency = models.PositiveSmallIntegerField(default=4)
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="Targets × items.")
    done = models.PositiveIntegerField(default=0, help_text="Results stored, failed calls included.")
    failed = models.PositiveIntegerField(default=0, help_text="Items whose model call failed.")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker took the run up.")
    lease = models.UUIDField(null=True, blank=True, editable=False, help_text="The worker holding the run.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="eval_run_status_heartbeat")]

    def __str__(self) -> str:
        return self.name or f"run {self.pk}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def session_id(self) -> str:
        """Every call the run makes is recorded under this session, so its records read as one timeline."""
        return f"eval-run-{self.pk}"


class EvalTarget(models.Model):
    """What a run evaluates: a prompt version (rendered with each item's variables, then the item's messages)
    or raw messages (with {{variable}} placeholders, or none: the item's messages alone), on a model."""

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="targets")
    position = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=200, blank=True)
    prompt_version = models.ForeignKey(
        "prompts.PromptVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    messages = models.JSONField(default=list, blank=True)
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    parameters = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="Aggregates, written when the run finishes.")

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="eval_target_position_unique")]

    def __str__(self) -> str:
        return self.label or f"{self.provider}/{self.model}"


class EvalResult(models.Model):
    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    target = models.ForeignKey(EvalTarget, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(DatasetItem, on_delete=models.PROTECT, related_name="+")
    output = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="The model call's error, when it failed.")
    scores = models.JSONField(default=list, help_text='[{"name", "kind", "score", "passed", "explanation", "cost"}, …]')
    passed = models.BooleanField(default=False, help_text="Every evaluator passed.")
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True, help_text="The call's cost.")
    judge_cost = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    request_id = models.CharField(max_length=36, blank=True, help_text="The gateway's request record.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["target", "item__position"]
        constraints = [models.UniqueConstraint(fields=["target", "item"], name="eval_result_once_per_item")]

    def __str__(self) -> str:
        return f"{self.target} #{self.item_id}"
