"""A guardrail policy's checks: what each kind takes (validated when a policy is saved, with the field named),
and the plain frozen objects they compile to once per policy, which the stage runs.

A check is JSON: {"name", "kind", "action": block|redact|flag, "direction": request|response|both, "message"?}
plus what its kind needs:
  regex       "pattern" (RE2 syntax: linear time, no catastrophic backtracking), "ignore_case"?
  keywords    "words": [...], whole words, any case
  pii         "entities": [...] (default: all but PERSON; see pii.ENTITIES), "min_score"? (0.4)
  models      "allow": [...] and/or "deny": [...], shell patterns (gpt-4o*); requests only
  max_size    "max_chars": the prompt's text at most this long; requests only
  json        "schema"? (JSON Schema); the answer must be JSON (and match it); responses only
  moderation  "model"? (omni-moderation-latest), "categories"? (any flagged one), "provider"? (openai)
  judge       "prompt": "<namespace>/<name>@<label>", "model", "provider"?, "fail_when"? (RE2, default
              ^\\W*(fail|unsafe|block)): a registry prompt rendered with {{input}} asks a model through the gateway
Only regex, keywords and pii can `redact`; the others block or flag."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson
import re2

from . import pii
from .text import spans

KINDS = ("regex", "keywords", "pii", "models", "max_size", "json", "moderation", "judge")
ACTIONS = ("block", "redact", "flag")
DIRECTIONS = ("request", "response", "both")
REDACTING = frozenset({"regex", "keywords", "pii"})
# moderation and judge wait for a model: they look at requests (an answer is checked as it passes, in step).
REQUEST_ONLY = frozenset({"models", "max_size", "moderation", "judge"})
RESPONSE_ONLY = frozenset({"json"})
CALLING = frozenset({"moderation", "judge"})  # checks that ask a model through the gateway
DEFAULT_FAIL_WHEN = r"(?i)^\W*(fail|unsafe|block)"
MAX_CHECKS = 50


class CheckError(ValueError):
    """A check that cannot be saved; `field` names where, as `checks[2].pattern`."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _re2(pattern: str, field: str, ignore_case: bool = False):
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.max_mem = 8 << 20  # bounded memory per pattern; matching is linear in the text whatever it says
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        why = exc.args[0] if exc.args else exc
        why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
        raise CheckError(field, f"not a valid regular expression (RE2 syntax): {why}.") from None


