"""Reads over request records, shared by the API and the dashboard; every one starts from `restrict`."""

from __future__ import annotations

import datetime
import statistics
from collections import defaultdict
from decimal import Decimal
from typing import Any

import django_filters
from django import forms
from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    BooleanField,
    Count,
    ExpressionWrapper,
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
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field

from prompts.forms import PromptVersionRefField
from prompts.selectors import REF_HELP
from proxy.guardrails.state import BLOCKED, FLAGGED, REDACTED
from tenancy.api.params import IsoDateTimeFilter
from tenancy.api.permissions import principal_of
from tenancy.models import APIKey, App, Organization
from tenancy.permissions import VIEW, Principal, orgs_where, restrict

from . import scores
from . import search as fulltext
from .models import (
    FAILED,
    UNPRICED,
    BodyMode,
    ObservabilitySettings,
    Outcome,
    RecordRollup,
    RequestRecord,
    SavedView,
    SessionRollup,
)
from .rollups import percentile
from .scores import SCORE_HELP, ScoreMatch

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


# The time range picker's presets: (how far back, label).
TIME_RANGES = {
    "15m": (datetime.timedelta(minutes=15), "Last 15 minutes"),
    "1h": (datetime.timedelta(hours=1), "Last hour"),
    "4h": (datetime.timedelta(hours=4), "Last 4 hours"),
    "24h": (datetime.timedelta(hours=24), "Last 24 hours"),
    "7d": (datetime.timedelta(days=7), "Last 7 days"),
    "30d": (datetime.timedelta(days=30), "Last 30 days"),
}


def text_match(field: str, value: str) -> Q:
    """A text filter's condition: `"exact"` in double quotes matches the whole value; anything else matches any
    part of it, ignoring case."""
    value = value.strip()
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return Q(**{field: value[1:-1]})
    return Q(**{f"{field}__icontains": value})


