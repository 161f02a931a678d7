"""Hourly rollups and session rows, kept up to date by the record writer in the transaction that inserts the
records, and read by the overview and sessions pages instead of raw rows (a million-row org stays fast).

Updates are read-modify-write under row locks (SELECT … FOR UPDATE on PostgreSQL; SQLite's writes are
serialised anyway), so several writer processes can share the tables."""

from __future__ import annotations

import bisect
import datetime
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q

from .models import FAILED, LATENCY_BOUNDS_MS, UNPRICED, RecordRollup, RequestRecord, SessionRollup

_ZERO = Decimal(0)


@dataclass
class _Sums:
    requests: int = 0
    errors: int = 0
    unpriced: int = 0
    priced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = _ZERO
    latency: list[int] = field(default_factory=list)

    def add(self, record: RequestRecord, with_latency: bool) -> None:
        self.requests += 1
        self.errors += record.failed
        self.unpriced += record.unpriced
        self.priced += record.priced
        self.input_tokens += record.input_tokens or 0
        self.output_tokens += record.output_tokens or 0
        self.cost += record.cost_total or _ZERO
        if with_latency:
            if not self.latency:
                self.latency = [0] * (len(LATENCY_BOUNDS_MS) + 1)
            self.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, record.total_ms)] += 1


def _dimensions(record: RequestRecord):
    yield "all", ""
    yield "model", (record.response_model or record.model)[:200]
    yield "provider", record.provider
    yield "app", str(record.app_id or "")
    yield "key", str(record.key_id or "")
    yield "user", record.user_id[:200]
    yield "prompt", str(record.prompt_version_id or "")


