"""Hourly rollups and session rows, kept up to date by the record writer in the transaction that inserts the
records, and read by the overview and sessions pages instead of raw rows (a million-row org stays fast).

Updates are read-modify-write under row locks (SELECT … FOR UPDATE on PostgreSQL; SQLite's writes are
serialised anyway), so several writer processes can share the tables."""

from __future__ import annotations

import bisect
import datetime
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from .insert import upsert
from .models import FAILED, LATENCY_BOUNDS_MS, UNPRICED, RecordRollup, RequestRecord, SessionRollup, UsageSource

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
    cache_hits: int = 0
    cost_saved: Decimal = _ZERO
    latency: list[int] = field(default_factory=list)

    def add(self, other: _Sums) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.unpriced += other.unpriced
        self.priced += other.priced
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.cache_hits += other.cache_hits
        self.cost_saved += other.cost_saved


# The dimensions a record is counted in, in the order of apply's key after the hour.
_DIMENSIONS = ("all", "model", "provider", "app", "key", "user", "prompt")


def _as_row(record: RequestRecord) -> dict:
    """A model instance as the plain row the writer passes (tests and imports hand over instances)."""
    row = {field.attname: getattr(record, field.attname) for field in RequestRecord._meta.concrete_fields}
    row["cost_total"] = None if record.cost_total is None else str(record.cost_total)
    return row


def _hour(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _moment(value) -> datetime.datetime:
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)


def apply(records: list) -> None:
    """Add newly inserted records to the rollups: the writer's rows (build_row's dicts) or RequestRecord
    instances. Call inside the inserting transaction.

    Rows are first summed per combination of everything a rollup is keyed by (one dict lookup a row); each
    combination then counts once in each of its dimensions. Whether a row failed, is unpriced or priced is asked
    of the model (RequestRecord's properties, the one home of those rules) once per kind of row, not per row."""
    groups: dict[tuple, _Sums] = {}
    kinds: dict[tuple, tuple[int, int, int]] = {}
    sessions: dict[tuple[int, str], list] = {}  # per session: _SESSION_FIELDS' values
    bounds = LATENCY_BOUNDS_MS
    for record in records:
        row = record if isinstance(record, dict) else _as_row(record)
        cost = row.get("cost_total")
        kind = (row["outcome"], row["status"], row.get("usage_source", UsageSource.NONE), row["endpoint"], cost is None)
        states = kinds.get(kind)
        if states is None:
            probe = RequestRecord(
                outcome=kind[0],
                status=kind[1],
                usage_source=kind[2],
                endpoint=kind[3],
                cost_total=None if kind[4] else _ZERO,
            )
            states = kinds[kind] = (int(probe.failed), int(probe.unpriced), int(probe.priced))
        moment = _moment(row["created_at"])
        key = (
            row["org_id"],
            _hour(moment),
            (row["response_model"] or row["model"])[:200],
            row["provider"],
            str(row.get("app_id") or ""),
            str(row.get("key_id") or ""),
            row.get("user_id", "")[:200],
            str(row.get("prompt_version_id") or ""),
        )
        sums = groups.get(key)
        if sums is None:
            sums = groups[key] = _Sums(latency=[0] * (len(bounds) + 1))
        value = Decimal(cost) if cost is not None else _ZERO
        sums.requests += 1
        sums.errors += states[0]
        sums.unpriced += states[1]
        sums.priced += states[2]
        sums.input_tokens += row.get("input_tokens") or 0
        sums.output_tokens += row.get("output_tokens") or 0
        sums.cost += value
        if row.get("cache_hit"):
            sums.cache_hits += 1
            saved = row.get("cost_saved")
            if saved is not None:
                sums.cost_saved += Decimal(saved)
        sums.latency[bisect.bisect_left(bounds, row["total_ms"])] += 1
        if row.get("session_id"):
            session = sessions.get((row["org_id"], row["session_id"]))
            if session is None:
                sessions[(row["org_id"], row["session_id"])] = [
                    moment,
                    moment,
                    1,
                    *states,
                    row.get("total_tokens") or 0,
                    value,
                    row.get("session_name", ""),
                    row.get("user_id", ""),
                    row.get("client", ""),
                ]
            else:
                session[0] = min(session[0], moment)
                session[1] = max(session[1], moment)
                session[2] += 1
                session[3] += states[0]
                session[4] += states[1]
                session[5] += states[2]
                session[6] += row.get("total_tokens") or 0
                session[7] += value
                session[8] = session[8] or row.get("session_name", "")
                session[9] = session[9] or row.get("user_id", "")
                session[10] = session[10] or row.get("client", "")
    sums_by_dimension: dict[tuple, _Sums] = {}
    for (org_id, hour, *values), group in groups.items():
        for dimension, value in zip(_DIMENSIONS, ("", *values), strict=True):
            if dimension == "all" or value:
                total = sums_by_dimension.get((org_id, dimension, hour, value))
                if total is None:
                    total = sums_by_dimension[(org_id, dimension, hour, value)] = _Sums()
                total.add(group)
                if dimension == "all":
                    total.latency = [
                        a + b for a, b in zip(total.latency or [0] * len(group.latency), group.latency, strict=True)
                    ]
    for attempt in range(3):
        try:
            with transaction.atomic():  # a savepoint: a lost race on a new row retries just this part
                _write_rollups(sums_by_dimension)
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
        row.cache_hits += delta.cache_hits
        row.cost_saved += delta.cost_saved
        if delta.latency:
            row.latency = [a + b for a, b in zip(row.latency or [0] * len(delta.latency), delta.latency, strict=False)]
        (changed if key in existing else new).append(row)
    fields = [
        "requests",
        "errors",
        "unpriced",
        "priced",
        "input_tokens",
        "output_tokens",
        "cost",
        "cache_hits",
        "cost_saved",
        "latency",
    ]
    _update_locked(RecordRollup, changed, ["org_id", "dimension", "bucket", "value"], fields)
    RecordRollup.objects.bulk_create(new, batch_size=500)


