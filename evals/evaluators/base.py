"""The evaluators' common ground: what they read (Case) and return (Verdict), the base class whose subclasses
register themselves by `kind`, building evaluators from a run's settings, and helpers every kind uses."""

from __future__ import annotations

import copy
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

# --- data in and out ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Case:
    """What one eval item produced, plus what the item asked for."""

    output: str
    expected: str | None = None
    messages: list[dict] = field(default_factory=list)
    variables: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    latency_ms: float | None = None
    cost: float | None = None  # USD; None when the model is unpriced
    error: str = ""  # non-empty when the model call failed


@dataclass(slots=True)
class Verdict:
    score: float  # clamped to [0, 1] on creation
    passed: bool
    explanation: str
    cost: float | None = None  # the evaluator's own spend (LLM judge), USD
    request_id: str = ""  # the judge's gateway request id

    def __post_init__(self) -> None:
        score = float(self.score)
        self.score = 0.0 if math.isnan(score) else min(1.0, max(0.0, score))
        self.passed = bool(self.passed)

    def as_dict(self) -> dict:
        return {
            "score": self.score,
            "passed": self.passed,
            "explanation": self.explanation,
            "cost": self.cost,
            "request_id": self.request_id,
        }


@dataclass(slots=True)
class JudgeReply:
    text: str
    error: str = ""
    cost: float | None = None
    request_id: str = ""


@dataclass(slots=True)
class Context:
    """What the eval runner lends evaluators. `ask(provider, model, messages, params)` calls a model through
    the gateway and reports failures in JudgeReply.error rather than raising."""

    ask: Callable[[str, str, list[dict], dict], Awaitable[JudgeReply]] | None = None


class ConfigError(ValueError):
    """An evaluator configuration a user got wrong; `errors` maps each field to what to fix."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


# --- the base class and registry ---------------------------------------------------------------------------

PARAM_TYPES = ("bool", "str", "float", "int", "list", "dict", "choice")


@dataclass(frozen=True, slots=True)
class Param:
    type: str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    required: bool = False

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise TypeError(f"Param type must be one of {', '.join(PARAM_TYPES)}, not {self.type!r}")
        if (self.type == "choice") != bool(self.choices):
            raise TypeError("A choice Param needs choices, and only a choice Param has them")

    def clean(self, value: Any) -> Any:
        """The value in its proper type, or ValueError with a message for the user."""
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ValueError("Must be true or false.")
        elif self.type == "str":
            if not isinstance(value, str):
                raise ValueError("Must be text.")
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError("Must be a number.")
            value = float(value)
        elif self.type == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("Must be a whole number.")
        elif self.type == "list":
            if not isinstance(value, list):
                raise ValueError("Must be a list.")
        elif self.type == "dict":
            if not isinstance(value, dict):
                raise ValueError("Must be an object.")
        elif value not in (self.choices or ()):
            raise ValueError(f"Must be one of: {', '.join(self.choices or ())}.")
        return value


EVALUATORS: dict[str, type[Evaluator]] = {}


class Evaluator:
    """Base class. Subclasses declare `kind`, `label`, `description` and `params`, and implement check()
    (sync) or evaluate() (async). Config values become attributes of the same name and live in self.config."""

    kind: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Config values become attributes, so a param must not hide one the base class relies on.
        if clashes := [name for name in cls.params if hasattr(Evaluator, name) or name in ("name", "config")]:
            raise TypeError(f"{cls.__qualname__} has params named like Evaluator attributes: {clashes}")
        if "kind" in cls.__dict__:
            if cls.kind in EVALUATORS:
                raise TypeError(
                    f"Evaluator kind {cls.kind!r} is already registered by {EVALUATORS[cls.kind].__qualname__}"
                )
            EVALUATORS[cls.kind] = cls

    def __init__(self, **config: Any):
        errors: dict[str, str] = {}
        for key in config.keys() - self.params.keys():
            errors[key] = f"Unknown option for {self.kind}. Valid options: {', '.join(self.params) or 'none'}."
        cleaned: dict[str, Any] = {}
        for name, param in self.params.items():
            value = config.get(name)
            if value is None or (param.required and value == ""):
                if param.required:
                    errors[name] = "This field is required."
                cleaned[name] = copy.deepcopy(param.default)
                continue
            try:
                cleaned[name] = param.clean(value)
            except ValueError as exc:
                errors[name] = str(exc)
        if errors:
            raise ConfigError(dict(sorted(errors.items())))
        self.config = cleaned
        self.name = self.kind
        for name, value in cleaned.items():
            setattr(self, name, value)
        if errors := self.prepare():
            raise ConfigError(errors)

    def prepare(self) -> dict[str, str]:
        """Check rules the param types cannot express and precompute; return field -> message errors."""
        return {}

    def check(self, case: Case) -> Verdict:
        raise NotImplementedError(f"{type(self).__qualname__} must implement check() or evaluate()")

    async def evaluate(self, case: Case, ctx: Context | None = None) -> Verdict:
        return self.check(case)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.config}>"


def build(spec: dict) -> Evaluator:
    """An evaluator from {"kind": ..., "name": optional display name, **config}."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str) or not spec["kind"]:
        raise ConfigError({"kind": 'Each evaluator needs a "kind", e.g. {"kind": "exact_match"}.'})
    config = dict(spec)
    kind, name = config.pop("kind"), config.pop("name", None)
    if kind not in EVALUATORS:
        raise ConfigError({"kind": f"Unknown evaluator kind {kind!r}. Choose one of: {', '.join(EVALUATORS)}."})
    if name is not None and not isinstance(name, str):
        raise ConfigError({"name": "Must be text."})
    evaluator = EVALUATORS[kind](**config)
    evaluator.name = name or kind
    return evaluator


def build_all(specs: list) -> list[Evaluator]:
    """Every evaluator of a list, or one ConfigError with fields keyed by position ("0.kind", "2.pattern")."""
    if not isinstance(specs, list):
        raise ConfigError({"evaluators": "Must be a list of evaluators."})
    built, errors, seen = [], {}, set()
    for index, spec in enumerate(specs):
        try:
            evaluator = build(spec)
        except ConfigError as exc:
            errors.update({f"{index}.{key}": message for key, message in exc.errors.items()})
            continue
        if evaluator.name in seen:
            errors[f"{index}.name"] = (
                f"Another evaluator is already named {evaluator.name!r}; give each one a distinct name."
            )
        seen.add(evaluator.name)
        built.append(evaluator)
    if errors:
        raise ConfigError(errors)
    return built


def catalogue() -> list[dict]:
    """Every registered evaluator and its options, for the UI and the API docs."""
    return [
        {
            "kind": cls.kind,
            "label": cls.label,
            "description": cls.description,
            "params": {
                name: {
                    "type": p.type,
                    "default": p.default,
                    "help": p.help,
                    "choices": list(p.choices) if p.choices else None,
                    "required": p.required,
                }
                for name, p in cls.params.items()
            },
        }
        for cls in EVALUATORS.values()
    ]


# --- helpers shared by the evaluators ----------------------------------------------------------------------


def show(text: str, limit: int = 60) -> str:
    """Quote text for an explanation, cut to `limit` characters."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def num(value: float) -> str:
    return f"{value:,.6g}"


def model_failed(case: Case) -> Verdict | None:
    """The verdict for an item whose model call failed: there is no answer to judge."""
    if case.error:
        return Verdict(0.0, False, f"The model call failed: {case.error}")
    return None


def no_expected() -> Verdict:
    return Verdict(0.0, False, "The item has no expected output to compare with.")