class SearchField(forms.CharField):
    """The search box: at most 200 characters and a dozen words, said as a field error rather than a slow query."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 200)
        super().__init__(*args, **kwargs)

    def validate(self, value):
        super().validate(value)
        try:
            fulltext.terms(value or "")
        except fulltext.SearchTooLong as exc:
            raise forms.ValidationError(str(exc), code="too_long") from None


class SearchFilter(django_filters.CharFilter):
    field_class = SearchField


class Choices(django_filters.widgets.BooleanWidget):
    """A yes/no filter as a select whose three options say what they show (not "Unknown / Yes / No")."""

    def __init__(self, labels: tuple[str, str, str], attrs=None):
        super().__init__(attrs)
        self.choices = [("", labels[0]), ("true", labels[1]), ("false", labels[2])]


@extend_schema_field({"type": "string", "description": f"Prompt version: {REF_HELP}; or the version's id."})
class PromptVersionFilter(django_filters.Filter):
    """`support/greeter@3` as the pages write it, or a version id (see prompts.selectors): its records."""

    field_class = PromptVersionRefField


class ScoreField(forms.CharField):
    """`score=` cleaned to a ScoreMatch (a bad comparison is a field error, never a failed query)."""

    def clean(self, value):
        value = super().clean(value)
        if value in self.empty_values:
            return None
        try:
            return ScoreMatch.parse(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


@extend_schema_field({"type": "string", "description": f"Records with a score that is {SCORE_HELP}."})
class ScoreFilter(django_filters.Filter):
    field_class = ScoreField


class RecordFilter(django_filters.FilterSet):
    """The filters of the logs page and of /records/ (query parameters), with the labels the page shows.

    Text filters (model, session, user, client, route) match any part of the value, ignoring case; a value
    in double quotes ("gpt-4o") matches exactly, as a breakdown row's link does. `search` is the one search
    box (observability/search.py); `range` a preset window, `since`/`until` a custom one."""

    org = django_filters.CharFilter(method="filter_org", label="Organization (slug)")
    search = SearchFilter(
        method="filter_search",
        label="Search",
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "placeholder": "Search model, session, user, properties, errors, prompts and answers",
                "autocomplete": "off",
            }
        ),
    )
    range = django_filters.ChoiceFilter(
        method="filter_range",
        label="Time range",
        choices=[(k, v[1]) for k, v in TIME_RANGES.items()],
        empty_label="All time",
    )
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte", label="From (UTC)")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt", label="To (UTC)")
    model = django_filters.CharFilter(method="filter_model", label="Model")
    provider = django_filters.CharFilter(method="filter_text", label="Provider")
    status = django_filters.NumberFilter(label="HTTP status")
    outcome = django_filters.ChoiceFilter(choices=Outcome.choices, label="Outcome", empty_label="Any outcome")
    errors = django_filters.BooleanFilter(
        method="filter_errors", label="Result", widget=Choices(("Any result", "Failed only", "Succeeded only"))
    )
    cost_min = django_filters.NumberFilter(
        field_name="cost_total", lookup_expr="gte", label="Cost from ($)", min_value=0, max_digits=20
    )
    cost_max = django_filters.NumberFilter(
        field_name="cost_total", lookup_expr="lte", label="Cost to ($)", min_value=0, max_digits=20
    )
    latency_min = django_filters.NumberFilter(
        field_name="total_ms", lookup_expr="gte", label="Latency from (ms)", min_value=0, max_digits=12
    )
    latency_max = django_filters.NumberFilter(
        field_name="total_ms", lookup_expr="lte", label="Latency to (ms)", min_value=0, max_digits=12
    )
    cache_hit = django_filters.BooleanFilter(
        label="Cache", widget=Choices(("Hits and misses", "Cache hits only", "Cache misses only"))
    )
    route = django_filters.CharFilter(method="filter_text", label="Route")
    guardrail = django_filters.ChoiceFilter(
        label="Guardrail",
        empty_label="Any guardrail outcome",
        choices=[(FLAGGED, "Flagged"), (REDACTED, "Redacted"), (BLOCKED, "Blocked")],
    )
    app = django_filters.CharFilter(field_name="app__slug", label="App (slug)")
    key = django_filters.CharFilter(field_name="key__prefix", label="Key (prefix)")
    session = django_filters.CharFilter(method="filter_text", field_name="session_id", label="Session")
    user = django_filters.CharFilter(method="filter_text", field_name="user_id", label="User")
    client = django_filters.CharFilter(method="filter_text", label="Client")
    prompt_version = PromptVersionFilter(field_name="prompt_version", lookup_expr="in", label="Prompt version")
    property = django_filters.CharFilter(method="filter_property", label="Property (name:value)")
    ingate = django_filters.BooleanFilter(
        method="filter_ingate",
        label="Caller",
        widget=Choices(("Everyone", "Ingate's own calls", "Applications only")),
    )
    unpriced = django_filters.BooleanFilter(
        method="filter_unpriced", label="Price", widget=Choices(("Priced or not", "Unpriced only", "Priced only"))
    )
    score_name = django_filters.CharFilter(method="filter_score", label="Scored as (score name)")
    score = ScoreFilter(method="filter_score", label="Score")

    class Meta:
        model = RequestRecord
        fields: list[str] = []

    def __init__(self, data=None, queryset=None, *, orgs=None, **kwargs):
        """`orgs`: where a prompt version reference resolves and whose kept bodies are searched; by default the
        orgs whose records the caller reads (the request's principal), so a prompt of an org the caller cannot
        see reads as unknown."""
        super().__init__(data, queryset, **kwargs)
        if orgs is None:
            principal = principal_of(self.request) if self.request is not None else Principal()
            orgs = lambda: orgs_where(principal, RequestRecord, VIEW)
        self.orgs = orgs
        self.filters["prompt_version"].extra["orgs"] = orgs

    def filter_org(self, queryset, name, value):
        # A constant org id, not a join: the planner then walks the (org, created_at) index newest first.
        org_id = Organization.objects.filter(slug=value).values_list("pk", flat=True).first()
        return queryset.filter(org_id=org_id or 0)

    def filter_range(self, queryset, name, value):
        return queryset.filter(created_at__gte=timezone.now() - TIME_RANGES[value][0])

    def filter_model(self, queryset, name, value):
        return queryset.filter(text_match("model", value) | text_match("response_model", value))

    def filter_text(self, queryset, name, value):
        return queryset.filter(text_match(name, value))  # the filter's field_name

    def filter_search(self, queryset, name, value):
        orgs = self.orgs() if callable(self.orgs) else self.orgs
        wanted = self.data.get("org")
        kept = ObservabilitySettings.objects.filter(org__in=orgs, body_mode=BodyMode.FULL)
        if wanted:
            kept = kept.filter(org__slug=wanted)
        return fulltext.matching(queryset, value, bodies=kept.exists())

    def filter_errors(self, queryset, name, value):
        return queryset.filter(FAILED) if value else queryset.exclude(FAILED)

    def filter_unpriced(self, queryset, name, value):
        return queryset.filter(UNPRICED) if value else queryset.exclude(UNPRICED)

    def filter_ingate(self, queryset, name, value):
        # Ingate's own calls (playground, prompt tests, eval runs, judges) go out with no gateway key.
        return queryset.filter(key__isnull=value)

    def filter_score(self, queryset, name, value):
        # `score_name` and `score` are one condition on the same score: both are read here, once.
        if name == "score" and self.form.cleaned_data.get("score_name"):
            return queryset
        given = self.form.cleaned_data
        return scores.with_score(queryset, name=given.get("score_name") or "", match=given.get("score"))

    def filter_property(self, queryset, name, value):
        prop, _, wanted = value.partition(":")
        # The name is one JSON key and never a lookup: as `properties__{name}`, `?property=a__regex:(` reached
        # PostgreSQL as a regular expression and failed there.
        return queryset.alias(_property=KeyTransform(prop, "properties")).filter(_property=wanted)


# How the logs page lays the filters out: the search box and time range on top, these in a row, the rest
# under "More filters" (filter_groups adds any filter named nowhere here, so a new one always shows).
FILTER_GROUPS = {
    "main": ["model", "outcome", "errors", "cost_min", "cost_max", "latency_min", "latency_max", "cache_hit"],
    "more": [
        "route",
        "guardrail",
        "provider",
        "status",
        "session",
        "user",
        "app",
        "key",
        "client",
        "property",
        "prompt_version",
        "ingate",
        "unpriced",
    ],
}
_PLACED_APART = {"org", "search", "range", "since", "until"}


def filter_groups(filterset: RecordFilter) -> dict[str, list[str]]:
    """FILTER_GROUPS, with every other filter of `filterset` (one added later, say) appended to "more"."""
    named = _PLACED_APART | set(FILTER_GROUPS["main"]) | set(FILTER_GROUPS["more"])
    others = [name for name in filterset.filters if name not in named]
    return {"main": FILTER_GROUPS["main"], "more": FILTER_GROUPS["more"] + others}


def with_cost_flags(queryset: QuerySet) -> QuerySet:
    """Each record's `is_failed` and `is_unpriced`, by the one definition, for rows read as values (exports,
    the live tail) where the model's properties are out of reach."""
    return queryset.annotate(
        is_failed=ExpressionWrapper(FAILED, output_field=BooleanField()),
        is_unpriced=ExpressionWrapper(UNPRICED, output_field=BooleanField()),
    )


