"""Every write to datasets and eval runs, each with its audit entry. A dataset change is a new version (the
dataset row is locked, so two changes at once get consecutive numbers); a run is queued once its rows are
committed. Callers check who may do what (tenancy.permissions.restrict), as the other apps' views do."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from observability.models import RequestRecord
from observability.scores import ScoreMatch, with_score
from prompts.selectors import PromptRefError, prompt_version_by_ref
from proxy import formats
from proxy.providers import PROVIDER_NAMES
from tenancy.audit import Actor, audit_record
from tenancy.models import Organization
from tenancy.permissions import VIEW, restrict
from tenancy.services import audited_create, audited_update

from . import evaluators as evaluator_registry
from .models import Dataset, DatasetItem, DatasetVersion, EvalRun, EvalTarget, RunStatus
from .tasks import queue_run
from .transfer import ItemData, clean_item


def _user(actor: Actor):
    return actor.user if actor.user is not None and actor.user.pk else None


@transaction.atomic
def dataset_create(
    *,
    actor: Actor,
    org: Organization,
    name: str,
    description: str = "",
    items: Iterable[ItemData] = (),
    message: str = "Created",
) -> Dataset:
    dataset = Dataset(org=org, name=name.strip(), description=description, created_by=_user(actor))
    dataset.full_clean()
    audited_create(actor=actor, obj=dataset)
    version_create(actor=actor, dataset=dataset, items=list(items), message=message)
    return dataset


@transaction.atomic
def version_create(*, actor: Actor, dataset: Dataset, items: list[ItemData], message: str = "") -> DatasetVersion:
    """A new version holding exactly `items` (keys kept where given, so an item is the same across versions)."""
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
    number = (dataset.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    version = DatasetVersion.objects.create(
        dataset=dataset,
        number=number,
        message=message[:500],
        item_count=len(items),
        author_name=str(actor.principal)[:200],
    )
    seen: set[uuid.UUID] = set()
    rows = []
    for position, item in enumerate(items):
        key = _key(item.key)
        if key in seen:  # the same key twice would make comparisons ambiguous: the later copy is a new item
            key = uuid.uuid4()
        seen.add(key)
        rows.append(
            DatasetItem(
                version=version,
                key=key,
                position=position,
                messages=item.messages,
                variables=item.variables or {},
                expected=item.expected,
                metadata=item.metadata or {},
                tags=item.tags or [],
                source_record=_key(item.metadata.get("source_record")) if item.metadata.get("source_record") else None,
            )
        )
    DatasetItem.objects.bulk_create(rows, batch_size=1000)
    audit_record(
        actor=actor,
        action="dataset_version_create",
        obj=dataset,
        changes={"version": number, "items": len(items), "message": message},
    )
    return version


def _key(value) -> uuid.UUID:
    try:
        return uuid.UUID(str(value)) if value else uuid.uuid4()
    except ValueError:
        return uuid.uuid4()


def item_data(item: DatasetItem) -> ItemData:
    return ItemData(
        messages=item.messages,
        variables=item.variables,
        expected=item.expected,
        metadata=item.metadata,
        tags=item.tags,
        key=item.key.hex,
    )


def current_items(dataset: Dataset) -> list[ItemData]:
    latest = dataset.latest
    return [item_data(item) for item in latest.items.all()] if latest else []


@transaction.atomic
def items_add(*, actor: Actor, dataset: Dataset, items: list[ItemData], message: str = "") -> DatasetVersion:
    """The next version: the latest version's items followed by `items`."""
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
    return version_create(
        actor=actor,
        dataset=dataset,
        items=current_items(dataset) + items,
        message=message or f"Added {len(items)} item{'s' if len(items) != 1 else ''}",
    )


@transaction.atomic
def items_remove(*, actor: Actor, dataset: Dataset, keys: Iterable[str], message: str = "") -> DatasetVersion:
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
    gone = {uuid.UUID(str(k)).hex for k in keys}
    kept = [item for item in current_items(dataset) if item.key not in gone]
    return version_create(actor=actor, dataset=dataset, items=kept, message=message or f"Removed {len(gone)} item(s)")


@transaction.atomic
def dataset_update(*, actor: Actor, dataset: Dataset, **fields) -> Dataset:
    """Change a dataset's description (its items change only by new versions)."""
    return audited_update(actor=actor, obj=dataset, fields={k: v for k, v in fields.items() if k == "description"})