# A session's sums in the order apply() keeps them; the earliest start, the latest end, sums, first names given.
_SESSION_FIELDS = (
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
)


def _write_sessions(sessions: dict[tuple[int, str], list]) -> None:
    """Add a batch's sums to its sessions in one upsert: no read, no lock taken beyond the rows it writes (in
    one order, so two writers never deadlock), and no lost race on a new session."""
    if not sessions:
        return
    ops = connection.ops
    table = ops.quote_name(SessionRollup._meta.db_table)
    fields = [SessionRollup._meta.get_field(name) for name in ("org_id", "session_id", *_SESSION_FIELDS)]
    names = [ops.quote_name(field.column) for field in fields]
    least, greatest = ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")

    def merged(name: str) -> str:
        column, new = f"{table}.{ops.quote_name(name)}", f"excluded.{ops.quote_name(name)}"
        if name == "started":
            return f"{least}({column}, {new})"
        if name == "ended":
            return f"{greatest}({column}, {new})"
        if name in ("name", "user_id", "client"):
            return f"CASE WHEN {column} = '' THEN {new} ELSE {column} END"
        return f"{column} + {new}"

    tail = f"ON CONFLICT ({names[0]}, {names[1]}) DO UPDATE SET " + ", ".join(
        f"{ops.quote_name(field.column)} = {merged(field.column)}" for field in fields[2:]
    )
    keys = sorted(sessions)
    if connection.vendor == "postgresql":  # through COPY: no statement of ~700 parameters to bind
        values = [(*key, *sessions[key]) for key in keys]
        upsert(SessionRollup, [field.column for field in fields], values, f"ORDER BY {names[0]}, {names[1]} {tail}")
        return
    placeholders = "({})".format(", ".join(["%s"] * len(fields)))
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES {', '.join([placeholders] * len(keys))} {tail}"
    params = []
    for key in keys:
        values = (*key, *sessions[key])
        params.extend(field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _update_locked(model, rows: list, keys: list[str], fields: list[str]) -> None:
    """Write `fields` of rows this transaction read FOR UPDATE, in one statement: an INSERT whose every row
    conflicts on the unique `keys` and so updates. Django's bulk_update builds a CASE per field per row instead,
    which was most of the rollups' cost. New rows go through bulk_create, whose IntegrityError on a lost race
    makes apply() retry."""
    if not rows:
        return
    ops = connection.ops
    columns = [model._meta.get_field(name) for name in [*keys, *fields]]
    placeholders = "({})".format(", ".join(["%s"] * len(columns)))
    names = [ops.quote_name(field.column) for field in columns]
    update = ", ".join(
        f"{ops.quote_name(model._meta.get_field(name).column)} = excluded.{ops.quote_name(model._meta.get_field(name).column)}"
        for name in fields
    )
    sql = (
        f"INSERT INTO {ops.quote_name(model._meta.db_table)} ({', '.join(names)}) VALUES "
        f"{', '.join([placeholders] * len(rows))} "
        f"ON CONFLICT ({', '.join(names[: len(keys)])}) DO UPDATE SET {update}"
    )
    params = [field.get_db_prep_save(getattr(row, field.attname), connection) for row in rows for field in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


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
        "hits": Count("id", filter=Q(cache_hit=True)),
        "saved": Coalesce(Sum("cost_saved", filter=Q(cache_hit=True)), _ZERO),
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
        cache_hits=row["hits"],
        cost_saved=row["saved"],
        latency=histogram,
    )
