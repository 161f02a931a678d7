"""Reads of scores (feedback on request records): which record a caller may score, the scores a caller may see,
and records narrowed by their scores (the logs filter, the review queue, datasets built from scored records).
Writes are in services.py. Every read starts from tenancy.permissions (`restrict`, `orgs_where`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from tenancy.permissions import VIEW, Principal, orgs_where, restrict

from .models import RequestRecord, Score

# `score=` as people write it: a label (`good`), a number (`4`), or a comparison (`>=4`, `<0.5`).
_COMPARISON = re.compile(r"^\s*(>=|<=|>|<|=)?\s*(-?\d+(?:\.\d+)?)\s*$")
_LOOKUPS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt", "=": "exact", None: "exact"}
SCORE_HELP = "a label (good), a number (4) or a comparison (>=4, <0.5)"


def scores_for(principal: Principal) -> QuerySet[Score]:
    """The scores `principal` may read (those of the orgs whose records it reads, or that it may score in)."""
    return restrict(Score.objects.all(), principal, VIEW)


def record_to_score(principal: Principal, request_id) -> RequestRecord | None:
    """The record with this request id in an org whose scores `principal` sees, or None; whether it may add
    one there is `can_add(principal, Score, record.org)`. A key with only `scores:write` finds its org's
    records without reading them: the orgs come from the Score grant, not from the records'."""
    orgs = orgs_where(principal, Score, VIEW).values("pk")
    return RequestRecord.objects.filter(pk=request_id, org__in=orgs).select_related("org").first()


def record_scores(record: RequestRecord) -> QuerySet[Score]:
    """A record's scores, newest first (for a record the caller has already been allowed to see)."""
    return Score.objects.filter(record_id=record.pk, org_id=record.org_id).select_related("author")


@dataclass(frozen=True)
class ScoreMatch:
    """`score=` parsed: a label, or a number with a comparison."""

    label: str = ""
    lookup: str = "exact"
    number: float | None = None
    text: str = ""  # as written

    @classmethod
    def parse(cls, text: str) -> ScoreMatch:
        found = _COMPARISON.match(text)
        if found:
            return cls(lookup=_LOOKUPS[found.group(1)], number=float(found.group(2)), text=text.strip())
        if text.strip()[:1] in "<>=" and text.strip():
            raise ValueError(f"{text.strip()!r} is not a score: write {SCORE_HELP}.")
        return cls(label=text.strip(), text=text.strip())

    def condition(self) -> Q:
        if self.number is None:
            return Q(label__iexact=self.label)
        return Q(**{f"value__{self.lookup}": self.number})


def with_score(records: QuerySet[RequestRecord], *, name: str = "", match: ScoreMatch | None = None) -> QuerySet:
    """Records carrying a score named `name` (any name when empty) that `match` accepts (any value when None)."""
    wanted = Score.objects.filter(record_id=OuterRef("pk"), org_id=OuterRef("org_id"))
    if name:
        wanted = wanted.filter(name=name)
    if match is not None:
        wanted = wanted.filter(match.condition())
    return records.filter(Exists(wanted))


def without_score(records: QuerySet[RequestRecord], *, name: str) -> QuerySet:
    """Records with no score named `name` yet: what a review queue still has to do."""
    return records.exclude(Exists(Score.objects.filter(record_id=OuterRef("pk"), org_id=OuterRef("org_id"), name=name)))


def score_names(org_id: int) -> list[str]:
    """The score names used in an org so far (for pickers), most used first."""
    rows = Score.objects.filter(org_id=org_id).values("name").annotate(n=Count("id")).order_by("-n", "name")[:50]
    return [row["name"] for row in rows]
