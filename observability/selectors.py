"""Reads over request records, shared by the API and the dashboard; every one starts from `restrict`."""

from __future__ import annotations

import datetime
import statistics
from collections import defaultdict
from decimal import Decimal
from typing import Any

import django_filters
from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Count,
    F,
    FloatField,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import TruncDay, TruncHour

from tenancy.api.params import IsoDateTimeFilter
from tenancy.models import APIKey, App, Organization
from tenancy.permissions import VIEW, Principal, restrict

from .models import (
    FAILED,
    BodyMode,
    ObservabilitySettings,
    Outcome,
    RecordRollup,
    RequestRecord,
    SessionRollup,
)
from .rollups import percentile

GROUPS = {
    "model": "model",
    "provider": "provider",
    "app": "app__slug",
    "key": "key__name",
    "user": "user_id",
    "session": "session_id",
    "client": "client",
    "prompt_version": "prompt_version_id",
}
BUCKETS = {"hour": TruncHour, "day": TruncDay}


def body_capture_bytes(org_id: int) -> int:
    """How much of each body the proxy keeps for an org's records: its cap when bodies are on, else 0."""
    found = ObservabilitySettings.objects.filter(org_id=org_id).values_list("body_mode", "body_max_bytes").first()
    return found[1] if found and found[0] == BodyMode.FULL else 0


def body_mode(org_id: int) -> str:
    found = ObservabilitySettings.objects.filter(org_id=org_id).values_list("body_mode", flat=True).first()
    return found or BodyMode.METADATA


def records_for(principal: Principal) -> QuerySet[RequestRecord]:
    return restrict(RequestRecord.objects.all(), principal, VIEW)


class RecordFilter(django_filters.FilterSet):
    """The filters of the logs table and of /records/ (query parameters)."""

    org = django_filters.CharFilter(method="filter_org", label="Organization (slug)")
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    model = django_filters.CharFilter(method="filter_model")
    provider = django_filters.CharFilter()
    status = django_filters.NumberFilter()
    outcome = django_filters.ChoiceFilter(choices=Outcome.choices)
    errors = django_filters.BooleanFilter(method="filter_errors", label="Only failed requests")
    app = django_filters.CharFilter(field_name="app__slug")
    key = django_filters.CharFilter(field_name="key__prefix")
    session = django_filters.CharFilter(field_name="session_id")
    user = django_filters.CharFilter(field_name="user_id")
    client = django_filters.CharFilter()
    prompt_version = django_filters.NumberFilter(field_name="prompt_version_id")
    property = django_filters.CharFilter(method="filter_property", label="name:value")
    unpriced = django_filters.BooleanFilter(field_name="cost_total", lookup_expr="isnull")

    class Meta:
        model = RequestRecord
        fields: list[str] = []

    def filter_org(self, queryset, name, value):
        # A constant org id, not a join: the planner then walks the (org, created_at) index newest first.
        org_id = Organization.objects.filter(slug=value).values_list("pk", flat=True).first()
        return queryset.filter(org_id=org_id or 0)

    def filter_model(self, queryset, name, value):
        return queryset.filter(Q(model=value) | Q(response_model=value))

    def filter_errors(self, queryset, name, value):
        return queryset.filter(FAILED) if value else queryset.exclude(FAILED)

    def filter_property(self, queryset, name, value):
        prop, _, wanted = value.partition(":")
        # The name is one JSON key and never a lookup: as `properties__{name}`, `?property=a__regex:(` reached
        # PostgreSQL as a regular expression and failed there.
        return queryset.alias(_property=KeyTransform(prop, "properties")).filter(_property=wanted)


def p50_p95(values: list[float]) -> tuple[float | None, float | None]:
    """Median and 95th percentile of raw latencies (inclusive quantiles), None for no values."""
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94]


def totals(queryset: QuerySet) -> dict[str, Any]:
    found = queryset.aggregate(
        requests=Count("id"),
        errors=Count("id", filter=FAILED),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        cost=Sum("cost_total"),
        unpriced=Count("id", filter=Q(cost_total__isnull=True, usage_source="reported")),
        first=Min("created_at"),
        last=Max("created_at"),
    )
    found["cost"] = found["cost"] or Decimal(0)
    return found


def series(queryset: QuerySet, *, bucket: str = "hour", group_by: str | None = None) -> list[dict[str, Any]]:
    """Per time bucket (and group): requests, errors, tokens, cost, latency p50/p95."""
    trunc = BUCKETS[bucket]("created_at")
    keys = ["at"] + ([GROUPS[group_by]] if group_by else [])
    rows = (
        queryset.annotate(at=trunc)
        .values(*keys)
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=FAILED),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost=Sum("cost_total"),
            avg_ms=Avg("total_ms"),
        )
        .order_by(*keys)
    )
    result = [
        {
            "at": row["at"],
            "group": row.get(GROUPS[group_by]) if group_by else None,
            "requests": row["requests"],
            "errors": row["errors"],
            "input_tokens": row["input_tokens"] or 0,
            "output_tokens": row["output_tokens"] or 0,
            "cost": row["cost"] or Decimal(0),
            "avg_ms": row["avg_ms"],
        }
        for row in rows
    ]
    latencies = _latency_percentiles(queryset, trunc, GROUPS[group_by] if group_by else None)
    for row in result:
        row["p50_ms"], row["p95_ms"] = latencies.get((row["at"], row["group"]), (None, None))
    return result


