"""Dashboard pages: overview with charts, the logs table, a record's detail, sessions and the live tail.
Server-rendered; every query starts from `selectors.records_for`, narrowed to the org picked in the header."""

from __future__ import annotations

import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from tenancy.pages import OrgContext
from tenancy.permissions import CHANGE, restrict

from . import charts, selectors, services, traces
from .bodies import conversation, metadata_rows
from .models import RequestBody, RequestRecord

WINDOWS = {
    "24h": (datetime.timedelta(hours=24), "hour"),
    "7d": (datetime.timedelta(days=7), "day"),
    "30d": (datetime.timedelta(days=30), "day"),
}
BREAKDOWNS = ["model", "provider", "app", "key", "user"]
# The breakdowns that show response cache hits, hit rate and money saved (the cache is set per org and app).
CACHE_BREAKDOWNS = ("app", "key")


class PeekPage:
    """Pages that fetch one row past the page instead of counting a million rows; at most MAX_PAGES deep, so
    the offset stays bounded (narrow the time range or search to reach older records)."""

    size = 50
    MAX_PAGES = 200

    def __init__(self, queryset, number):
        try:
            self.number = max(1, min(int(number or 1), self.MAX_PAGES))
        except ValueError:
            self.number = 1
        start = (self.number - 1) * self.size
        rows = list(queryset[start : start + self.size + 1])
        self.object_list = rows[: self.size]
        self.has_next = len(rows) > self.size and self.number < self.MAX_PAGES
        self.has_previous = self.number > 1
        self.has_other_pages = self.has_next or self.has_previous
        self.next_page_number = self.number + 1
        self.previous_page_number = self.number - 1

    def __iter__(self):
        return iter(self.object_list)


# The logs table's columns: (sort key or None, heading, css class).
LOG_COLUMNS = [
    ("time", "Time (UTC)", ""),
    (None, "Provider", ""),
    ("model", "Model", ""),
    ("status", "Status", ""),
    ("tokens", "Tokens in / out", "num"),
    ("cost", "Cost", "num"),
    ("latency", "Latency", "num"),
    (None, "Session", ""),
    (None, "User", ""),
    (None, "Client", ""),
]


def _columns(query, sort: str) -> list[dict]:
    """Each column's heading and, for a sortable one, the link that sorts by it (again: the other way)."""
    columns = []
    for key, heading, css in LOG_COLUMNS:
        column = {"heading": heading, "css": css, "href": None, "direction": None}
        if key:
            current = sort.removeprefix("-") == key
            descending = sort.startswith("-")
            # A new column starts with its largest (newest, dearest, slowest) first; a second click flips it.
            wanted = (key if descending else f"-{key}") if current else f"-{key}"
            params = query.copy()
            params["sort"] = wanted
            column |= {
                "href": "?" + params.urlencode(),
                "direction": ("desc" if descending else "asc") if current else None,
            }
        columns.append(column)
    return columns


def _records(ctx: OrgContext):
    """The records of the org picked in the header (none when the user has no org)."""
    queryset = selectors.records_for(ctx.principal)
    return queryset.filter(org=ctx.org) if ctx.org else queryset.none()


def _page(request, template: str, ctx: OrgContext, **context):
    return render(request, template, {"orgs": ctx.orgs, "org": ctx.org, **context})


def _label(at: datetime.datetime, bucket: str, first: bool) -> str | list[str]:
    # Hours name their day on a second line where one starts (and on the first bar): 24 h spans two days'
    # "16:00". Chart.js draws a list as lines.
    at = at.astimezone(datetime.UTC)
    if bucket != "hour":
        return at.strftime("%b %d")
    return [at.strftime("%H:%M"), at.strftime("%b %d")] if first or at.hour == 0 else at.strftime("%H:%M")


def _chart_data(points: list[dict], bucket: str) -> dict:
    return {
        "labels": [_label(p["at"], bucket, n == 0) for n, p in enumerate(points)],
        "requests": [p["requests"] for p in points],
        "errors": [p["errors"] for p in points],
        "cost": [float(p["cost"]) for p in points],
        "input_tokens": [p["input_tokens"] for p in points],
        "output_tokens": [p["output_tokens"] for p in points],
        "p50": [round(p["p50_ms"], 1) if p["p50_ms"] is not None else None for p in points],
        "p95": [round(p["p95_ms"], 1) if p["p95_ms"] is not None else None for p in points],
    }