@transaction.atomic
def dataset_archive(*, actor: Actor, dataset: Dataset) -> Dataset:
    if dataset.archived_at is None:
        dataset.archived_at = timezone.now()
        dataset.save(update_fields=["archived_at"])
        audit_record(actor=actor, action="archive", obj=dataset)
    return dataset


def item_from_record(record) -> ItemData:
    """A dataset item from a request record: its messages as input, its answer as the expected output. Needs
    the record's full body (the org's body mode `full`); raises ValueError otherwise."""
    body = getattr(record, "body", None)
    if body is None or not body.request:
        raise ValueError(f"Record {record.pk} has no stored request body (the org's body mode keeps none).")
    try:
        request = json.loads(body.request)
    except ValueError:
        raise ValueError(f"Record {record.pk}'s stored request body is not JSON (it may be truncated).") from None
    if not isinstance(request, dict):
        raise ValueError(f"Record {record.pk}'s request is not a chat request.")
    fmt = formats.of_provider(record.provider, record.endpoint)
    messages = fmt.chat_messages(request)
    expected = None
    if body.response and record.stream:
        # A streamed answer is stored reassembled, as the text the client saw (observability.bodies); a cut one
        # would make a wrong expected output.
        expected = None if body.truncated else body.response
    elif body.response:
        try:
            expected = fmt.text(json.loads(body.response)) or None
        except ValueError:
            expected = None
    return clean_item(
        {
            "messages": messages,
            "expected": expected,
            "metadata": {"source_record": str(record.pk), "model": record.model, "provider": record.provider},
        }
    )


@transaction.atomic
def items_from_records(*, actor: Actor, dataset: Dataset, record_ids: list[str]) -> DatasetVersion:
    """The next version with items made from request records the actor may see in the dataset's org; nothing
    is added when any of them cannot be used (a field error on `records` names each)."""
    found = {
        str(r.pk): r
        for r in restrict(
            RequestRecord.objects.filter(org=dataset.org, pk__in=record_ids), actor.principal, VIEW
        ).select_related("body")
    }
    errors, items = [], []
    for record_id in record_ids:
        record = found.get(record_id)
        if record is None:
            errors.append(f"{record_id}: no such record in {dataset.org.name}.")
            continue
        try:
            items.append(item_from_record(record))
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValidationError({"records": errors})
    return items_add(
        actor=actor, dataset=dataset, items=items, message=f"Added {len(items)} item(s) from request records"
    )


@transaction.atomic
def dataset_from_scores(
    *,
    actor: Actor,
    org: Organization,
    dataset_name: str,
    score_name: str,
    score: ScoreMatch | None = None,
    limit: int = 500,
) -> tuple[DatasetVersion, int]:
    """A dataset version made from the newest `limit` records of `org` the actor may read that carry a score
    `score_name` matching `score` (any value when None): each record's messages as input, its answer as the
    expected output. The dataset is created when no dataset has that name, else it gets a new version with
    the items added. Records without a usable body are left out and counted: (version, left out). Nothing
    is made when no record can be used (a field error on `score_name` says why)."""
    readable = restrict(RequestRecord.objects.filter(org=org), actor.principal, VIEW)
    records = list(
        with_score(readable, name=score_name, match=score).select_related("body").order_by("-created_at")[:limit]
    )
    items, left_out = [], 0
    for record in records:
        try:
            items.append(item_from_record(record))
        except ValueError:
            left_out += 1
    if not items:
        why = "its text is not kept (body mode full)" if records else "none carries that score"
        raise ValidationError({"score_name": f"No request of {org.name} can be used: {why}."})
    items.reverse()  # oldest first, as they happened
    message = f"{len(items)} request(s) scored {score_name}" + (f" {score.text}" if score else "")
    dataset = Dataset.objects.filter(org=org, name=dataset_name.strip()).first()
    if dataset is None:
        dataset = dataset_create(actor=actor, org=org, name=dataset_name, items=items, message=message)
        return dataset.latest, left_out
    return items_add(actor=actor, dataset=dataset, items=items, message=message), left_out


# --- runs -------------------------------------------------------------------------------------------