def _strings(value: Any, field: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CheckError(field, "give a list of non-empty strings.")
    if not value and not allow_empty:
        raise CheckError(field, "give at least one.")
    return tuple(v.strip() for v in value)


def clean_checks(value: Any) -> list[dict]:
    """The checks as stored (each validated and compiled once to be sure it runs). CheckError otherwise."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise CheckError("checks", "give a list of checks.")
    if len(value) > MAX_CHECKS:
        raise CheckError("checks", f"at most {MAX_CHECKS} checks in a policy.")
    names = set()
    cleaned = []
    for i, spec in enumerate(value):
        check = clean_check(spec, f"checks[{i}]")
        if check["name"] in names:
            raise CheckError(f"checks[{i}].name", f"another check is already named {check['name']!r}.")
        names.add(check["name"])
        compile_check(check, where=f"checks[{i}]")
        cleaned.append(check)
    return cleaned


def clean_check(spec: Any, where: str = "check") -> dict:
    if not isinstance(spec, dict):
        raise CheckError(where, "each check is an object with a name, a kind and an action.")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise CheckError(f"{where}.name", "give the check a name (1 to 100 characters).")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise CheckError(f"{where}.kind", f"choose one of {', '.join(KINDS)}.")
    action = spec.get("action", "block")
    if action not in ACTIONS:
        raise CheckError(f"{where}.action", f"choose one of {', '.join(ACTIONS)}.")
    if action == "redact" and kind not in REDACTING:
        raise CheckError(f"{where}.action", f"a {kind} check can block or flag, not redact.")
    default_direction = "response" if kind in RESPONSE_ONLY else "request"
    direction = spec.get("direction", default_direction)
    if direction not in DIRECTIONS:
        raise CheckError(f"{where}.direction", f"choose one of {', '.join(DIRECTIONS)}.")
    if kind in REQUEST_ONLY and direction != "request":
        raise CheckError(f"{where}.direction", f"a {kind} check looks at requests only.")
    if kind in RESPONSE_ONLY and direction != "response":
        raise CheckError(f"{where}.direction", f"a {kind} check looks at answers only.")
    message = spec.get("message", "")
    if not isinstance(message, str) or len(message) > 500:
        raise CheckError(f"{where}.message", "a message of at most 500 characters.")
    known = {"name", "kind", "action", "direction", "message", *_FIELDS[kind]}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise CheckError(
            f"{where}.{unknown[0]}", f"not a field of a {kind} check (it takes {', '.join(_FIELDS[kind])})."
        )
    out = {"name": name.strip(), "kind": kind, "action": action, "direction": direction}
    if message:
        out["message"] = message
    out.update({k: spec[k] for k in _FIELDS[kind] if k in spec})
    return out


_FIELDS: dict[str, tuple[str, ...]] = {
    "regex": ("pattern", "ignore_case"),
    "keywords": ("words",),
    "pii": ("entities", "min_score"),
    "models": ("allow", "deny"),
    "max_size": ("max_chars",),
    "json": ("schema",),
    "moderation": ("model", "provider", "categories"),
    "judge": ("prompt", "model", "provider", "fail_when"),
}


# --- compiled ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    kind: str
    action: str
    direction: str
    message: str

    @property
    def on_request(self) -> bool:
        return self.direction in ("request", "both")

    @property
    def on_response(self) -> bool:
        return self.direction in ("response", "both")

    @property
    def label(self) -> str:
        """The placeholder label of what this check redacts (regex and keywords: its name)."""
        return "".join(c if c.isalnum() else "_" for c in self.name.upper()).strip("_")[:32] or "REDACTED"


@dataclass(frozen=True, slots=True)
class TextCheck(Check):
    """regex, keywords, pii: finds spans of text."""

    pattern: Any = None  # re2 pattern (regex, keywords)
    entities: tuple[str, ...] = ()
    min_score: float = 0.4
    spacy_model: str = ""

    def scan(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, placeholder label) of every match, in order, not overlapping."""
        if self.kind == "pii":
            found = pii.find(pii.analyzer(self.spacy_model), text, self.entities, self.min_score)
            return [(f.start, f.end, pii.ENTITIES[f.entity]) for f in found]
        label = self.label
        return [(start, end, label) for start, end in spans(self.pattern, text) if end > start]


@dataclass(frozen=True, slots=True)
class ModelsCheck(Check):
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def refuses(self, model: str) -> bool:
        lowered = model.lower()
        if any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.deny):
            return True
        return bool(self.allow) and not any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.allow)


@dataclass(frozen=True, slots=True)
class SizeCheck(Check):
    max_chars: int = 0


@dataclass(frozen=True, slots=True)
class JsonCheck(Check):
    validator: Any = None  # jsonschema validator, or None: any JSON

    def problem(self, text: str) -> str:
        """Why the answer fails ("" when it passes)."""
        stripped = text.strip()
        if stripped.startswith("```"):  # a fenced block: what models wrap JSON in
            stripped = stripped.strip("`").removeprefix("json").strip()
        try:
            data = orjson.loads(stripped)
        except ValueError:
            return "the answer is not valid JSON"
        if self.validator is not None:
            error = jsonschema.exceptions.best_match(self.validator.iter_errors(data))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "the answer"
                return f"{where}: {error.message}"[:300]
        return ""


@dataclass(frozen=True, slots=True)
class CallCheck(Check):
    """moderation and judge: ask a model through the gateway (proxy.internal), recorded like any call."""

    provider: str = "openai"
    model: str = ""
    categories: tuple[str, ...] = ()
    prompt: str = ""
    fail_when: Any = None


