"""Where events come from: the small calls the rest of Ingate makes, each turning what it has into one event
with a cause, so that it fires once however often the call is repeated.

None of these runs on the proxy's request path. Records arrive here from the record pipeline after a batch is
written (plain row dicts, `on_records`), circuit-breaker transitions as notes the proxy handed to its record
sink (`on_notes`), the rest from the services that made the change, inside their transaction."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from ..models import WebhookEndpoint
from . import events
from .outbox import emit

# --- tenancy's own services -----------------------------------------------------------------------------------


def key_created(key, actor) -> None:
    emit(
        org_id=key.org_id,
        event_type="key.created",
        data=events.key_data(key, str(actor)),
        cause=f"key.created:{key.pk}",
    )


def key_revoked(key, actor) -> None:
    emit(
        org_id=key.org_id,
        event_type="key.revoked",
        data=events.key_data(key, str(actor)),
        cause=f"key.revoked:{key.pk}",
    )


def credential_changed(credential, change: str, actor) -> None:
    emit(
        org_id=credential.org_id,
        event_type="credential.changed",
        data=events.credential_data(credential, change, str(actor)),
    )


# --- evals and prompts --------------------------------------------------------------------------------------------


def eval_run_finished(run, *, completed: bool) -> None:
    """An eval run completed, or failed (once each: the cause is the run and its ending)."""
    kind = "eval.run.completed" if completed else "eval.run.failed"
    emit(org_id=run.org_id, event_type=kind, data=events.eval_run_data(run), cause=f"{kind}:{run.pk}")


def label_moved(*, org_id: int, prompt, label: str, version, previous_version=None, actor="") -> None:
    emit(
        org_id=org_id,
        event_type="prompt.label.moved",
        data=events.label_data(
            prompt=prompt, label=label, version=version, previous_version=previous_version, actor=str(actor)
        ),
    )


# --- records, after the pipeline wrote a batch ------------------------------------------------------------------------


def _minute(created_at: Any) -> str:
    moment = (
        created_at if isinstance(created_at, datetime.datetime) else datetime.datetime.fromisoformat(str(created_at))
    )
    return moment.astimezone(datetime.UTC).strftime("%Y%m%d%H%M")


def on_records(rows: Iterable[dict[str, Any]], *, rate_limited: str, failed_outcomes: frozenset[str]) -> int:
    """Events for rows just inserted (each row once: the pipeline passes only what it inserted): a key's
    rate-limit refusals (`error_type` == `rate_limited`; one event per key and minute), failed requests (an
    `outcome` in `failed_outcomes`), and guardrail decisions (a non-empty `guardrail`). The record pipeline says
    which codes mean what (they are the proxy's). Costs one query per batch, and only for batches holding such
    rows. Returns the events emitted."""
    wanted: list[tuple[int, str, dict[str, Any], str]] = []  # (org, type, data, cause)
    refused: dict[tuple[int, Any, str], list[dict[str, Any]]] = {}
    for row in rows:
        org_id = row.get("org_id")
        if row.get("error_type") == rate_limited:
            refused.setdefault((org_id, row.get("key_id"), _minute(row["created_at"])), []).append(row)
        elif row.get("outcome") in failed_outcomes:
            wanted.append((org_id, "request.failed", events.request_failed_data(row), f"request.failed:{row['id']}"))
        if row.get("guardrail"):
            cause = f"guardrail.triggered:{row['id']}"
            wanted.append((org_id, "guardrail.triggered", events.guardrail_data(row), cause))
    for (org_id, key_id, minute), group in refused.items():
        cause = f"ratelimit.exceeded:{org_id}:{key_id}:{minute}"
        wanted.append((org_id, "ratelimit.exceeded", events.ratelimit_data(group[0], len(group)), cause))
    if not wanted:
        return 0
    orgs = {org_id for org_id, *_ in wanted}
    listening = set(WebhookEndpoint.objects.filter(enabled=True, org_id__in=orgs).values_list("org_id", flat=True))
    emitted = 0
    for org_id, event_type, data, cause in wanted:
        if org_id in listening and emit(org_id=org_id, event_type=event_type, data=data, cause=cause) is not None:
            emitted += 1
    return emitted


# --- circuit-breaker transitions, handed over by the proxy ------------------------------------------------------


def on_notes(notes: Iterable[dict[str, Any]]) -> int:
    """`route.target_down` / `route.target_up` for the transitions the proxy noted (proxy/routing/health.py)."""
    emitted = 0
    for note in notes:
        event_type = {"target_down": "route.target_down", "target_up": "route.target_up"}.get(note.get("kind"))
        try:
            org_id = int(note.get("org_id"))
        except (TypeError, ValueError):
            continue
        if event_type is None:
            continue
        cause = f"{event_type}:{note.get('id')}" if note.get("id") else None
        if emit(org_id=org_id, event_type=event_type, data=events.target_data(note), cause=cause) is not None:
            emitted += 1
    return emitted
