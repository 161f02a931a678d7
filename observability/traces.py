"""Reads for the request, session and end-user pages: a session as a trace (its requests on a time axis, nested by
`X-Ingate-Session-Path`, Claude Code's turns where the kept bodies show them), an end user's spend over time,
and a record's conversation for the playground. Every record read starts from `selectors.records_for`."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from django.db.models import Sum

from proxy import formats
from tenancy.models import Organization
from tenancy.permissions import Principal

from .bodies import conversation, playground_fields
from .models import RecordRollup, RequestBody, RequestRecord, SessionRollup
from .selectors import bucket_starts, record_sums, records_for

# How many of a session's requests the page draws (the newest sessions of coding agents reach thousands).
SESSION_LIMIT = 2000
# Claude Code's turns are read from kept bodies: at most this many are parsed for one page.
TURN_BODIES_LIMIT = 500


def duration_text(seconds: float) -> str:
    """A duration for people: seconds under a minute ("12.3 s"), then minutes, then hours."""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _tick(seconds: float, span: float) -> str:
    """A mark on the timeline's axis, precise enough that the five marks of a short session differ."""
    if span < 1:
        return f"{seconds * 1000:.0f} ms"
    if span < 10:
        return f"{seconds:.1f} s"
    return duration_text(seconds)


def record_replay(principal: Principal, org: Organization, record_id: str) -> dict[str, str] | None:
    """The playground's inputs from a record the principal may read: system prompt, last user message, model
    and provider. None when the record is unknown to them or kept no readable conversation."""
    record = (
        records_for(principal)
        .filter(org=org, pk=record_id)
        .values("provider", "endpoint", "model", "response_model", "stream")
        .first()
    )
    body = RequestBody.objects.filter(record_id=record_id).values("request").first() if record else None
    if not body or not body["request"]:
        return None
    shown = conversation(
        provider=record["provider"], endpoint=record["endpoint"], streamed=False, request=body["request"], response=""
    )
    fields = playground_fields(shown["turns"])
    if not fields["user"]:
        return None
    return {**fields, "model": record["model"] or record["response_model"], "provider": record["provider"]}


# --- a session as a trace ---------------------------------------------------------------------------


@dataclass
class Bar:
    """One request on the session's time axis, in percent of the session's span."""

    record: RequestRecord
    left: float
    width: float
    depth: int
    side: bool = False  # a Claude Code side request (no tools offered: titles, topics, quota checks)


@dataclass
class Group:
    """The requests of one session path (`/parent/child`), with the span they cover."""

    path: str
    name: str
    depth: int
    left: float = 0.0
    width: float = 0.0
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Turn:
    """A Claude Code turn: the user's message and the requests that answered it (tool loops, side requests)."""

    number: int
    prompt: str
    bars: list[Bar] = field(default_factory=list)


def _end(record: RequestRecord) -> datetime.datetime:
    return record.created_at + datetime.timedelta(milliseconds=record.total_ms or 0)


def _segments(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.strip("/").split("/") if part)


def session_records(principal: Principal, org: Organization, session_id: str) -> list[RequestRecord]:
    return list(
        records_for(principal)
        .filter(org=org, session_id=session_id)
        .select_related("app", "key")
        .order_by("created_at")[:SESSION_LIMIT]
    )


def session_trace(records: list[RequestRecord]) -> dict[str, Any]:
    """Totals, groups by session path (parents before children, siblings by first request) and the axis."""
    start = records[0].created_at
    end = max(_end(r) for r in records)
    span = max((end - start).total_seconds(), 0.001)

    def place(record: RequestRecord, depth: int) -> Bar:
        left = (record.created_at - start).total_seconds() / span * 100
        width = (record.total_ms or 0) / 1000 / span * 100
        return Bar(record, round(left, 3), round(max(min(width, 100 - left), 0.15), 3), depth)

    by_path: dict[tuple[str, ...], list[RequestRecord]] = {}
    for record in records:
        by_path.setdefault(_segments(record.session_path), []).append(record)
    # Every ancestor of a path gets a group, so a child never floats without its parent.
    for path in list(by_path):
        for n in range(len(path)):
            by_path.setdefault(path[:n], [])
    first = {path: min((r.created_at for r in rs), default=end) for path, rs in by_path.items()}

    def order(path: tuple[str, ...]) -> tuple:
        return tuple((first[path[: n + 1]], part) for n, part in enumerate(path))

    groups = []
    for path in sorted(by_path, key=order):
        rows = by_path[path]
        if not path and not rows:
            continue
        group = Group("/" + "/".join(path), path[-1] if path else "(no path)", len(path))
        group.bars = [place(r, len(path)) for r in rows]
        covered = [r for p, rs in by_path.items() if p[: len(path)] == path for r in rs]
        if covered:
            lo = min(r.created_at for r in covered)
            hi = max(_end(r) for r in covered)
            group.left = round((lo - start).total_seconds() / span * 100, 3)
            group.width = round(max((hi - lo).total_seconds() / span * 100, 0.15), 3)
        groups.append(group)
    sums = record_sums(records)
    return {
        "groups": groups,
        "nested": any(g.depth for g in groups),
        "sums": sums,
        "started": start,
        "ended": end,
        "duration": duration_text(span if len(records) > 1 or records[0].total_ms else 0),
        "input_tokens": sum(r.input_tokens or 0 for r in records),
        "output_tokens": sum(r.output_tokens or 0 for r in records),
        "ticks": [_tick(span * n / 4, span) for n in range(5)],
        "place": place,
    }


