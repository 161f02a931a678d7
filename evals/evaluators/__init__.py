"""Evaluators: each one scores what a single eval item produced (a Case) and returns a Verdict a person can
read in a results table. A new evaluator is one subclass of Evaluator with a `kind`; it registers itself.

`base` holds the data, the base class, the registry and building; each other module holds one kind of
evaluator. Importing the package imports them all, so the registry is complete wherever it is used."""

# isort: off
# Registration follows import order, and the catalogue (the run form, the API, "Choose one of: …") lists kinds
# in registration order: keep these imports in the order a person should read the evaluators.
from .base import (
    EVALUATORS,
    Case,
    ConfigError,
    Context,
    Evaluator,
    JudgeReply,
    Param,
    Verdict,
    build,
    build_all,
    catalogue,
)
from .matching import Contains, ExactMatch, NotContains, Regex
from .structure import JsonSchema, ValidJson
from .closeness import Numeric, Similarity
from .judge import LlmJudge
from .operational import Cost, Latency

# isort: on

__all__ = [
    "EVALUATORS",
    "Case",
    "ConfigError",
    "Context",
    "Evaluator",
    "JudgeReply",
    "Param",
    "Verdict",
    "build",
    "build_all",
    "catalogue",
    "Contains",
    "ExactMatch",
    "NotContains",
    "Regex",
    "JsonSchema",
    "ValidJson",
    "Numeric",
    "Similarity",
    "LlmJudge",
    "Cost",
    "Latency",
]