class Percentile(Aggregate):
    """PostgreSQL's percentile_cont: p50/p95 computed where the rows are."""

    function = "percentile_cont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _latency_percentiles(queryset: QuerySet, trunc, group_field: str | None) -> dict:
    """p50/p95 of total latency per bucket: in the database on PostgreSQL, in Python on SQLite."""
    keys = ["at"] + ([group_field] if group_field else [])
    if connection.vendor == "postgresql":
        rows = queryset.annotate(at=trunc).values(*keys).annotate(
            p50=Percentile("total_ms", percentile=0.5), p95=Percentile("total_ms", percentile=0.95)
        )
        return {(r["at"], r.get(group_field) if group_field else None): (r["p50"], r["p95"]) for r in rows}
    values: dict[tuple, list[float]] = defaultdict(list)
    for row in queryset.annotate(at=trunc).values_list(*keys, "total_ms"):
        group = row[1] if group_field else None
        values[(row[0], group)].append(row[-1])
    return {k: p50_p95(sorted(v)) for k, v in values.items()}


def sessions(queryset: QuerySet) -> QuerySet:
    """One row per session: when, how many requests, tokens and cost."""
    return (
        queryset.exclude(session_id="")
        .values("session_id")
        .annotate(
            requests=Count("id"),
            started=Min("created_at"),
            ended=Max("created_at"),
            tokens=Sum("total_tokens"),
            cost=Sum("cost_total"),
            name=Max("session_name"),
            user=Max("user_id"),
            client=Max("client"),
        )
        .order_by("-ended")
    )


# --- the overview and sessions pages read rollups, never raw rows ---------------------------------


def _rollups(org_id: int, since: datetime.datetime, dimension: str) -> QuerySet:
    return RecordRollup.objects.filter(org_id=org_id, dimension=dimension, bucket__gte=since)


def rollup_totals(org_id: int, since: datetime.datetime) -> dict[str, Any]:
    found = _rollups(org_id, since, "all").aggregate(
        requests=Sum("requests"), errors=Sum("errors"), unpriced=Sum("unpriced"),
        input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"), cost=Sum("cost"),
    )
    return {name: value or 0 for name, value in found.items()} | {"cost": found["cost"] or Decimal(0)}


def rollup_series(org_id: int, since: datetime.datetime, bucket: str) -> list[dict[str, Any]]:
    """Per hour or day: requests, errors, tokens, cost and latency p50/p95 (from the latency histograms)."""
    merged: dict[datetime.datetime, dict[str, Any]] = {}
    for row in _rollups(org_id, since, "all").order_by("bucket"):
        at = row.bucket if bucket == "hour" else row.bucket.replace(hour=0)
        point = merged.setdefault(at, {"at": at, "requests": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0,
                                       "cost": Decimal(0), "latency": []})
        for name in ("requests", "errors", "input_tokens", "output_tokens", "cost"):
            point[name] += getattr(row, name)
        histogram = row.latency or []
        point["latency"] = [a + b for a, b in zip(point["latency"] or [0] * len(histogram), histogram)]
    for point in merged.values():
        histogram = point.pop("latency")
        point["p50_ms"], point["p95_ms"] = percentile(histogram, 0.5), percentile(histogram, 0.95)
        point["group"] = None
    return list(merged.values())


def rollup_breakdown(org_id: int, since: datetime.datetime, dimension: str, limit: int = 10) -> list[dict[str, Any]]:
    rows = list(
        _rollups(org_id, since, dimension).values("value")
        .annotate(requests=Sum("requests"), cost=Sum("cost"), tokens=Sum(F("input_tokens") + F("output_tokens")))
        .order_by("-requests")[:limit]
    )
    names = {}
    if dimension == "app":
        names = dict(App.objects.filter(pk__in=[r["value"] for r in rows]).values_list("pk", "slug"))
    elif dimension == "key":
        names = {pk: f"{name} ({prefix})" for pk, name, prefix in
                 APIKey.objects.filter(pk__in=[r["value"] for r in rows]).values_list("pk", "name", "prefix")}
    for row in rows:
        row["name"] = names.get(int(row["value"]), row["value"]) if names else row["value"]
    return rows


def session_rollups(org_id: int) -> QuerySet:
    return SessionRollup.objects.filter(org_id=org_id).order_by("-ended")