def _last_turn(request: str, provider: str, endpoint: str) -> tuple[bool, str] | None:
    """(offers tools, the user's own text of the last message or "") of a kept request; None if unreadable."""
    try:
        body = orjson.loads(request)
    except ValueError:
        return None  # cut at the size cap
    if not isinstance(body, dict):
        return None
    fmt = formats.of_provider(provider, endpoint)
    turns = fmt.transcript(body)
    last = turns[-1] if turns else None
    own = ""
    if last is not None and last["role"] == "user":
        own = "\n".join(p["text"] for p in last["parts"] if p["kind"] == "text").strip()
    return bool(fmt.tools(body)), own[:300]


def claude_code_turns(records: list[RequestRecord], place) -> list[Turn]:
    """Claude Code's turns, by this rule: a request that offers tools (the agent's main loop) and whose last
    message is the user's own text starts a turn; one whose last message carries only tool results continues
    the turn; a request offering no tools is a side request (titles, topics, quota checks on a small model),
    listed in the turn it happens in. Read from kept bodies (body mode `full`): a request whose body was not
    kept, or was cut at the size cap, joins the turn before it. Empty when no turn start can be read."""
    shown = records[:TURN_BODIES_LIMIT]
    by_id = {r.pk: r for r in shown}
    # One body at a time (each up to the org's size cap): only what the rule needs stays in memory.
    bodies = RequestBody.objects.filter(record_id__in=list(by_id)).exclude(request="")
    reads = {
        pk: _last_turn(request, by_id[pk].provider, by_id[pk].endpoint)
        for pk, request in bodies.values_list("record_id", "request").iterator(chunk_size=20)
    }
    turns: list[Turn] = []
    for record in shown:
        read = reads.get(record.pk)
        bar = place(record, 0)
        if read is not None:
            tools, own = read
            bar.side = not tools
            if tools and own:
                turns.append(Turn(len(turns) + 1, own))
        if turns:
            turns[-1].bars.append(bar)
        elif read is not None:
            turns.append(Turn(0, "", [bar]))  # before the first readable user message (a resumed session)
    return turns if any(t.number for t in turns) else []


# --- an end user ------------------------------------------------------------------------------------


def end_user_series(org_id: int, user_id: str, since: datetime.datetime) -> list[dict[str, Any]]:
    """Requests and cost of one end user per day since `since`, every day present (from the hourly rollups)."""
    rows = (
        RecordRollup.objects.filter(org_id=org_id, dimension="user", value=user_id, bucket__gte=since)
        .values_list("bucket", "requests", "cost", "errors", "input_tokens", "output_tokens")
        .order_by("bucket")
    )
    days: dict[datetime.date, dict[str, Any]] = {}
    for at in bucket_starts(since, datetime.datetime.now(datetime.UTC), "day"):
        days[at.date()] = {"at": at, "requests": 0, "cost": Decimal(0), "errors": 0, "tokens": 0}
    for bucket, requests, cost, errors, tokens_in, tokens_out in rows:
        day = days.setdefault(
            bucket.date(), {"at": bucket, "requests": 0, "cost": Decimal(0), "errors": 0, "tokens": 0}
        )
        day["requests"] += requests
        day["cost"] += cost
        day["errors"] += errors
        day["tokens"] += tokens_in + tokens_out
    return [days[d] for d in sorted(days)]


def end_user_sessions(org_id: int, user_id: str):
    return SessionRollup.objects.filter(org_id=org_id, user_id=user_id).order_by("-ended")


def end_user_sessions_per_day(org_id: int, user_id: str, since: datetime.datetime) -> dict[datetime.date, int]:
    started = end_user_sessions(org_id, user_id).filter(started__gte=since).values_list("started", flat=True)
    counted: dict[datetime.date, int] = {}
    for at in started:
        counted[at.date()] = counted.get(at.date(), 0) + 1
    return counted


def end_user_totals(org_id: int, user_id: str, since: datetime.datetime) -> dict[str, Any]:
    found = RecordRollup.objects.filter(org_id=org_id, dimension="user", value=user_id, bucket__gte=since).aggregate(
        requests=Sum("requests"), cost=Sum("cost"), errors=Sum("errors"), unpriced=Sum("unpriced"), priced=Sum("priced")
    )
    return {name: value or 0 for name, value in found.items()}


def end_user_recent(principal: Principal, org: Organization, user_id: str, limit: int = 20) -> list[RequestRecord]:
    return list(records_for(principal).filter(org=org, user_id=user_id).order_by("-created_at")[:limit])
