"""Bodies of orgs that keep them only in their bucket, held until the next export run writes them there."""

from django.db import models
from django.utils import timezone

from tenancy.models import Organization


class PendingBody(models.Model):
    """A record's bodies (RequestBody's values) on their way to the org's bucket: the record writer puts them here
    instead of RequestBody, and the export run deletes them once the bucket has them. No page reads them."""

    record_id = models.UUIDField(primary_key=True)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, help_text="The record's.")
    metadata = models.JSONField(default=dict, blank=True)
    request = models.TextField(blank=True)
    response = models.TextField(blank=True)
    truncated = models.BooleanField(default=False)

    class Meta:
        app_label = "observability"
        indexes = [models.Index(fields=["org", "created_at"], name="pending_body_org_created")]