@login_required
def overview(request):
    ctx = OrgContext(request, RequestRecord)
    window = request.GET.get("window", "24h")
    span, bucket = WINDOWS.get(window, WINDOWS["24h"])
    since = timezone.now() - span
    if ctx.org is None:
        return _page(request, "observability/overview.html", ctx)
    # Rollups, kept by the record writer: the page costs the same at a thousand records or a hundred million.
    since = since.replace(minute=0, second=0, microsecond=0)
    totals = selectors.rollup_totals(ctx.org.pk, since)
    totals["error_rate"] = (totals["errors"] / totals["requests"] * 100) if totals["requests"] else 0
    points = selectors.rollup_series(ctx.org.pk, since, bucket)
    return _page(
        request,
        "observability/overview.html",
        ctx,
        window=window,
        windows=list(WINDOWS),
        totals=totals,
        chart=_chart_data(points, bucket),
        breakdowns={name: selectors.rollup_breakdown(ctx.org.pk, since, name, totals=totals) for name in BREAKDOWNS},
        cache_breakdowns=CACHE_BREAKDOWNS,
        since=since.isoformat(),  # a breakdown row's logs link selects the same window
    )


@login_required
def logs(request):
    ctx = OrgContext(request, RequestRecord)
    filters = selectors.RecordFilter(
        request.GET, queryset=_records(ctx).select_related("app", "key"), orgs=[ctx.org] if ctx.org else []
    )
    ordered, sort = selectors.sorted_records(
        filters.qs if filters.is_valid() else _records(ctx).none(), request.GET.get("sort")
    )
    page = PeekPage(ordered, request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    shown = query.copy()  # what a saved view keeps and the export reads: the filters and sort, not the org
    shown.pop("org", None)
    from evals.models import Dataset  # the logs page offers "add to dataset"; evals builds on observability

    datasets = (
        restrict(Dataset.objects.filter(org=ctx.org, archived_at__isnull=True), ctx.principal, CHANGE)
        if ctx.org
        else []
    )
    filtered = any(value for name, value in shown.items() if name != "sort")
    # The custom range's fields show what was asked in the form <input type=datetime-local> takes (UTC, no
    # offset), whatever form the link wrote it in (the overview's links send ISO 8601 with an offset).
    cleaned = filters.form.cleaned_data if filters.is_valid() else {}
    bounds = {
        name: cleaned[name].astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S") if cleaned.get(name) else ""
        for name in ("since", "until")
    }
    return _page(
        request,
        "observability/logs.html",
        ctx,
        filters=filters,
        groups=selectors.filter_groups(filters),
        page=page,
        query=query.urlencode(),
        view_query=shown.urlencode(),
        columns=_columns(query, sort),
        filtered=filtered,
        custom_range=bool(request.GET.get("since") or request.GET.get("until")),
        bounds=bounds,
        saved_views=selectors.saved_views(request.user, ctx.org) if ctx.org else [],
        datasets=datasets,
    )


@login_required
@require_POST
def saved_view_save(request):
    ctx = OrgContext(request, RequestRecord)  # ?org= on the form's action: the view is saved in that org
    name = request.POST.get("name", "").strip()
    # Kept as the page will read it back: parsed and encoded again, so nothing but query parameters survives.
    query = QueryDict(request.POST.get("query", "")).urlencode()
    if ctx.org is None:
        raise Http404("No organization.")
    if not name or len(name) > 80 or len(query) > 2000:
        messages.error(request, "Name the view (at most 80 characters) to save it.")
    else:
        services.saved_view_save(user=request.user, org=ctx.org, name=name, query=query)
        messages.success(request, f"Saved the view “{name}”.")
    return redirect(f"{reverse('observability:logs')}?{urlencode({'org': ctx.org.slug})}&{query}")


@login_required
@require_POST
def saved_view_delete(request, pk):
    ctx = OrgContext(request, RequestRecord)
    if not services.saved_view_delete(user=request.user, view_id=pk):
        raise Http404("No such saved view.")
    messages.success(request, "Deleted the saved view.")
    return redirect(f"{reverse('observability:logs')}?{urlencode({'org': ctx.org.slug if ctx.org else ''})}")


@login_required
def record_detail(request, pk):
    ctx = OrgContext(request, RequestRecord)
    # The version's row may be gone (records outlive prompts): the join then gives None, not a failed lookup.
    record = get_object_or_404(
        selectors.records_for(ctx.principal).select_related("app", "key", "org", "prompt_version__prompt__namespace"),
        pk=pk,
    )
    total = max(record.total_ms, 0.001)
    streaming = max(record.total_ms - record.overhead_ms - record.upstream_ms, 0)
    timing = [
        ("gateway", record.overhead_ms, record.overhead_ms / total * 100),
        ("upstream (to first headers)", record.upstream_ms, record.upstream_ms / total * 100),
        ("body / streaming", streaming, streaming / total * 100),
    ]
    ctx.org = record.org
    body = RequestBody.objects.filter(record=record).first()
    shown = None
    if body is not None and (body.request or body.response):
        shown = conversation(
            provider=record.provider,
            endpoint=record.endpoint,
            streamed=record.stream,
            request=body.request,
            response=body.response,
        )
    replay = shown is not None and any(t["role"] == "user" for t in shown["turns"])
    return _page(
        request,
        "observability/detail.html",
        ctx,
        record=record,
        timing=timing,
        body=body,
        conversation=shown,
        replay_url=f"{reverse('evals:playground')}?org={record.org.slug}&record={record.pk}" if replay else "",
        body_mode=selectors.body_mode(record.org_id),
        metadata=metadata_rows(body.metadata) if body and body.metadata else [],
    )


@login_required
def sessions(request):
    ctx = OrgContext(request, RequestRecord)
    sessions = selectors.session_rollups(ctx.org.pk) if ctx.org else []
    page = Paginator(sessions, 50).get_page(request.GET.get("page"))
    return _page(request, "observability/sessions.html", ctx, page=page)


@login_required
def session_detail(request, session_id):
    ctx = OrgContext(request, RequestRecord)
    records = traces.session_records(ctx.principal, ctx.org, session_id) if ctx.org else []
    if not records:
        raise Http404("No requests in this session.")
    trace = traces.session_trace(records)
    claude_code = any(r.client == "claude-code" for r in records)
    return _page(
        request,
        "observability/session.html",
        ctx,
        session_id=session_id,
        records=records,
        trace=trace,
        name=next((r.session_name for r in reversed(records) if r.session_name), ""),
        properties=_merged_properties(records),
        users=sorted({r.user_id for r in records if r.user_id}),
        claude_code=claude_code,
        turns=traces.claude_code_turns(records, trace["place"]) if claude_code else [],
        limited=len(records) >= traces.SESSION_LIMIT,
        body_mode=selectors.body_mode(ctx.org.pk),
    )


def _merged_properties(records) -> list[tuple[str, str]]:
    """A session's properties: each name with the values its requests carried (most sessions: one each)."""
    seen: dict[str, list[str]] = {}
    for record in records:
        for name, value in (record.properties or {}).items():
            if str(value) not in seen.setdefault(name, []):
                seen[name].append(str(value))
    return [(name, ", ".join(values)) for name, values in sorted(seen.items())]


@login_required
def end_user(request, user_id):
    """One end user of the org's applications (`X-Ingate-User-Id`, OpenAI's `user`, Anthropic's metadata): spend,
    requests and sessions per day over a window, from the rollups; their latest requests and sessions."""
    ctx = OrgContext(request, RequestRecord)
    if ctx.org is None:
        raise Http404("No requests from this user.")
    window = request.GET.get("window", "30d") if request.GET.get("window") in ("7d", "30d") else "30d"
    since = timezone.now() - WINDOWS[window][0]
    days = traces.end_user_series(ctx.org.pk, user_id, since)
    per_day = traces.end_user_sessions_per_day(ctx.org.pk, user_id, since)
    for day in days:
        day["sessions"] = per_day.get(day["at"].date(), 0)
    recent = traces.end_user_recent(ctx.principal, ctx.org, user_id)
    if not recent and not any(d["requests"] for d in days):
        raise Http404("No requests from this user.")
    return _page(
        request,
        "observability/end_user.html",
        ctx,
        user_id=user_id,
        window=window,
        totals=traces.end_user_totals(ctx.org.pk, user_id, since),
        charts=[
            ("Spend (USD)", "spend", charts.bars([(d["at"], float(d["cost"])) for d in days], money=True)),
            ("Requests", "requests", charts.bars([(d["at"], d["requests"]) for d in days])),
            ("Sessions started", "sessions", charts.bars([(d["at"], d["sessions"]) for d in days])),
        ],
        sessions=traces.end_user_sessions(ctx.org.pk, user_id)[:20],
        recent=recent,
        session_count=traces.end_user_sessions(ctx.org.pk, user_id).count(),
    )


@login_required
def live(request):
    ctx = OrgContext(request, RequestRecord)
    return _page(request, "observability/live.html", ctx)
