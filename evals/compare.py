"""Comparing two targets — of one run, or of two runs — item by item: outputs side by side, per-evaluator
score deltas, regressions and improvements, and the aggregate deltas. Items are matched by their key, which
stays the same across dataset versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.shortcuts import get_object_or_404

from tenancy.permissions import VIEW, Principal, restrict

from .models import EvalResult, EvalRun, EvalTarget
from .runner import summarize

_EPSILON = 1e-9
CHANGES = ("regression", "improvement", "mixed", "same", "only_a", "only_b")


@dataclass
class Row:
    key: str
    position: int
    input: str
    expected: str | None
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    deltas: dict[str, float] = field(default_factory=dict)
    change: str = "same"  # regression | improvement | mixed | same | only_a | only_b


def _side(result: EvalResult) -> dict[str, Any]:
    return {
        "output": result.output,
        "error": result.error,
        "passed": result.passed,
        "scores": {s["name"]: s["score"] for s in result.scores},
        "explanations": {s["name"]: s.get("explanation", "") for s in result.scores},
        "cost": float(result.cost) if result.cost is not None else None,
        "latency_ms": result.latency_ms,
        "request_id": result.request_id,
    }


def input_preview(item) -> str:
    """The item's input in one line for tables: its last message, or its variables."""
    if item.messages:
        content = item.messages[-1].get("content", "")
        return content if isinstance(content, str) else str(content)
    return ", ".join(f"{k}={v}" for k, v in (item.variables or {}).items())


def classify(a: dict[str, Any], b: dict[str, Any]) -> tuple[dict[str, float], str]:
    """Score deltas (b - a) per evaluator both sides have, and what the change is: a pass turning into a fail
    (or any score going down) is a regression, the reverse an improvement, both at once mixed."""
    deltas = {name: round(b["scores"][name] - a["scores"][name], 4) for name in a["scores"] if name in b["scores"]}
    worse = any(d < -_EPSILON for d in deltas.values()) or (a["passed"] and not b["passed"])
    better = any(d > _EPSILON for d in deltas.values()) or (b["passed"] and not a["passed"])
    return deltas, "mixed" if worse and better else "regression" if worse else "improvement" if better else "same"


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def target_of(principal: Principal, spec: str) -> EvalTarget:
    """The target `<run id>` (its first) or `<run id>:<position>` names, among the runs the principal sees.
    ValueError for a malformed spec; Http404 when there is no such run or target."""
    run_id, _, position = spec.partition(":")
    # ASCII digits only: str.isdigit() also takes '²', which int() then refuses.
    if not _number(run_id) or (position and not _number(position)):
        raise ValueError("Give <run id> or <run id>:<target position>.")
    run = get_object_or_404(restrict(EvalRun.objects.all(), principal, VIEW), pk=int(run_id))
    return get_object_or_404(EvalTarget, run=run, position=int(position or 0))


def _results(target: EvalTarget) -> dict[str, EvalResult]:
    return {r.item.key.hex: r for r in EvalResult.objects.filter(target=target).select_related("item")}


def compare(a: EvalTarget, b: EvalTarget) -> dict[str, Any]:
    left, right = _results(a), _results(b)
    rows: list[Row] = []
    for key in list(left) + [k for k in right if k not in left]:
        ra, rb = left.get(key), right.get(key)
        item = (ra or rb).item
        row = Row(
            key=key,
            position=item.position,
            input=input_preview(item),
            expected=item.expected,
            a=_side(ra) if ra else None,
            b=_side(rb) if rb else None,
        )
        if row.a and row.b:
            row.deltas, row.change = classify(row.a, row.b)
        else:
            row.change = "only_a" if row.a else "only_b"
        rows.append(row)
    rows.sort(key=lambda r: r.position)
    sa, sb = summarize(a), summarize(b)
    return {
        "a": {"run": a.run_id, "target": a.position, "label": str(a), "summary": sa},
        "b": {"run": b.run_id, "target": b.position, "label": str(b), "summary": sb},
        "delta": aggregate_delta(sa, sb),
        "counts": {c: sum(1 for r in rows if r.change == c) for c in CHANGES},
        "rows": [r.__dict__ for r in rows],
    }


def _minus(x, y):
    return None if x is None or y is None else round(y - x, 6)


def aggregate_delta(sa: dict[str, Any], sb: dict[str, Any]) -> dict[str, Any]:
    names = [n for n in sa["evaluators"] if n in sb["evaluators"]]
    return {
        "pass_rate": _minus(sa["pass_rate"], sb["pass_rate"]),
        "cost": _minus(sa["cost"], sb["cost"]),
        "latency_p50_ms": _minus(sa["latency_p50_ms"], sb["latency_p50_ms"]),
        "latency_p95_ms": _minus(sa["latency_p95_ms"], sb["latency_p95_ms"]),
        "evaluators": {
            n: {
                "mean": _minus(sa["evaluators"][n]["mean"], sb["evaluators"][n]["mean"]),
                "pass_rate": _minus(sa["evaluators"][n]["pass_rate"], sb["evaluators"][n]["pass_rate"]),
            }
            for n in names
        },
    }