def compile_check(spec: dict, *, where: str = "check", spacy_model: str = "") -> Check:
    """The runnable check for a cleaned spec. CheckError for what only compiling finds (a bad pattern or schema)."""
    kind = spec["kind"]
    base = {
        "name": spec["name"],
        "kind": kind,
        "action": spec["action"],
        "direction": spec["direction"],
        "message": spec.get("message", ""),
    }
    if kind == "regex":
        pattern = spec.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise CheckError(f"{where}.pattern", "give a regular expression.")
        return TextCheck(**base, pattern=_re2(pattern, f"{where}.pattern", bool(spec.get("ignore_case"))))
    if kind == "keywords":
        words = _strings(spec.get("words"), f"{where}.words")
        alternation = "|".join(re2.escape(w) for w in words)
        return TextCheck(**base, pattern=_re2(rf"\b(?:{alternation})\b", f"{where}.words", ignore_case=True))
    if kind == "pii":
        entities = _strings(spec.get("entities", list(pii.DEFAULT_ENTITIES)), f"{where}.entities")
        unknown = [e for e in entities if e not in pii.ENTITIES]
        if unknown:
            raise CheckError(f"{where}.entities", f"unknown entity {unknown[0]!r}; known: {', '.join(pii.ENTITIES)}.")
        score = spec.get("min_score", 0.4)
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            raise CheckError(f"{where}.min_score", "a number from 0 to 1.")
        return TextCheck(**base, entities=entities, min_score=float(score), spacy_model=spacy_model)
    if kind == "models":
        allow = _strings(spec.get("allow", []), f"{where}.allow", allow_empty=True)
        deny = _strings(spec.get("deny", []), f"{where}.deny", allow_empty=True)
        if not allow and not deny:
            raise CheckError(f"{where}.allow", "give models to allow or to deny.")
        return ModelsCheck(**base, allow=allow, deny=deny)
    if kind == "max_size":
        limit = spec.get("max_chars")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise CheckError(f"{where}.max_chars", "a whole number of characters, at least 1.")
        return SizeCheck(**base, max_chars=limit)
    if kind == "json":
        schema = spec.get("schema")
        validator = None
        if schema is not None:
            if not isinstance(schema, dict):
                raise CheckError(f"{where}.schema", "a JSON Schema is an object.")
            try:
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
                validator = cls(schema)
            except jsonschema.exceptions.SchemaError as exc:
                raise CheckError(f"{where}.schema", f"not a valid JSON Schema: {exc.message}.") from None
            except Exception as exc:  # noqa: BLE001  (an unhashable $schema, a broken $ref: refused, never a 500)
                raise CheckError(f"{where}.schema", f"not a usable JSON Schema ({type(exc).__name__}).") from None
        return JsonCheck(**base, validator=validator)
    provider = spec.get("provider", "openai")
    if not isinstance(provider, str) or not provider:
        raise CheckError(f"{where}.provider", "a provider name, such as openai.")
    if kind == "moderation":
        model = spec.get("model", "omni-moderation-latest")
        if not isinstance(model, str) or not model:
            raise CheckError(f"{where}.model", "a moderation model, such as omni-moderation-latest.")
        categories = _strings(spec.get("categories", []), f"{where}.categories", allow_empty=True)
        return CallCheck(**base, provider=provider, model=model, categories=categories)
    prompt = spec.get("prompt")
    path, _, selector = (prompt or "").partition("@")
    if not isinstance(prompt, str) or "/" not in path.strip("/") or not selector:
        raise CheckError(f"{where}.prompt", "a registry prompt as <namespace>/<name>@<label or version>.")
    model = spec.get("model")
    if not isinstance(model, str) or not model:
        raise CheckError(f"{where}.model", "the model that judges, such as gpt-4o-mini.")
    fail_when = spec.get("fail_when", DEFAULT_FAIL_WHEN)
    if not isinstance(fail_when, str):
        raise CheckError(f"{where}.fail_when", "a regular expression.")
    return CallCheck(
        **base, provider=provider, model=model, prompt=prompt, fail_when=_re2(fail_when, f"{where}.fail_when")
    )
