"""Webhooks: an org's endpoints (URL, events, signing secrets), the events Ingate emitted for it, and the log of
each event's delivery to each endpoint. The catalogue of event types and the sending live in `tenancy/webhooks/`."""

from django.db import models
from django.utils import timezone

from .orgs import Organization


class WebhookEndpoint(models.Model):
    """Where an org's events go. The signing secret (`whsec_…`) is shown once when made or rotated and kept
    encrypted (tenancy/crypto.py); after a rotation the previous secret still signs until `previous_expires_at`,
    so receivers can switch without dropping a message. An endpoint failing for too long is disabled
    (`disabled_reason` says why; the webhooks page shows it)."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000, help_text="http(s) URL that receives the events (POST, JSON).")
    description = models.CharField(max_length=500, blank=True)
    events = models.JSONField(
        default=list, blank=True, help_text="Event types sent here (see the README's catalogue); empty: all of them."
    )
    failed_statuses = models.JSONField(
        default=list,
        blank=True,
        help_text="request.failed only for these HTTP statuses, such as [500, 502]; empty: every failed request.",
    )
    enabled = models.BooleanField(default=True)
    secret_encrypted = models.TextField(editable=False)
    secret_hint = models.CharField(max_length=32, editable=False, blank=True)
    previous_secret_encrypted = models.TextField(editable=False, blank=True)
    previous_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    failing_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="First failed attempt since the last delivered one."
    )
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=500, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["org__name", "pk"]
        verbose_name = "webhook endpoint"
        indexes = [models.Index(fields=["org", "enabled"], name="webhook_endpoint_org_enabled")]

    def __str__(self) -> str:
        return self.description or self.url

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


class WebhookEvent(models.Model):
    """One thing that happened in an org, as sent to its endpoints (the payload holds no secret). `cause` is
    unique when set: an event that must fire once per cause (a budget event, a key's minute of refusals) names
    it, and a second emit for the same cause does nothing."""

    id = models.CharField(primary_key=True, max_length=40, editable=False)  # evt_…: the webhook-id header
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(max_length=64)
    payload = models.JSONField()
    cause = models.CharField(max_length=200, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "webhook event"
        indexes = [models.Index(fields=["org", "-created_at"], name="webhook_event_org_time")]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for its next attempt (`next_attempt_at`)
    SENDING = "sending", "Sending"  # claimed by a worker until `next_attempt_at` (then claimable again)
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"  # out of retries, or its endpoint was disabled or deleted meanwhile


class WebhookDelivery(models.Model):
    """One event on its way to one endpoint, with what the last attempt got: the delivery log. "Send again"
    makes a new delivery of the same event (same webhook-id, so receivers can deduplicate)."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_deliveries")
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    redelivery_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_log"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.status})"
