"""Scores API: feedback on production requests by their request id (the `X-Ingate-Request-Id` a client got),
from an application (a gateway key with `scores:write`) or a person (a session); listed and filtered like the
other org-scoped lists."""

from __future__ import annotations

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, mixins, permissions, serializers

from tenancy.api.params import IsoDateTimeFilter
from tenancy.api.permissions import principal_of
from tenancy.api.views import ScopedViewSet
from tenancy.models import Organization, Scope
from tenancy.permissions import can_add

from .. import scores, services
from ..models import Score, ScoreSource

_MAX_VALUE = 1e12  # a bound PostgreSQL and SQLite both store exactly enough, and no NaN or infinity


class ScoreSerializer(serializers.ModelSerializer):
    request_id = serializers.UUIDField(
        source="record_id", help_text="The X-Ingate-Request-Id of the request being scored."
    )
    value = serializers.FloatField(
        required=False, allow_null=True, default=None, min_value=-_MAX_VALUE, max_value=_MAX_VALUE
    )
    label = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)

    class Meta:
        model = Score
        fields = ["id", "request_id", "org", "name", "value", "label", "comment", "source", "author_name", "created_at"]
        read_only_fields = ["id", "org", "source", "author_name", "created_at"]

    def validate(self, data):
        if (data.get("value") is None) == (not data.get("label", "").strip()):
            raise serializers.ValidationError({"value": ["Give a numeric value or a label (not both)."]})
        return data


class ScoreListFilter(django_filters.FilterSet):
    """The filters of /scores/ (query parameters)."""

    org = django_filters.ModelChoiceFilter(queryset=Organization.objects.all(), label="Organization (id)")
    request_id = django_filters.UUIDFilter(field_name="record_id")
    name = django_filters.CharFilter()
    label = django_filters.CharFilter(lookup_expr="iexact")
    source = django_filters.ChoiceFilter(choices=ScoreSource.choices)
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Score
        fields: list[str] = []


class ScoreViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Scores on request records, newest first. POST scores a record by its request id: a numeric `value` or a
    `label`, under a `name`, with an optional `comment`. Gateway keys: `scores:write` to score (and read
    scores), `logs:read` to read them."""

    model = Score
    queryset = Score.objects.all()
    serializer_class = ScoreSerializer
    filterset_class = ScoreListFilter

    @property
    def required_scope(self):
        if self.request.method in permissions.SAFE_METHODS:
            principal = principal_of(self.request)
            writer = principal.key is not None and Scope.SCORES_WRITE in principal.scopes
            return Scope.SCORES_WRITE if writer else Scope.LOGS_READ
        return Scope.SCORES_WRITE

    def perform_create(self, serializer):
        data = serializer.validated_data
        record = scores.record_to_score(self.principal, data["record_id"])
        if record is None:
            raise exceptions.ValidationError({"request_id": ["No request with this id in your organizations."]})
        if not can_add(self.principal, Score, record.org):
            raise exceptions.PermissionDenied(f"Your role in {record.org.name} does not allow you to score requests.")
        try:
            serializer.instance = services.score_create(
                actor=self.actor,
                record=record,
                name=data["name"],
                value=data["value"],
                label=data["label"],
                comment=data["comment"],
            )
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from None
