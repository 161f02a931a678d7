"""Every write to the prompt registry, each with its audit entry; label moves also keep their own history.
Callers check who may do what (prompts/permissions.py), as tenancy's views do."""

from __future__ import annotations

import difflib
import json

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from tenancy.audit import Actor, audit_record
from tenancy.models import Organization
from tenancy.services import audited_create, audited_update
from tenancy.webhooks import sources as webhook_sources

from .models import Label, LabelMove, Namespace, Prompt, PromptVersion
from .render import placeholders


@transaction.atomic
def namespace_get_or_create(*, actor: Actor, org: Organization, path: str) -> Namespace:
    path = path.strip("/")
    found = Namespace.objects.filter(org=org, path=path).first()
    return found or namespace_create(actor=actor, org=org, path=path)


@transaction.atomic
def namespace_create(*, actor: Actor, org: Organization, path: str, description: str = "") -> Namespace:
    return audited_create(actor=actor, obj=Namespace(org=org, path=path.strip("/"), description=description))


@transaction.atomic
def namespace_update(*, actor: Actor, namespace: Namespace, **fields) -> Namespace:
    return audited_update(actor=actor, obj=namespace, fields=fields)


@transaction.atomic
def prompt_create(
    *, actor: Actor, org: Organization, namespace: str, name: str, description: str = "", tags: list[str] | None = None
) -> Prompt:
    space = namespace_get_or_create(actor=actor, org=org, path=namespace)
    return audited_create(
        actor=actor, obj=Prompt(org=org, namespace=space, name=name, description=description, tags=tags or [])
    )


@transaction.atomic
def prompt_update(*, actor: Actor, prompt: Prompt, **fields) -> Prompt:
    return audited_update(actor=actor, obj=prompt, fields=fields)


@transaction.atomic
def prompt_archive(*, actor: Actor, prompt: Prompt) -> Prompt:
    if prompt.archived_at is None:
        prompt.archived_at = timezone.now()
        prompt.save(update_fields=["archived_at"])
        audit_record(actor=actor, action="archive", obj=prompt, changes={"archived_at": prompt.archived_at.isoformat()})
    return prompt


def _check_version(messages, template, variables) -> None:
    if not messages and not template:
        raise ValidationError({"messages": "Give chat messages, a text template, or both."})
    if not isinstance(messages, list) or any(
        not isinstance(m, dict) or "role" not in m or "content" not in m for m in messages
    ):
        raise ValidationError({"messages": 'Each message needs a "role" and a "content".'})
    unknown = set(variables) - set(placeholders(messages, template))
    if unknown:
        raise ValidationError({"variables": f"Typed variables not used in the prompt: {', '.join(sorted(unknown))}."})


@transaction.atomic
def version_create(
    *,
    actor: Actor,
    prompt: Prompt,
    messages: list | None = None,
    template: str = "",
    variables: dict | None = None,
    model: str = "",
    parameters: dict | None = None,
    commit_message: str = "",
) -> PromptVersion:
    """A new immutable version, numbered after the last (the prompt row is locked, so two at once get 1 and 2)."""
    messages, variables = messages or [], variables or {}
    _check_version(messages, template, variables)
    Prompt.objects.select_for_update().filter(pk=prompt.pk).first()
    number = (prompt.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    user = actor.user if actor.user is not None and actor.user.pk else None
    version = PromptVersion(
        prompt=prompt,
        number=number,
        messages=messages,
        template=template,
        variables=variables,
        model=model,
        parameters=parameters or {},
        commit_message=commit_message,
        author=user,
        author_name=str(actor.principal),
    )
    version.full_clean(exclude=["number"])
    version.save()
    audit_record(
        actor=actor, action="version_create", obj=version, changes={"number": number, "commit": commit_message}
    )
    return version


def _move(*, actor: Actor, prompt: Prompt, name: str, version: PromptVersion, action: str) -> Label:
    if version.prompt_id != prompt.pk:
        raise ValidationError({"version": "That version belongs to another prompt."})
    label = Label.objects.select_for_update().filter(prompt=prompt, name=name).first()
    before = label.version if label else None
    if label is None:
        label = Label(prompt=prompt, name=name, version=version)
        label.full_clean(exclude=["prompt", "version"])
    label.version, label.updated_at = version, timezone.now()
    label.save()
    LabelMove.objects.create(
        prompt=prompt,
        label=name,
        from_version=before,
        to_version=version,
        action=action,
        actor=str(actor.principal)[:200],
    )
    audit_record(
        actor=actor,
        action=f"label_{action}",
        obj=prompt,
        object_repr=f"{prompt.ref}@{name}",
        changes={"label": name, "from": before.number if before else None, "to": version.number},
    )
    if before != version:
        webhook_sources.label_moved(
            org_id=prompt.org_id,
            prompt=prompt,
            label=name,
            version=version,
            previous_version=before,
            actor=actor.principal,
        )
    return label


@transaction.atomic
def label_set(*, actor: Actor, prompt: Prompt, name: str, version: PromptVersion) -> Label:
    Prompt.objects.select_for_update().filter(pk=prompt.pk).first()  # moves of one prompt's labels go one at a time
    return _move(actor=actor, prompt=prompt, name=name, version=version, action="set")


@transaction.atomic
def label_promote(*, actor: Actor, prompt: Prompt, source: str, target: str) -> Label:
    """Point `target` (e.g. production) at the version `source` (e.g. staging) points at."""
    Prompt.objects.select_for_update().filter(pk=prompt.pk).first()
    found = Label.objects.filter(prompt=prompt, name=source).select_related("version").first()
    if found is None:
        raise ValidationError({"source": f"{prompt.ref} has no '{source}' label to promote from."})
    return _move(actor=actor, prompt=prompt, name=target, version=found.version, action="promote")


@transaction.atomic
def label_rollback(*, actor: Actor, prompt: Prompt, name: str) -> Label:
    """Point a label back at the version it pointed to before its last move."""
    Prompt.objects.select_for_update().filter(pk=prompt.pk).first()
    last = LabelMove.objects.filter(prompt=prompt, label=name).select_related("from_version").first()
    if last is None or last.from_version is None:
        raise ValidationError({"label": f"The '{name}' label of {prompt.ref} has no earlier version to roll back to."})
    return _move(actor=actor, prompt=prompt, name=name, version=last.from_version, action="rollback")


def version_lines(version: PromptVersion) -> list[str]:
    """A version as lines of text, for diffs (unified here, side by side on the prompt page)."""
    lines = [f"model: {version.model}", f"parameters: {json.dumps(version.parameters, sort_keys=True)}"]
    for message in version.messages:
        content = message["content"] if isinstance(message["content"], str) else json.dumps(message["content"])
        lines.append(f"[{message['role']}]")
        lines.extend(content.splitlines() or [""])
    if version.template:
        lines.append("[template]")
        lines.extend(version.template.splitlines())
    return lines


def version_diff(old: PromptVersion, new: PromptVersion) -> str:
    """A unified diff between two versions (messages, template, model and parameters)."""
    return "\n".join(
        difflib.unified_diff(version_lines(old), version_lines(new), f"v{old.number}", f"v{new.number}", lineterm="")
    )
