"""Records API: list and detail with the logs filters, time series and breakdowns, sessions, and exports
streamed row by row (a million rows never sit in memory)."""

from __future__ import annotations

import csv
import datetime
import io
import json

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import decorators, exceptions, mixins, pagination, response

from tenancy.api.params import storable_datetime
from tenancy.api.views import CrudViewSet, ScopedViewSet
from tenancy.models import Scope

from .. import selectors, services
from ..models import ObservabilitySettings, PriceOverride, RequestRecord
from . import serializers as s

_RECORD_FIELDS = [f.attname for f in RequestRecord._meta.concrete_fields if f.name not in ("team",)]
# Computed by the one definition (models.FAILED / UNPRICED): a null cost alone does not say which it was.
_EXPORT_FIELDS = [*_RECORD_FIELDS, "failed", "unpriced"]


def _choice(request, name: str, allowed, default):
    value = request.query_params.get(name, default)
    if value is not None and value not in allowed:
        raise exceptions.ValidationError({name: [f"Choose one of: {', '.join(sorted(allowed))}."]})
    return value


class RecordCursor(pagination.CursorPagination):
    """Newest first, by cursor: no COUNT over millions of rows, and stable while new records arrive."""

    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def decode_cursor(self, request):
        # The position is a date/time the client hands back: a forged one with an offset PostgreSQL refuses
        # (or no date/time at all) is an invalid cursor, not a failed query.
        cursor = super().decode_cursor(request)
        if cursor is None or cursor.position is None:
            return cursor
        try:
            parsed = parse_datetime(cursor.position)
            if parsed is None:
                raise ValueError(cursor.position)
            if timezone.is_naive(parsed):
                parsed = timezone.make_aware(parsed, datetime.UTC)
            position = storable_datetime(parsed).isoformat()
        except ValueError:
            raise exceptions.NotFound(self.invalid_cursor_message) from None
        return cursor._replace(position=position)


class RequestRecordViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Request records of your organizations (gateway keys: the `logs:read` scope)."""

    model = RequestRecord
    queryset = RequestRecord.objects.select_related("app", "key")
    serializer_class = s.RequestRecordSerializer
    filterset_class = selectors.RecordFilter
    required_scope = Scope.LOGS_READ
    pagination_class = RecordCursor
    filter_backends = [DjangoFilterBackend]

    @extend_schema(
        parameters=[
            OpenApiParameter("bucket", str, enum=list(selectors.BUCKETS), description="hour (default) or day"),
            OpenApiParameter("group_by", str, enum=list(selectors.GROUPS)),
        ],
        responses={200: s.SeriesPointSerializer(many=True)},
    )
    @decorators.action(detail=False)
    def series(self, request):
        """Requests, errors, tokens, cost and latency p50/p95 per hour or day, optionally per group."""
        bucket = _choice(request, "bucket", selectors.BUCKETS, "hour")
        group_by = _choice(request, "group_by", selectors.GROUPS, None)
        rows = selectors.series(self.filter_queryset(self.get_queryset()), bucket=bucket, group_by=group_by)
        return response.Response(s.SeriesPointSerializer(rows, many=True).data)

    # `filters=True`: the record filters apply here too, and the schema (and so the API fuzzing) should say so.
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, filters=True)
    @decorators.action(detail=False)
    def totals(self, request):
        """Totals over the filtered records. `errors` counts failed requests; `unpriced` counts requests that did
        not fail, of a kind billed by the token, whose cost is unknown (not in `cost`); `priced` those whose cost is
        known; `cache_hits` those answered from the response cache (cost 0), `hit_rate` their share in percent and
        `cost_saved` what their original answers cost."""
        return response.Response(selectors.totals(self.filter_queryset(self.get_queryset())))

    @extend_schema(responses={200: s.SessionSerializer(many=True)})
    @decorators.action(detail=False)
    def sessions(self, request):
        """Sessions (requests grouped by session id), most recent first."""
        rows = selectors.sessions(self.filter_queryset(self.get_queryset()))
        paginator = pagination.LimitOffsetPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(s.SessionSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("export_format", str, enum=["csv", "jsonl"])],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR},
        filters=True,
    )
    @decorators.action(detail=False)
    def export(self, request):
        """Every filtered record as CSV or JSON lines, streamed."""
        kind = _choice(request, "export_format", {"csv", "jsonl"}, "csv")
        cap = settings.INGATE_EXPORT_MAX_ROWS
        filtered = self.filter_queryset(self.get_queryset())
        # At most the newest `cap` records (INGATE_EXPORT_MAX_ROWS), oldest first; looking one row past the cap
        # says whether the export was cut, and the response says so in X-Ingate-Export-Capped.
        newest = filtered.order_by("-created_at")
        capped = newest[cap : cap + 1].exists()
        if capped:
            filtered = filtered.filter(created_at__gte=newest.values_list("created_at", flat=True)[cap - 1])
        rows = (
            selectors.with_cost_flags(filtered)
            .order_by("created_at")
            .values_list(*_RECORD_FIELDS, "is_failed", "is_unpriced")
        )
        rows = rows[:cap]  # of records tied at the cut's microsecond, the oldest are kept
        lines = _csv(rows.iterator(chunk_size=2000)) if kind == "csv" else _jsonl(rows.iterator(chunk_size=2000))
        reply = StreamingHttpResponse(
            stream_lines(lines), content_type="text/csv" if kind == "csv" else "application/x-ndjson"
        )
        reply["Content-Disposition"] = f'attachment; filename="ingate-records.{kind}"'
        if capped:
            reply["X-Ingate-Export-Capped"] = str(cap)
        return reply


async def stream_lines(lines):
    """Under ASGI Django would read a synchronous iterator to the end before sending a byte; pulling from it
    one chunk at a time on the database thread keeps the export streaming with one open cursor."""
    take = sync_to_async(lambda: next(lines, None), thread_sensitive=True)
    while (chunk := await take()) is not None:
        yield chunk


def _csv(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_EXPORT_FIELDS)
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _jsonl(rows):
    batch = []
    for row in rows:
        batch.append(json.dumps(dict(zip(_EXPORT_FIELDS, row, strict=True)), default=str) + "\n")
        if len(batch) == 500:
            yield "".join(batch)
            batch = []
    yield "".join(batch)


class ObservabilitySettingsViewSet(CrudViewSet):
    """Per org: what is kept of bodies (off / metadata / full, capped) and for how many days records are kept.
    POST creates or replaces an org's settings."""

    model = ObservabilitySettings
    queryset = ObservabilitySettings.objects.select_related("org")
    serializer_class = s.ObservabilitySettingsSerializer
    filterset_fields = ["org"]
    lookup_field = "org"
    updatable = ("body_mode", "body_max_bytes", "retention_days")
    http_method_names = ["get", "post", "patch", "head", "options"]

    def create_object(self, data):
        org = data.pop("org")
        self.require_add(org)
        return services.observability_settings_set(actor=self.actor, org=org, **data)

    def update_object(self, settings_row, fields):
        return services.observability_settings_set(actor=self.actor, org=settings_row.org, **fields)


class PriceOverrideViewSet(CrudViewSet):
    """An org's own prices (USD per million tokens) for custom, fine-tuned, negotiated or self-hosted models.
    They win over the price table; cache prices default to the input price."""

    model = PriceOverride
    queryset = PriceOverride.objects.select_related("org")
    serializer_class = s.PriceOverrideSerializer
    filterset_fields = ["org", "model"]
    search_fields = ["model"]
    updatable = (
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "cache_write_1h_per_mtok",
    )

    def create_object(self, data):
        org = data.pop("org")
        self.require_add(org)
        return services.price_override_create(actor=self.actor, org=org, **data)

    def update_object(self, override, fields):
        return services.price_override_update(actor=self.actor, override=override, **fields)

    def delete_object(self, override):
        services.price_override_delete(actor=self.actor, override=override)
