"""An org's own bucket: where its records (and bodies) are written as files, and the runs that wrote them."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from .orgs import Organization

# S3's rules for a bucket name (virtual-host style): 3 to 63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"[A-Za-z0-9!_.*'()/-]*")


def validate_bucket(value: str) -> None:
    if not _BUCKET.fullmatch(value or "") or ".." in value:
        raise ValidationError(
            "A bucket name is 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a "
            "letter or digit."
        )


def clean_prefix(value: str) -> str:
    """A key prefix as stored: no leading or trailing slash, no empty or dot segments. ValidationError else."""
    value = (value or "").strip().strip("/")
    if not _PREFIX.fullmatch(value):
        raise ValidationError("Use letters, digits and ! _ . * ' ( ) - / in a prefix, such as ingate/prod.")
    if any(part in ("", ".", "..") for part in value.split("/")) and value:
        raise ValidationError("A prefix has no empty, '.' or '..' parts (ingate/prod, not ingate//prod).")
    return value


class ExportFormat(models.TextChoices):
    PARQUET = "parquet", "Parquet"
    PARQUET_JSONL = "parquet+jsonl", "Parquet and JSON Lines"


class StorageExport(models.Model):
    """An org's S3-compatible bucket. Records go there hour by hour, each hour to the same object names, so a run
    done again rewrites them; `exported_until` says up to when the bucket holds them (it moves only after a
    write succeeded). Access keys are encrypted at rest and never shown again after saving."""

    org = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="storage_export")
    enabled = models.BooleanField(default=True)
    endpoint_url = models.URLField(
        blank=True,
        help_text="The S3-compatible endpoint (MinIO, R2, GCS interoperability …); empty: Amazon S3 itself.",
    )
    region = models.CharField(max_length=64, default="us-east-1")
    bucket = models.CharField(max_length=63, validators=[validate_bucket])
    prefix = models.CharField(
        max_length=200, blank=True, help_text="Objects go under this prefix, such as ingate/prod (no slashes around)."
    )
    access_key_encrypted = models.TextField(blank=True, editable=False)
    access_key_hint = models.CharField(max_length=32, blank=True, editable=False)
    secret_key_encrypted = models.TextField(blank=True, editable=False)
    secret_key_hint = models.CharField(max_length=32, blank=True, editable=False)
    formats = models.CharField(max_length=16, choices=ExportFormat.choices, default=ExportFormat.PARQUET)
    include_bodies = models.BooleanField(
        default=True, help_text="Also write the request and response bodies Ingate keeps (by the org's body mode)."
    )
    bodies_only_in_bucket = models.BooleanField(
        default=False,
        help_text="Ingate's database keeps no bodies of this org: they wait only until the next run writes them "
        "to the bucket (the logs page then shows none).",
    )
    every_hours = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(24)],
        help_text="How often a run writes the hours that ended since the last one (1 to 24; default every hour).",
    )
    exported_until = models.DateTimeField(
        null=True, blank=True, help_text="The bucket holds the org's records up to here (the next run starts here)."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name"]
        verbose_name = "storage export"

    def __str__(self) -> str:
        return f"{self.org.slug if self.org_id else '?'}: s3://{self.bucket}/{self.prefix}"

    def clean(self) -> None:
        try:
            self.prefix = clean_prefix(self.prefix)
        except ValidationError as exc:
            raise ValidationError({"prefix": exc.messages}) from None


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class StorageExportRun(models.Model):
    """One run of an org's export: which hours it wrote, how many rows, or why it failed."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="storage_export_runs")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    trigger = models.CharField(max_length=16, default="schedule")  # or "manual"
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    records = models.PositiveIntegerField(default=0)
    bodies = models.PositiveIntegerField(default=0)
    written = models.JSONField(default=list, blank=True, help_text="The object keys this run wrote.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["org", "-started_at"], name="storage_run_org_started")]

    def __str__(self) -> str:
        return f"{self.org.slug if self.org_id else '?'}: export {self.status} at {self.started_at:%Y-%m-%d %H:%M}"
