"""Writes to an org's observability settings and price overrides, scores on records, and replays of dead
records, each with its audit entry."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from tenancy.audit import Actor, audit_record
from tenancy.models import Organization
from tenancy.services import audited_create, audited_delete, audited_update

from .models import DeadRecord, ObservabilitySettings, PriceOverride, RequestRecord, SavedView, Score, ScoreSource


@transaction.atomic
def observability_settings_set(*, actor: Actor, org: Organization, **fields) -> ObservabilitySettings:
    """Create or change an org's settings (body mode, body size cap, retention days)."""
    current = ObservabilitySettings.objects.select_for_update().filter(org=org).first()
    if current is None:
        return audited_create(actor=actor, obj=ObservabilitySettings(org=org, **fields))
    return audited_update(actor=actor, obj=current, fields=fields)


@transaction.atomic
def price_override_create(*, actor: Actor, org: Organization, model: str, **prices) -> PriceOverride:
    return audited_create(actor=actor, obj=PriceOverride(org=org, model=model, **prices))


@transaction.atomic
def price_override_update(*, actor: Actor, override: PriceOverride, **fields) -> PriceOverride:
    return audited_update(actor=actor, obj=override, fields=fields)


@transaction.atomic
def price_override_delete(*, actor: Actor, override: PriceOverride) -> None:
    audited_delete(actor=actor, obj=override)


@transaction.atomic
def score_create(
    *, actor: Actor, record: RequestRecord, name: str, value: float | None = None, label: str = "", comment: str = ""
) -> Score:
    """A score on a record the caller may score (callers find it through `selectors.scorable_record`): a number
    or a label, never both (a ValidationError on `value` otherwise). From a key it counts as the application's, from a user as a person's."""
    if (value is None) == (not label.strip()):
        raise ValidationError({"value": "Give a numeric value or a label, not both."})
    score = Score(
        org_id=record.org_id,
        record=record,
        name=name.strip(),
        value=value,
        label=label.strip(),
        comment=comment,
        source=ScoreSource.API if actor.key is not None else ScoreSource.PERSON,
        author=actor.user if actor.user is not None and actor.user.pk else None,
        key=actor.key,
        author_name=str(actor.principal)[:200],
    )
    score.full_clean(exclude=["record"])
    score.save()  # not audited: a score is data about a record, like the record itself, and names its author
    return score


def dead_record_replay(*, actor: Actor, dead: DeadRecord) -> bool:
    """Try a dead record again (sanitised and priced by today's code): stored, it leaves the dead letters and
    True comes back; still failing, its attempts and error are updated and False comes back."""
    from .pipeline import store_records
    from .rows import OrgPolicies, unslim

    with transaction.atomic():
        audit_record(actor=actor, action="replay", obj=dead)  # an org deleted since reads as none
        try:
            record = unslim(dead.payload.encode("utf-8", "surrogatepass"))
        except Exception as exc:  # noqa: BLE001  (a payload that is not a record stays dead, with the reason)
            DeadRecord.objects.filter(pk=dead.pk).update(attempts=dead.attempts + 1, error=f"replay: {exc}"[:2000])
            return False
        store_records([record], OrgPolicies())
        if DeadRecord.objects.filter(pk=dead.pk, attempts__gt=dead.attempts).exists():
            return False  # it failed again: store_records counted the attempt and kept the new error
        DeadRecord.objects.filter(pk=dead.pk).delete()
    return True


def saved_view_save(*, user, org: Organization, name: str, query: str) -> SavedView:
    """Save the logs view `query` under `name` for `user` in `org`; a view of the same name is replaced. A person's
    own bookmark: no audit entry, as a browser bookmark would have none."""
    view, _ = SavedView.objects.update_or_create(user=user, org=org, name=name.strip(), defaults={"query": query})
    return view


def saved_view_delete(*, user, view_id: int) -> bool:
    """Delete one of `user`'s saved views; False when it is not theirs (or gone)."""
    deleted, _ = SavedView.objects.filter(user=user, pk=view_id).delete()
    return bool(deleted)