def _clean_targets(org: Organization, targets: list) -> list[EvalTarget]:
    if not isinstance(targets, list) or not targets:
        raise ValidationError({"targets": "Give at least one target."})
    if len(targets) > settings.INGATE_EVAL_MAX_TARGETS:
        raise ValidationError({"targets": f"At most {settings.INGATE_EVAL_MAX_TARGETS} targets per run."})
    cleaned, errors = [], {}
    for n, raw in enumerate(targets):
        if not isinstance(raw, dict):
            errors[f"targets.{n}"] = "Each target is an object."
            continue
        version = None
        if raw.get("prompt_version"):
            # `support/greeter@3` as the pages write it, or the version's id (what the API took at first).
            try:
                version = prompt_version_by_ref(ref=raw["prompt_version"], orgs=[org.pk])
            except PromptRefError as exc:
                errors[f"targets.{n}.prompt_version"] = str(exc)
                continue
        messages = raw.get("messages") or []
        if not isinstance(messages, list) or any(
            not isinstance(m, dict) or "role" not in m or "content" not in m for m in messages
        ):
            errors[f"targets.{n}.messages"] = 'Each message needs a "role" and a "content".'
            continue
        model = str(raw.get("model") or (version.model if version else "")).strip()
        provider = str(raw.get("provider") or "").strip().lower()
        if not provider and model:
            from proxy.internal import guess_provider

            provider = guess_provider(model)
        parameters = raw.get("parameters") or {}
        if not model:
            errors[f"targets.{n}.model"] = "Name a model (the prompt version has none)."
        elif not provider or (provider not in PROVIDER_NAMES and not provider.replace("-", "").isalnum()):
            errors[f"targets.{n}.provider"] = (
                "Name a provider: " + ", ".join(sorted(PROVIDER_NAMES)) + ", or a custom one."
            )
        elif not isinstance(parameters, dict):
            errors[f"targets.{n}.parameters"] = "Parameters are a JSON object."
        else:
            if version is not None:
                parameters = {**version.parameters, **parameters}
            label = str(raw.get("label") or "").strip()
            if not label:
                label = (f"{version.prompt.ref}@{version.number} · " if version else "") + f"{provider}/{model}"
            cleaned.append(
                EvalTarget(
                    position=n,
                    label=label[:200],
                    prompt_version=version,
                    messages=messages,
                    provider=provider,
                    model=model,
                    parameters=parameters,
                )
            )
    if errors:
        raise ValidationError(errors)
    return cleaned


@transaction.atomic
def run_create(
    *,
    actor: Actor,
    org: Organization,
    dataset_version: DatasetVersion,
    targets: list,
    evaluators: list,
    name: str = "",
    concurrency: int | None = None,
    queue: bool = True,
) -> EvalRun:
    """Validate, store and queue a run (queued once the transaction commits; `queue=False` leaves it for the
    caller to hand to `tasks.queue_run`, or for the stall check)."""
    if dataset_version.dataset.org_id != org.pk:
        raise ValidationError({"dataset_version": "That dataset version belongs to another organization."})
    if not dataset_version.item_count:
        raise ValidationError({"dataset_version": "That dataset version has no items."})
    try:
        evaluator_registry.build_all(evaluators)
    except evaluator_registry.ConfigError as exc:
        raise ValidationError({f"evaluators.{k}": v for k, v in exc.errors.items()}) from None
    cleaned = _clean_targets(org, targets)
    limit = settings.INGATE_EVAL_MAX_CONCURRENCY
    concurrency = concurrency or min(4, limit)
    if not 1 <= concurrency <= limit:
        raise ValidationError({"concurrency": f"Between 1 and {limit}."})
    run = EvalRun(
        org=org,
        name=name[:200],
        dataset_version=dataset_version,
        evaluators=evaluators,
        concurrency=concurrency,
        total=dataset_version.item_count * len(cleaned),
        created_by=_user(actor),
        created_by_name=str(actor.principal)[:200],
    )
    run.save()
    for target in cleaned:
        target.run = run
    EvalTarget.objects.bulk_create(cleaned)
    audit_record(
        actor=actor,
        action="eval_run_create",
        obj=run,
        changes={"dataset_version": dataset_version.pk, "targets": len(cleaned), "items": dataset_version.item_count},
    )
    if queue:
        transaction.on_commit(lambda: queue_run(run.pk))
    return run


@transaction.atomic
def run_cancel(*, actor: Actor, run: EvalRun) -> EvalRun:
    """Queued runs stop at once; running ones stop taking items and finish as cancelled with what is done."""
    run = EvalRun.objects.select_for_update().get(pk=run.pk)
    if run.status == RunStatus.QUEUED:
        run.status, run.finished_at = RunStatus.CANCELLED, timezone.now()
    elif run.status == RunStatus.RUNNING:
        run.status = RunStatus.CANCELLING
    else:
        return run
    run.save(update_fields=["status", "finished_at"])
    audit_record(actor=actor, action="eval_run_cancel", obj=run)
    return run