def _hour(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def apply(records: list[RequestRecord]) -> None:
    """Add newly inserted records to the rollups. Call inside the inserting transaction."""
    sums: dict[tuple, _Sums] = {}
    sessions: dict[tuple[int, str], list[RequestRecord]] = {}
    for record in records:
        hour = _hour(record.created_at)
        for dimension, value in _dimensions(record):
            if dimension == "all" or value:
                sums.setdefault((record.org_id, dimension, hour, value), _Sums()).add(record, dimension == "all")
        if record.session_id:
            sessions.setdefault((record.org_id, record.session_id), []).append(record)
    for attempt in range(3):
        try:
            with transaction.atomic():  # a savepoint: a lost race on a new row retries just this part
                _write_rollups(sums)
                _write_sessions(sessions)
            return
        except IntegrityError:
            if attempt == 2:
                raise


def _write_rollups(sums: dict[tuple, _Sums]) -> None:
    if not sums:
        return
    keys = list(sums)
    existing = {
        (row.org_id, row.dimension, row.bucket, row.value): row
        for row in RecordRollup.objects.select_for_update().filter(
            org_id__in={k[0] for k in keys}, bucket__in={k[2] for k in keys}, dimension__in={k[1] for k in keys}
        )
        if (row.org_id, row.dimension, row.bucket, row.value) in sums
    }
    changed, new = [], []
    for key, delta in sums.items():
        row = existing.get(key) or RecordRollup(org_id=key[0], dimension=key[1], bucket=key[2], value=key[3])
        row.requests += delta.requests
        row.errors += delta.errors
        row.unpriced += delta.unpriced
        row.priced += delta.priced
        row.input_tokens += delta.input_tokens
        row.output_tokens += delta.output_tokens
        row.cost += delta.cost
        if delta.latency:
            row.latency = [a + b for a, b in zip(row.latency or [0] * len(delta.latency), delta.latency, strict=False)]
        (changed if key in existing else new).append(row)
    fields = ["requests", "errors", "unpriced", "priced", "input_tokens", "output_tokens", "cost", "latency"]
    RecordRollup.objects.bulk_update(changed, fields, batch_size=500)
    RecordRollup.objects.bulk_create(new, batch_size=500)


def _write_sessions(sessions: dict[tuple[int, str], list[RequestRecord]]) -> None:
    if not sessions:
        return
    condition = Q()
    for org_id, session_id in sessions:
        condition |= Q(org_id=org_id, session_id=session_id)
    existing = {(s.org_id, s.session_id): s for s in SessionRollup.objects.select_for_update().filter(condition)}
    changed, new = [], []
    for key, records in sessions.items():
        row = existing.get(key)
        if row is None:
            row = SessionRollup(
                org_id=key[0], session_id=key[1], started=records[0].created_at, ended=records[0].created_at
            )
            new.append(row)
        else:
            changed.append(row)
        for record in records:
            row.started = min(row.started, record.created_at)
            row.ended = max(row.ended, record.created_at)
            row.requests += 1
            row.errors += record.failed
            row.unpriced += record.unpriced
            row.priced += record.priced
            row.tokens += record.total_tokens or 0
            row.cost += record.cost_total or _ZERO
            row.name = row.name or record.session_name
            row.user_id = row.user_id or record.user_id
            row.client = row.client or record.client
    fields = [
        "started",
        "ended",
        "requests",
        "errors",
        "unpriced",
        "priced",
        "tokens",
        "cost",
        "name",
        "user_id",
        "client",
    ]
    SessionRollup.objects.bulk_update(changed, fields, batch_size=500)
    SessionRollup.objects.bulk_create(new, batch_size=500)


def percentile(histogram: list[int], q: float) -> float | None:
    """The q-quantile of a latency histogram, interpolated linearly inside its bucket."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS_MS[index - 1] if index else 0
            high = LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else LATENCY_BOUNDS_MS[-1] * 2
            return low + (high - low) * ((rank - seen) / count)
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])


def rebuild(org_id: int) -> int:
    """Recompute an org's rollups and sessions from its raw records (after an import, a restore or a bulk
    load that bypassed the writer). Returns the number of rollup rows written."""
    from django.db.models import Case, Count, IntegerField, Max, Min, Sum, Value, When
    from django.db.models.functions import Coalesce, NullIf, TruncHour

    # The model as the writer files it: as answered, else as requested.
    records = RequestRecord.objects.filter(org_id=org_id).annotate(
        hour=TruncHour("created_at"),
        filed_model=Coalesce(NullIf("response_model", Value("")), "model"),
    )
    sums = {
        "requests": Count("id"),
        "errors": Count("id", filter=FAILED),
        "unpriced": Count("id", filter=UNPRICED),
        "priced": Count("id", filter=Q(cost_total__isnull=False)),
        "input": Coalesce(Sum("input_tokens"), 0),
        "output": Coalesce(Sum("output_tokens"), 0),
        "spent": Coalesce(Sum("cost_total"), _ZERO),
    }
    fields = {
        "model": "filed_model",
        "provider": "provider",
        "app": "app_id",
        "key": "key_id",
        "user": "user_id",
        "prompt": "prompt_version_id",
    }
    rows: list[RecordRollup] = []
    with transaction.atomic():
        RecordRollup.objects.filter(org_id=org_id).delete()
        SessionRollup.objects.filter(org_id=org_id).delete()
        latency_bucket = Case(
            *[When(total_ms__lte=bound, then=Value(i)) for i, bound in enumerate(LATENCY_BOUNDS_MS)],
            default=Value(len(LATENCY_BOUNDS_MS)),
            output_field=IntegerField(),
        )
        histograms: dict = {}
        for row in records.annotate(lb=latency_bucket).values("hour", "lb").annotate(n=Count("id")):
            histogram = histograms.setdefault(row["hour"], [0] * (len(LATENCY_BOUNDS_MS) + 1))
            histogram[row["lb"]] += row["n"]
        for row in records.values("hour").annotate(**sums):
            rows.append(_rollup(org_id, "all", row["hour"], "", row, histograms.get(row["hour"], [])))
        for dimension, name in fields.items():
            for row in records.exclude(**{f"{name}__isnull": True}).values("hour", name).annotate(**sums):
                value = str(row[name] or "")
                if dimension == "model" and not value:
                    continue
                if value:
                    rows.append(_rollup(org_id, dimension, row["hour"], value[:200], row, []))
        RecordRollup.objects.bulk_create(rows, batch_size=1000)
        sessions = (
            RequestRecord.objects.filter(org_id=org_id)
            .exclude(session_id="")
            .values("session_id")
            .annotate(
                started=Min("created_at"),
                ended=Max("created_at"),
                requests=Count("id"),
                errors=Count("id", filter=FAILED),
                unpriced=Count("id", filter=UNPRICED),
                priced=Count("id", filter=Q(cost_total__isnull=False)),
                tokens=Coalesce(Sum("total_tokens"), 0),
                cost=Coalesce(Sum("cost_total"), _ZERO),
                name=Max("session_name"),
                user=Max("user_id"),
                client=Max("client"),
            )
        )
        SessionRollup.objects.bulk_create(
            (
                SessionRollup(
                    org_id=org_id,
                    session_id=s["session_id"],
                    started=s["started"],
                    ended=s["ended"],
                    requests=s["requests"],
                    errors=s["errors"],
                    unpriced=s["unpriced"],
                    priced=s["priced"],
                    tokens=s["tokens"],
                    cost=s["cost"],
                    name=s["name"] or "",
                    user_id=s["user"] or "",
                    client=s["client"] or "",
                )
                for s in sessions.iterator()
            ),
            batch_size=1000,
        )
    return len(rows)


def _rollup(org_id, dimension, hour, value, row, histogram) -> RecordRollup:
    return RecordRollup(
        org_id=org_id,
        dimension=dimension,
        bucket=hour,
        value=value,
        requests=row["requests"],
        errors=row["errors"],
        unpriced=row["unpriced"],
        priced=row["priced"],
        input_tokens=row["input"],
        output_tokens=row["output"],
        cost=row["spent"],
        latency=histogram,
    )