def record_sums(records: list[RequestRecord]) -> dict[str, Any]:
    """Requests, failed, unpriced and priced counts, tokens and known cost of records in hand (a session's)."""
    return {
        "requests": len(records),
        "errors": sum(r.failed for r in records),
        "unpriced": sum(r.unpriced for r in records),
        "priced": sum(r.priced for r in records),
        "tokens": sum(r.total_tokens or 0 for r in records),
        "cost": sum((r.cost_total for r in records if r.cost_total is not None), Decimal(0)),
    }


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
        unpriced=Count("id", filter=UNPRICED),
        priced=Count("id", filter=Q(cost_total__isnull=False)),
        cache_hits=Count("id", filter=Q(cache_hit=True)),
        cost_saved=Sum("cost_saved", filter=Q(cache_hit=True)),
        first=Min("created_at"),
        last=Max("created_at"),
    )
    found["cost"] = found["cost"] or Decimal(0)
    found["cost_saved"] = found["cost_saved"] or Decimal(0)
    found["hit_rate"] = hit_rate(found)
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
            cache_hits=Count("id", filter=Q(cache_hit=True)),
            cost_saved=Sum("cost_saved", filter=Q(cache_hit=True)),
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
            "cache_hits": row["cache_hits"],
            "cost_saved": row["cost_saved"] or Decimal(0),
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
        rows = (
            queryset.annotate(at=trunc)
            .values(*keys)
            .annotate(p50=Percentile("total_ms", percentile=0.5), p95=Percentile("total_ms", percentile=0.95))
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


_ROLLUP_SUMS = {
    "requests": Sum("requests"),
    "errors": Sum("errors"),
    "unpriced": Sum("unpriced"),
    "priced": Sum("priced"),
    "cost": Sum("cost"),
    "cache_hits": Sum("cache_hits"),
    "cost_saved": Sum("cost_saved"),
}
_TOKENS = Sum(F("input_tokens") + F("output_tokens"))
_COUNTS = ("requests", "errors", "unpriced", "priced", "tokens", "cache_hits")
_AMOUNTS = ("cost", "cost_saved")


def hit_rate(row: dict[str, Any]) -> float:
    """The share of a row's requests answered from the response cache, in percent."""
    return row["cache_hits"] / row["requests"] * 100 if row["requests"] else 0.0


def rollup_totals(org_id: int, since: datetime.datetime) -> dict[str, Any]:
    found = _rollups(org_id, since, "all").aggregate(
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        **_ROLLUP_SUMS,
    )
    found = {name: value or 0 for name, value in found.items()} | {name: found[name] or Decimal(0) for name in _AMOUNTS}
    found["tokens"] = found["input_tokens"] + found["output_tokens"]
    return found | {"hit_rate": hit_rate(found)}


def bucket_starts(since: datetime.datetime, until: datetime.datetime, bucket: str) -> list[datetime.datetime]:
    """Every hour (or UTC day) from the one holding `since` to the one holding `until`: a chart's time axis."""
    step = datetime.timedelta(hours=1) if bucket == "hour" else datetime.timedelta(days=1)
    at = since.astimezone(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    if bucket != "hour":
        at = at.replace(hour=0)
    starts = []
    while at <= until:
        starts.append(at)
        at += step
    return starts


def _empty_point(at: datetime.datetime) -> dict[str, Any]:
    return {
        "at": at,
        "group": None,
        "requests": 0,
        "errors": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost": Decimal(0),
        "p50_ms": None,
        "p95_ms": None,
    }


def rollup_series(
    org_id: int, since: datetime.datetime, bucket: str, until: datetime.datetime | None = None
) -> list[dict[str, Any]]:
    """Per hour or UTC day from `since` to `until` (now), empty ones included, so a chart's time axis is the
    window and not just the buckets that saw traffic: requests, errors, tokens, cost and latency p50/p95 (from
    the latency histograms)."""
    merged = {at: _empty_point(at) | {"latency": []} for at in bucket_starts(since, until or timezone.now(), bucket)}
    for row in _rollups(org_id, since, "all").order_by("bucket"):
        at = row.bucket.astimezone(datetime.UTC)
        at = at if bucket == "hour" else at.replace(hour=0)
        point = merged.setdefault(at, _empty_point(at) | {"latency": []})
        for name in ("requests", "errors", "input_tokens", "output_tokens", "cost"):
            point[name] += getattr(row, name)
        histogram = row.latency or []
        point["latency"] = [a + b for a, b in zip(point["latency"] or [0] * len(histogram), histogram, strict=False)]
    for point in merged.values():
        histogram = point.pop("latency")
        point["p50_ms"], point["p95_ms"] = percentile(histogram, 0.5), percentile(histogram, 0.95)
    return [merged[at] for at in sorted(merged)]


# The rows a breakdown leaves out are summed into one "others" row; what no row of the dimension holds (the
# rollups keep no row for an empty value) is its own row, named here. Records without an app or key are the
# calls Ingate makes itself: the playground, a prompt's "send to model", eval runs and their LLM judges.
BREAKDOWN_ROWS = 10
INGATE_ITSELF = "(Ingate itself)"
_WITHOUT = {
    "app": INGATE_ITSELF,
    "key": INGATE_ITSELF,
    "user": "(no user id)",
    "model": "(no model)",
    "provider": "(no provider)",
}


def _sum_row(found: dict[str, Any], **extra) -> dict[str, Any]:
    row = {name: found.get(name) or 0 for name in _COUNTS} | {name: found.get(name) or Decimal(0) for name in _AMOUNTS}
    return row | {"hit_rate": hit_rate(row)} | extra


def _minus(whole: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    row = {name: whole[name] - part[name] for name in (*_COUNTS, *_AMOUNTS)}
    return row | {"hit_rate": hit_rate(row)}


def rollup_breakdown(
    org_id: int,
    since: datetime.datetime,
    dimension: str,
    limit: int = BREAKDOWN_ROWS,
    totals: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The busiest values of a dimension, then an "others (N more)" row with the rest, then a row for records
    without a value: the rows add up to the window's totals. Each row names the logs filter that selects it
    (`filter`: (parameter, value)), or None when no single filter does (others, no user id, no model)."""
    rollups = _rollups(org_id, since, dimension)
    top = [
        _sum_row(row, value=row["value"])
        for row in rollups.values("value")
        .annotate(tokens=_TOKENS, **_ROLLUP_SUMS)
        .order_by("-requests", "value")[:limit]
    ]
    whole = rollups.aggregate(values=Count("value", distinct=True), tokens=_TOKENS, **_ROLLUP_SUMS)
    rows = _named(dimension, top)
    shown = {name: sum(row[name] for row in top) for name in (*_COUNTS, *_AMOUNTS)}
    if whole["values"] > len(top):
        more = whole["values"] - len(top)
        rows.append(
            _minus(_sum_row(whole), shown) | {"name": f"others ({more} more)", "kind": "others", "filter": None}
        )
    without = _minus(totals or rollup_totals(org_id, since), _sum_row(whole))
    if without["requests"] > 0:
        name = _WITHOUT.get(dimension, "(none)")
        rows.append(
            without | {"name": name, "kind": "without", "filter": ("ingate", "true") if name == INGATE_ITSELF else None}
        )
    return rows


def _named(dimension: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Display names and logs filters: apps by slug, keys by name and prefix (rollups hold their ids)."""
    ids = [int(row["value"]) for row in rows if row["value"].isdigit()] if dimension in ("app", "key") else []
    names: dict[int, tuple[str, str]] = {}
    if dimension == "app":
        names = {pk: (slug, slug) for pk, slug in App.objects.filter(pk__in=ids).values_list("pk", "slug")}
    elif dimension == "key":
        names = {
            pk: (f"{name} ({prefix})", prefix)
            for pk, name, prefix in APIKey.objects.filter(pk__in=ids).values_list("pk", "name", "prefix")
        }
    for row in rows:
        if dimension in ("app", "key"):
            # A deleted app or key keeps its rollups: shown by id, with no filter left to select it.
            name, wanted = names.get(int(row["value"]) if row["value"].isdigit() else -1, (row["value"], None))
        else:
            # In double quotes: the logs' text filters match exactly then, so `gpt-4o` leaves `gpt-4o-mini` out.
            name, wanted = row["value"], f'"{row["value"]}"'
        row |= {"name": name, "kind": "value", "filter": (dimension, wanted) if wanted else None}
    return rows


def session_rollups(org_id: int) -> QuerySet:
    return SessionRollup.objects.filter(org_id=org_id).order_by("-ended")


# The logs table's sortable columns: `?sort=cost` (ascending) or `?sort=-cost`. Costs and tokens a record
# does not have sort last either way.
SORTS = {
    "time": "created_at",
    "model": "model",
    "status": "status",
    "tokens": "total_tokens",
    "cost": "cost_total",
    "latency": "total_ms",
}
DEFAULT_SORT = "-time"


def sorted_records(queryset: QuerySet, sort: str | None) -> tuple[QuerySet, str]:
    """`queryset` in the order `sort` names (DEFAULT_SORT for anything unknown), ties newest first, and the sort
    applied."""
    name = (sort or "").removeprefix("-")
    if name not in SORTS:
        sort, name = DEFAULT_SORT, DEFAULT_SORT.removeprefix("-")
    field = F(SORTS[name])
    # Only a column that can be NULL says where NULLs go: `created_at DESC NULLS LAST` does not match the
    # (org, created_at DESC) index (NULLS FIRST), and PostgreSQL would sort every record for the default page.
    nulls_last = True if RequestRecord._meta.get_field(SORTS[name]).null else None
    first = field.desc(nulls_last=nulls_last) if sort.startswith("-") else field.asc(nulls_last=nulls_last)
    tail = [] if name == "time" else [F("created_at").desc()]
    return queryset.order_by(first, *tail), sort


def saved_views(user, org: Organization) -> QuerySet[SavedView]:
    return SavedView.objects.filter(user=user, org=org)
