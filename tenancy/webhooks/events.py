"""The catalogue of webhook events: every type Ingate sends, what it means, and the builder of its `data`.

Every payload has the same envelope (`envelope`): the event id (also the `webhook-id` header), the type, when it
happened, the org, and `data`, built here from plain values. Builders take what the emitting code already has
and never copy a secret: a key appears by its public prefix, a credential by its name and provider."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    opt_in: bool = False  # sent only to endpoints that list it (an endpoint listing no events gets the others)


CATALOGUE: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("budget.threshold", "A budget's spend crossed one of its alert thresholds in the current period."),
        EventType("budget.exceeded", "A budget's spend reached its amount (100 %) in the current period."),
        EventType("ratelimit.exceeded", "Requests of a gateway key were refused by a rate limit (once a minute)."),
        EventType("guardrail.triggered", "A guardrail blocked or changed a request or its answer."),
        EventType("route.target_down", "A route target's circuit opened: routing skips it for a cool-down."),
        EventType("route.target_up", "A route target answered again: its circuit closed."),
        EventType(
            "request.failed",
            "A proxied request failed (optionally only for some HTTP statuses). Opt-in: list it to receive it.",
            opt_in=True,
        ),
        EventType("eval.run.completed", "An eval run finished."),
        EventType("eval.run.failed", "An eval run failed."),
        EventType("prompt.label.moved", "A prompt's label (such as production) now points at another version."),
        EventType("key.created", "A gateway key was created."),
        EventType("key.revoked", "A gateway key was revoked."),
        EventType("credential.changed", "A provider credential was added, changed or deleted."),
        EventType("webhook.disabled", "Another webhook endpoint of the org was disabled after failing for too long."),
        EventType("webhook.test", "Sent by the test-event button; means nothing else.", opt_in=True),
    )
}
EVENT_TYPES = tuple(CATALOGUE)


def wanted_by(endpoint, event_type: str, data: dict[str, Any]) -> bool:
    """Whether `endpoint` receives this event: its list of events (empty: all but the opt-in ones), and for
    request.failed its statuses."""
    listed = event_type in endpoint.events
    if not listed and (endpoint.events or CATALOGUE[event_type].opt_in):
        return False
    if event_type == "request.failed" and endpoint.failed_statuses:
        return data.get("status") in endpoint.failed_statuses
    return True


def envelope(event_id: str, event_type: str, at: datetime.datetime, org, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": event_type,
        "timestamp": at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
        "org": {"id": org.pk, "slug": org.slug},
        "data": data,
    }


# --- builders: one per source, plain values in, JSON-ready dict out ----------------------------------------------


def budget_data(event) -> dict[str, Any]:
    """A BudgetEvent (tenancy.models.BudgetEvent) with its budget."""
    budget = event.budget
    return {
        "budget": {
            "id": budget.pk,
            "name": budget.name,
            "scope": budget.scope_label(),
            "period": budget.period,
            "hard": budget.hard,
            "amount_usd": str(event.amount_usd),
        },
        "threshold_percent": event.threshold,
        "spend_usd": str(round(event.spend, 6)),
        "user_id": event.user_id,
        "period_start": event.period_start.isoformat(),
    }


def _request(row: dict[str, Any]) -> dict[str, Any]:
    """What every record-born event says of the request: ids and names, never bodies or headers."""
    return {
        "request_id": str(row.get("id")),
        "created_at": str(row.get("created_at")),
        "app_id": row.get("app_id"),
        "key_id": row.get("key_id"),
        "user_id": row.get("user_id") or "",
        "provider": row.get("provider") or "",
        "model": row.get("model") or "",
        "status": row.get("status"),
    }


def ratelimit_data(row: dict[str, Any], refused_this_minute: int) -> dict[str, Any]:
    return {**_request(row), "error": row.get("error") or "", "refused_in_batch": refused_this_minute}


def request_failed_data(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **_request(row),
        "outcome": row.get("outcome"),
        "error_type": row.get("error_type") or "",
        "error": row.get("error") or "",
    }


# Of a guardrail decision only these keys travel: what fired and what it did, never the matched text.
_DECISION_KEYS = ("check", "guardrail", "name", "kind", "type", "action", "stage", "direction", "verdict", "score")


def guardrail_data(row: dict[str, Any]) -> dict[str, Any]:
    decisions = row.get("guardrail_decisions") or []
    kept = [
        {k: d[k] for k in _DECISION_KEYS if k in d and isinstance(d[k], str | int | float | bool)}
        for d in decisions
        if isinstance(d, dict)
    ]
    return {**_request(row), "guardrail": row.get("guardrail"), "decisions": kept}


def target_data(note: dict[str, Any]) -> dict[str, Any]:
    """A circuit-breaker transition as the proxy hands it over (proxy/routing/health.py `transition_note`)."""
    return {
        "provider": note.get("provider", ""),
        "model": note.get("model", ""),
        "credential": note.get("credential", ""),
        "failure": note.get("failure") or "",
        "cooldown_seconds": note.get("cooldown"),
    }


def eval_run_data(run) -> dict[str, Any]:
    """An eval run (evals.models.EvalRun) that finished or failed."""
    return {
        "run_id": run.pk,
        "name": run.name,
        "status": run.status,
        "total": run.total,
        "done": run.done,
        "failed": run.failed,
        "error": run.error,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def label_data(*, prompt, label: str, version, previous_version=None, actor: str = "") -> dict[str, Any]:
    return {
        "prompt": {"id": prompt.pk, "ref": prompt.ref},
        "label": label,
        "version": version.number,
        "previous_version": previous_version.number if previous_version is not None else None,
        "by": actor,
    }


def key_data(key, actor: str = "") -> dict[str, Any]:
    """A gateway key by its public prefix (the digest and the plaintext never leave)."""
    return {
        "key": {"id": key.pk, "name": key.name, "prefix": key.prefix, "app_id": key.app_id, "scopes": list(key.scopes)},
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "by": actor,
    }


def credential_data(credential, change: str, actor: str = "") -> dict[str, Any]:
    """A provider credential by name and provider: the secret, its hint and the base URL stay home."""
    return {
        "credential": {"id": credential.pk, "name": credential.name, "provider": credential.provider},
        "change": change,  # created, updated, deleted
        "by": actor,
    }


def disabled_data(endpoint) -> dict[str, Any]:
    return {
        "endpoint": {"id": endpoint.pk, "url": endpoint.url, "description": endpoint.description},
        "reason": endpoint.disabled_reason,
    }


def test_data(endpoint) -> dict[str, Any]:
    return {"endpoint": {"id": endpoint.pk}, "message": "A test event from Ingate. It means nothing else."}
