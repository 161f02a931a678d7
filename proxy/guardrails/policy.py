"""Guardrail policies as the proxy keeps them: compiled once when an org's config is loaded (on the database
threads, with its credentials; invalidated by kind "guardrails"), plain frozen data from then on."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import pii
from .checks import CALLING, Check, CheckError, JsonCheck, ModelsCheck, SizeCheck, TextCheck, compile_check

log = logging.getLogger(__name__)

HOLD, WATCH = "hold", "watch"
_WARM_UP = "a@b.io +1 415-555-0132 4111 1111 1111 1111 DE89370400440532013000 10.0.0.1 sk-proj-0123456789abcdefghij"


@dataclass(frozen=True, slots=True)
class Policy:
    id: int
    name: str
    message: str  # shown to a client whose request or answer is blocked (with the check's own, if any)
    stream_mode: str  # hold | watch
    restore: bool  # redacted values are put back in the answer
    redact_stored: bool  # bodies kept in full mode are redacted before they are written
    on_error: str  # block | allow: when a check cannot run
    request_checks: tuple[Check, ...]
    response_checks: tuple[Check, ...]
    stored_check: TextCheck | None  # what redacts stored bodies (the policy's pii checks, or every entity)

    @property
    def fails_closed(self) -> bool:
        return self.on_error == "block"

    def text_checks(self, checks: tuple[Check, ...]) -> list[TextCheck]:
        return [c for c in checks if isinstance(c, TextCheck)]

    def other_checks(self, checks: tuple[Check, ...]) -> list[Check]:
        return [c for c in checks if not isinstance(c, TextCheck)]


@dataclass(frozen=True, slots=True)
class GuardrailsConfig:
    """An org's policies: its default, and those of its apps and keys (the most specific wins)."""

    default: Policy | None
    apps: MappingProxyType
    keys: MappingProxyType

    def for_principal(self, principal: Any) -> Policy | None:
        key_id = getattr(principal, "id", None)
        if key_id is not None and key_id in self.keys:
            return self.keys[key_id]
        app_id = getattr(principal, "app_id", None)
        if app_id is not None and app_id in self.apps:
            return self.apps[app_id]
        return self.default


def compile_policy(row: dict, spacy_model: str = "") -> Policy:
    """A policy from its stored row (tenancy.selectors.guardrail_policies_of). CheckError for a check that no
    longer compiles (saved before a rule changed): the loader skips that policy and logs it."""
    checks: list[Check] = [
        compile_check(spec, where=f"checks[{i}]", spacy_model=spacy_model) for i, spec in enumerate(row["checks"])
    ]
    pii_checks = [c for c in checks if isinstance(c, TextCheck) and c.kind == "pii"]
    stored = None
    if row["redact_stored"]:
        entities = tuple(dict.fromkeys(e for c in pii_checks for e in c.entities)) or pii.DEFAULT_ENTITIES
        stored = TextCheck("stored bodies", "pii", "redact", "both", "", entities=entities, spacy_model=spacy_model)
    if pii_checks or stored is not None:
        # Build the analyzer and compile its recognizers' patterns here (a database thread), not on a request.
        pii.find(pii.analyzer(spacy_model), _WARM_UP, pii.DEFAULT_ENTITIES, 0.0)
    return Policy(
        id=row["id"],
        name=row["name"],
        message=row["message"],
        stream_mode=row["stream_mode"],
        restore=row["restore"],
        redact_stored=row["redact_stored"],
        on_error=row["on_error"],
        request_checks=tuple(_ordered(c for c in checks if c.on_request)),
        response_checks=tuple(_ordered(c for c in checks if c.on_response)),
        stored_check=stored,
    )


def _ordered(checks) -> list[Check]:
    # Cheap checks first: a request refused by its model never pays for a PII scan or a moderation call.
    rank = {ModelsCheck: 0, SizeCheck: 1, TextCheck: 2, JsonCheck: 3}
    return sorted(checks, key=lambda c: 4 + (c.kind == "judge") if c.kind in CALLING else rank.get(type(c), 3))


def config_of(rows: list[dict], spacy_model: str = "") -> GuardrailsConfig | None:
    """The org's compiled policies; None when it has none enabled (the stages then cost an attribute check)."""
    default = None
    apps: dict[int, Policy] = {}
    keys: dict[int, Policy] = {}
    for row in rows:
        try:
            policy = compile_policy(row, spacy_model)
        except CheckError as exc:
            log.error("Guardrail policy %s (%s) is skipped: %s", row["id"], row["name"], exc)
            continue
        if row["key_id"] is not None:
            keys[row["key_id"]] = policy
        elif row["app_id"] is not None:
            apps[row["app_id"]] = policy
        else:
            default = policy
    if default is None and not apps and not keys:
        return None
    return GuardrailsConfig(default, MappingProxyType(apps), MappingProxyType(keys))
