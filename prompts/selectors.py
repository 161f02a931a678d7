"""Reads of the registry: what the proxy needs, as plain data, and prompt versions as people write them."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import QuerySet

from .models import Label, Prompt, PromptVersion


def resolve(org_id: int, namespace: str, name: str, selector: str) -> dict[str, Any] | None:
    """The version `selector` (a label, or a version number) of `namespace/name` in an org, or None."""
    if selector.isdigit():
        version = PromptVersion.objects.filter(
            prompt__org_id=org_id,
            prompt__namespace__path=namespace,
            prompt__name=name,
            number=int(selector),
            prompt__archived_at__isnull=True,
        ).first()
    else:
        label = (
            Label.objects.filter(
                prompt__org_id=org_id,
                prompt__namespace__path=namespace,
                prompt__name=name,
                name=selector,
                prompt__archived_at__isnull=True,
            )
            .select_related("version")
            .first()
        )
        version = label.version if label else None
    if version is None:
        return None
    return {
        "id": version.pk,
        "number": version.number,
        "messages": version.messages,
        "template": version.template,
        "variables": version.variables,
        "model": version.model,
        "parameters": version.parameters,
    }


# --- prompt versions as people write them -------------------------------------------------------------
#
# Pages show versions as `namespace/name@vN`, and ids (v1 of one prompt is id 4) mean nothing to a person, so
# every place that takes a version someone typed (the logs filter, the records API, eval-run targets, the
# prompt page's forms) reads it here. The grammar is the proxy's `X-Ingate-Prompt` one,
# `<namespace>/<name>@<version or label>`, with allowances for people:
# - `@v3` as well as `@3`, since that is how the pages write a version; case does not matter (paths, names
#   and labels are lower-case by their validators);
# - `name@3` without the namespace when only one prompt in scope has that name. There is no default
#   namespace: it is part of a prompt's identity, so two `greeter`s make the short form ambiguous, and the
#   error names them;
# - a bare number is the version's id where nothing names a prompt (kept so API clients, scripts and links
#   written before references keep working), and a version number where the context names the prompt (its
#   own page), where a bare label (`production`) works too;
# - a label (`@production`) resolves to the version it points at now: what an eval run of "production"
#   means, and on the logs filter "the requests of the version production points at".


class PromptRefError(ValueError):
    """A prompt version reference that is malformed, or names nothing the caller may see; says what to write."""


REF_HELP = "namespace/name@version (e.g. support/greeter@3, or @production for the version a label points at)"
_NUMBER = re.compile(r"^v?(\d+)$")
_SELECTOR = re.compile(r"^[a-z0-9_-]+$")
_PATH = re.compile(r"^[a-z0-9_-]+(/[a-z0-9_-]+)*$")
_MAX_NUMBER = 2**31 - 1  # PositiveIntegerField's range on every database
_MAX_ID = 2**63 - 1


def parse_version_ref(ref: str) -> tuple[str, str, str]:
    """(namespace, name, selector) of `[namespace/]name@version-or-label`; the namespace may be "" (see above)."""
    path, at, selector = ref.strip().lower().partition("@")
    path, selector = path.strip().strip("/"), selector.strip()
    if not at or not _PATH.match(path) or not _SELECTOR.match(selector):
        raise PromptRefError(f"{ref.strip()!r} is not a prompt version: write {REF_HELP}.")
    namespace, _, name = path.rpartition("/")
    return namespace, name, selector


def _named(prompts: QuerySet[Prompt], namespace: str, name: str) -> tuple[QuerySet[Prompt], str]:
    """The prompts `[namespace/]name` names in scope (the same ref in several orgs: one in each), and that ref."""
    if namespace:
        found = prompts.filter(namespace__path=namespace, name=name)
        if not found.exists():
            raise PromptRefError(f"No prompt {namespace}/{name} in your organizations.")
        return found, f"{namespace}/{name}"
    found = prompts.filter(name=name)
    refs = sorted({f"{path}/{name}" for path in found.values_list("namespace__path", flat=True)})
    if not refs:
        raise PromptRefError(f"No prompt named {name} in your organizations.")
    if len(refs) > 1:
        raise PromptRefError(f"Several prompts are named {name} ({', '.join(refs)}): write namespace/name@version.")
    return found, refs[0]


def _at(prompts: QuerySet[Prompt], selector: str, shown: str) -> QuerySet[PromptVersion]:
    """The versions `selector` (3, v3, or a label) picks in each of `prompts`."""
    number = _NUMBER.match(selector)
    if number:
        wanted = int(number.group(1))
        versions = PromptVersion.objects.filter(prompt__in=prompts, number=wanted if wanted <= _MAX_NUMBER else 0)
        if not versions.exists():
            top = (
                PromptVersion.objects.filter(prompt__in=prompts)
                .order_by("-number")
                .values_list("number", flat=True)
                .first()
            )
            latest = f"the latest is v{top}" if top else "it has no versions yet"
            raise PromptRefError(f"{shown} has no version {wanted} ({latest}).")
        return versions
    versions = PromptVersion.objects.filter(labels__prompt__in=prompts, labels__name=selector)
    if not versions.exists():
        raise PromptRefError(f"{shown} has no label {selector!r}.")
    return versions


def prompt_versions_by_ref(*, ref: str | int, orgs=None, prompt: Prompt | None = None) -> QuerySet[PromptVersion]:
    """The versions `ref` names among the prompts of `orgs`: Organizations or ids the caller scoped through
    tenancy.permissions (`orgs_where`, or an org it has checked). Archived prompts count: their versions keep
    their requests and runs. Several only when the same ref exists in several of the orgs. With `prompt`
    (already checked by the caller), the ref is read as that prompt's: a bare number is its version number.
    Raises PromptRefError."""
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise PromptRefError(f"Write a prompt version as text: {REF_HELP}.")
    text = str(ref).strip().lower()
    if prompt is not None:
        mine = Prompt.objects.filter(pk=prompt.pk)
        if not text:
            raise PromptRefError(f"Pick a version of {prompt.ref}.")
        if "@" not in text:
            return _at(mine, text, prompt.ref)
        namespace, name, selector = parse_version_ref(text)
        if (namespace or prompt.namespace.path, name) != (prompt.namespace.path, prompt.name):
            raise PromptRefError(f"{text} is not a version of {prompt.ref}.")
        return _at(mine, selector, prompt.ref)
    prompts = Prompt.objects.filter(org__in=orgs if orgs is not None else [])
    if text.isascii() and text.isdigit():
        wanted = int(text)
        found = PromptVersion.objects.filter(prompt__in=prompts, pk=wanted if wanted <= _MAX_ID else 0)
        if not found.exists():
            raise PromptRefError(f"No prompt version with id {text} in your organizations; or write {REF_HELP}.")
        return found
    namespace, name, selector = parse_version_ref(text)
    named, shown = _named(prompts, namespace, name)
    return _at(named, selector, shown)


def prompt_version_by_ref(*, ref: str | int, orgs=None, prompt: Prompt | None = None) -> PromptVersion:
    """The one version `ref` names (see `prompt_versions_by_ref`): for callers that act in one org, or on one
    prompt. Raises PromptRefError."""
    versions = list(prompt_versions_by_ref(ref=ref, orgs=orgs, prompt=prompt).select_related("prompt__namespace")[:2])
    if len(versions) > 1:
        raise PromptRefError(f"{str(ref).strip()} names a version in several of your organizations: pick one.")
    return versions[0]
