"""Webhook endpoints and their delivery log in the API. Creating an endpoint or rotating its secret answers with
the secret once; a test event and "send again" are queued and answered at once (202), never sent in the request."""

from __future__ import annotations

import datetime

from drf_spectacular.utils import extend_schema
from rest_framework import decorators, exceptions, mixins, response, serializers, status

from ..models import Organization, WebhookDelivery, WebhookEndpoint
from ..permissions import VIEW, allowed_anywhere
from ..webhooks import services as webhooks
from ..webhooks.addresses import UnsafeURL, check
from ..webhooks.events import EVENT_TYPES
from .serializers import ScopedPrimaryKeyField
from .views import CrudViewSet, ScopedViewSet


class WebhookEndpointSerializer(serializers.ModelSerializer):
    org = ScopedPrimaryKeyField(queryset=Organization.objects.all())
    url = serializers.CharField(max_length=2000, help_text="http(s) URL receiving the events (public addresses).")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES),
        required=False,
        help_text="Event types sent here; empty: all but the opt-in ones (request.failed, webhook.test).",
    )
    failed_statuses = serializers.ListField(
        child=serializers.IntegerField(min_value=400, max_value=599),
        required=False,
        help_text="request.failed only for these HTTP statuses; empty: every failed request.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "org",
            "url",
            "description",
            "events",
            "failed_statuses",
            "enabled",
            "secret_hint",
            "previous_expires_at",
            "failing_since",
            "disabled_at",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "secret_hint",
            "previous_expires_at",
            "failing_since",
            "disabled_at",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]

    def validate_url(self, value: str) -> str:
        try:
            check(value)
        except UnsafeURL as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value


class WebhookEndpointUpdateSerializer(WebhookEndpointSerializer):
    class Meta(WebhookEndpointSerializer.Meta):
        read_only_fields = [*WebhookEndpointSerializer.Meta.read_only_fields, "org"]


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="The signing secret (whsec_…): shown this once.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class RotateSerializer(serializers.Serializer):
    overlap_hours = serializers.FloatField(
        required=False, default=24.0, min_value=0, max_value=168, help_text="How long the old secret keeps signing."
    )


class RotatedSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret: shown this once.")
    previous_expires_at = serializers.DateTimeField(allow_null=True)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event_type = serializers.CharField(source="event.type", read_only=True)
    payload = serializers.JSONField(source="event.payload", read_only=True, help_text="The request body sent.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event",
            "event_type",
            "payload",
            "status",
            "attempts",
            "next_attempt_at",
            "response_status",
            "response_excerpt",
            "error",
            "duration_ms",
            "redelivery_of",
            "created_at",
            "last_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields


class AdminsOnly:
    """Endpoints and their log (payloads, URLs) are for the org's admins and owners: anyone else is told so."""

    def check_permissions(self, request):
        super().check_permissions(request)
        if not allowed_anywhere(self.principal, self.model, VIEW):
            raise exceptions.PermissionDenied("Only organization admins and owners manage webhooks.")


class WebhookEndpointViewSet(AdminsOnly, CrudViewSet):
    """Webhook endpoints: where an org's events go, signed as Standard Webhooks."""

    model = WebhookEndpoint
    queryset = WebhookEndpoint.objects.select_related("org")
    serializer_class = WebhookEndpointSerializer
    filterset_fields = ["org", "enabled"]
    search_fields = ["url", "description"]
    updatable = ("url", "description", "events", "failed_statuses", "enabled")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return WebhookEndpointUpdateSerializer
        return WebhookEndpointSerializer

    @extend_schema(responses={201: WebhookEndpointCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        self.require_add(data["org"])
        endpoint, secret = webhooks.webhook_endpoint_create(
            actor=self.actor,
            org=data["org"],
            url=data["url"],
            events=data.get("events", []),
            description=data.get("description", ""),
            enabled=data.get("enabled", True),
            failed_statuses=data.get("failed_statuses", []),
        )
        out = WebhookEndpointCreatedSerializer(endpoint, context=self.get_serializer_context()).data
        out["secret"] = secret
        return response.Response(out, status=status.HTTP_201_CREATED)

    def update_object(self, endpoint, fields):
        return webhooks.webhook_endpoint_update(actor=self.actor, endpoint=endpoint, **fields)

    def delete_object(self, endpoint):
        webhooks.webhook_endpoint_delete(actor=self.actor, endpoint=endpoint)

    @extend_schema(request=RotateSerializer, responses=RotatedSerializer)
    @decorators.action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new signing secret, shown once; the old one keeps signing too for `overlap_hours` (default 24)."""
        endpoint = self.get_object()
        body = RotateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        overlap = datetime.timedelta(hours=body.validated_data["overlap_hours"])
        secret = webhooks.webhook_endpoint_rotate_secret(actor=self.actor, endpoint=endpoint, overlap=overlap)
        endpoint.refresh_from_db()
        return response.Response({"secret": secret, "previous_expires_at": endpoint.previous_expires_at})

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @decorators.action(detail=True, methods=["post"], url_path="test-event")
    def test_event(self, request, pk=None):
        """Queue a `webhook.test` event to this endpoint; its delivery shows in the log."""
        event = webhooks.webhook_send_test(actor=self.actor, endpoint=self.get_object())
        delivery = event.deliveries.select_related("event").get()
        return response.Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=WebhookDeliverySerializer(many=True))
    @decorators.action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """This endpoint's delivery log, newest first."""
        endpoint = self.get_object()
        rows = WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class WebhookDeliveryViewSet(AdminsOnly, ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """The delivery log of every endpoint you may see: what was sent, what came back; `redeliver` sends again."""

    model = WebhookDelivery
    queryset = WebhookDelivery.objects.select_related("event")
    serializer_class = WebhookDeliverySerializer
    filterset_fields = ["org", "endpoint", "status"]

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @decorators.action(detail=True, methods=["post"])
    def redeliver(self, request, pk=None):
        """Send the same event (same webhook-id) to the same endpoint again, now."""
        copy = webhooks.webhook_redeliver(actor=self.actor, delivery=self.get_object())
        return response.Response(WebhookDeliverySerializer(copy).data, status=status.HTTP_202_ACCEPTED)
