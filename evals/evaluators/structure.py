"""Evaluators of the output's structure: valid JSON, and JSON that validates against a schema."""

from __future__ import annotations

import re
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .base import Case, Evaluator, Param, Verdict, model_failed

CODE_FENCE = re.compile(r"^```[\w+-]*[ \t]*\n(.*?)\n?```$", re.DOTALL)


def strip_fence(text: str) -> str:
    """The inside of a ```lang ... ``` block when it wraps the whole text."""
    text = text.strip()
    match = CODE_FENCE.match(text)
    return match.group(1).strip() if match else text


JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def parse_json(text: str) -> tuple[Any, str]:
    """(value, "") or (None, why it is not JSON, with the position)."""
    if not text.strip():
        return None, "the output is empty"
    try:
        return orjson.loads(text), ""
    except orjson.JSONDecodeError as exc:
        return None, str(exc)


class ValidJson(Evaluator):
    kind = "valid_json"
    label = "Valid JSON"
    description = "The output is valid JSON (RFC 8259: no NaN, no trailing commas)."
    params = {
        "strip_code_fences": Param("bool", True, "Accept JSON wrapped in a ```json ... ``` block."),
    }

    def parsed(self, case: Case) -> tuple[Any, Verdict | None]:
        """The output's JSON value, or the failing verdict when the call failed or the output is not JSON."""
        if failed := model_failed(case):
            return None, failed
        value, error = parse_json(strip_fence(case.output) if self.strip_code_fences else case.output)
        return value, Verdict(0.0, False, f"not valid JSON: {error}") if error else None

    def check(self, case: Case) -> Verdict:
        value, failed = self.parsed(case)
        return failed or Verdict(1.0, True, f"valid JSON ({JSON_KINDS[type(value)]})")


class JsonSchema(ValidJson):
    kind = "json_schema"
    label = "JSON Schema"
    description = "The output is JSON that validates against a JSON Schema (draft 2020-12, formats checked)."
    params = {
        "schema": Param("dict", None, "The JSON Schema.", required=True),
        **ValidJson.params,
    }
    shown_errors = 3

    def prepare(self) -> dict[str, str]:
        try:
            Draft202012Validator.check_schema(self.schema)
        except SchemaError as exc:
            return {"schema": f"Not a valid JSON Schema: {exc.message} (at {exc.json_path})."}
        self.validator = Draft202012Validator(self.schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        return {}

    def check(self, case: Case) -> Verdict:
        value, failed = self.parsed(case)
        if failed:
            return failed
        errors = sorted(self.validator.iter_errors(value), key=lambda e: e.json_path)
        if not errors:
            return Verdict(1.0, True, "matches the schema")
        listed = "; ".join(f"{e.json_path}: {e.message[:120]}" for e in errors[: self.shown_errors])
        more = f" (and {len(errors) - self.shown_errors} more)" if len(errors) > self.shown_errors else ""
        count = f"{len(errors)} schema violation{'s' if len(errors) > 1 else ''}"
        return Verdict(0.0, False, f"{count}: {listed}{more}")
