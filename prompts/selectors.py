"""Reads the proxy needs from the registry, as plain data."""

from __future__ import annotations

from typing import Any

from .models import Label, PromptVersion


def resolve(org_id: int, namespace: str, name: str, selector: str) -> dict[str, Any] | None:
    """The version `selector` (a label, or a version number) of `namespace/name` in an org, or None."""
    if selector.isdigit():
        version = PromptVersion.objects.filter(
            prompt__org_id=org_id, prompt__namespace__path=namespace, prompt__name=name, number=int(selector),
            prompt__archived_at__isnull=True,
        ).first()
    else:
        label = Label.objects.filter(
            prompt__org_id=org_id, prompt__namespace__path=namespace, prompt__name=name, name=selector,
            prompt__archived_at__isnull=True,
        ).select_related("version").first()
        version = label.version if label else None
    if version is None:
        return None
    return {
        "id": version.pk, "number": version.number, "messages": version.messages, "template": version.template,
        "variables": version.variables, "model": version.model, "parameters": version.parameters,
    }
