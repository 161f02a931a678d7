"""Makes a record row storable whatever a client or provider sent: no NUL or lone surrogate in any text, strings
within their column, counts and costs within their column's range. Each change is noted on the row's `flags`,
so a record is never silently different from what happened, and never poisons the batch it is written with."""

from __future__ import annotations

import math
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from django.db.backends.base.operations import BaseDatabaseOperations

from .models import RequestRecord

# The portable ranges (PostgreSQL's): SQLite would take 64-bit values that PostgreSQL then refuses, and a row
# must be storable the same way in both modes.
_RANGES = BaseDatabaseOperations.integer_field_ranges
_FIELDS = {f.attname: f for f in RequestRecord._meta.concrete_fields}
_TEXT = {name: f.max_length for name, f in _FIELDS.items() if f.get_internal_type() in ("CharField", "TextField")}
_INTEGERS = {name: _RANGES[f.get_internal_type()] for name, f in _FIELDS.items() if f.get_internal_type() in _RANGES}
_INTEGERS.pop("id", None)
_FLOATS = [name for name, f in _FIELDS.items() if f.get_internal_type() == "FloatField"]
_JSON = [name for name, f in _FIELDS.items() if f.get_internal_type() == "JSONField" and name != "flags"]
_COST = _FIELDS["cost_total"]
# The largest cost a record's decimal columns hold (numeric(18, 10): below 10^8 dollars).
COST_LIMIT = Decimal(10) ** (_COST.max_digits - _COST.decimal_places)
COUNT_MAX = _RANGES["PositiveIntegerField"][1]
_JSON_INT = (-(2**63), 2**63 - 1)
_ERROR_CHARS = 2000
_COSTS = ("cost_input", "cost_output", "cost_cache", "cost_tools", "cost_total")
# For the common case's check, in one pass: text columns with their limits, counts with their ranges.
_TEXT_NAMES = tuple(_TEXT)
_TEXT_LIMITS = tuple(sys.maxsize if limit is None else limit for limit in _TEXT.values())
_INTEGER_CHECKS = tuple((name, low, high) for name, (low, high) in _INTEGERS.items())


def clean_text(value: str) -> tuple[str, str]:
    """`value` without NULs and lone surrogates, and what was wrong with it ("" when nothing)."""
    problem = ""
    if "\x00" in value:
        value, problem = value.replace("\x00", ""), "NUL removed"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value, problem = value.encode("utf-8", "replace").decode("utf-8"), "invalid text replaced"
    return value, problem


def clean_json(value: Any) -> tuple[Any, bool]:
    """A JSON value PostgreSQL's jsonb accepts (no NUL, no lone surrogate, no integer beyond 64 bits, no NaN),
    and whether anything had to change."""
    if type(value) is dict or type(value) is list:
        if not value:
            return value, False
        # The common case, checked in C: orjson (strict) refuses lone surrogates, integers beyond 53 bits and keys
        # that are not text, and writes NUL as \u0000 and NaN or infinity as null; none of those, nothing to change.
        # (A tuple inside would also pass: it is stored as the same JSON array either way.)
        try:
            dumped = orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER)
        except TypeError:
            pass
        else:
            if b"\\u0000" not in dumped and b"null" not in dumped:
                return value, False
    if isinstance(value, str):
        cleaned, problem = clean_text(value)
        return cleaned, bool(problem)
    if isinstance(value, bool) or value is None:
        return value, False
    if isinstance(value, int):
        if _JSON_INT[0] <= value <= _JSON_INT[1]:
            return value, False
        return str(value), True
    if isinstance(value, float):
        return (value, False) if math.isfinite(value) else (None, True)
    if isinstance(value, dict):
        changed, out = False, {}
        for key, item in value.items():
            text, key_changed = clean_json(key if isinstance(key, str) else str(key))
            out[text], item_changed = clean_json(item)
            changed = changed or key_changed or item_changed or not isinstance(key, str)
        return out, changed
    if isinstance(value, (list, tuple)):
        items = [clean_json(item) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items) or isinstance(value, tuple)
    return str(value), True


def cost_fits(total: Decimal) -> bool:
    return total.is_finite() and 0 <= total < COST_LIMIT


def _clean_already(row: dict[str, Any]) -> bool:
    """Whether sanitise_row would change nothing: every text is text within its limit, ASCII and without NUL
    (checked on all of them joined, in C), counts are ints in range, times finite floats, JSON plain, no costs
    yet and no flags. Almost every record; any doubt goes the long way."""
    if row.get("flags") or any(name in row for name in _COSTS):
        return False
    texts = [row.get(name, "") for name in _TEXT_NAMES]
    try:
        joined = "".join(texts)
    except TypeError:  # None, or not text
        return False
    if not joined.isascii() or "\x00" in joined or not all(map(int.__le__, map(len, texts), _TEXT_LIMITS)):
        return False
    for name, low, high in _INTEGER_CHECKS:
        value = row.get(name)
        if value is not None and not (type(value) is int and low <= value <= high):
            return False
    for name in _FLOATS:
        value = row.get(name)
        if value is not None and not (type(value) is float and math.isfinite(value)):
            return False
    for name in _JSON:
        if name in row and clean_json(row[name])[1]:
            return False
    body = row.get("body")
    if body is not None:
        texts = (body.get("request", ""), body.get("response", ""))
        if type(texts[0]) is not str or type(texts[1]) is not str or "metadata" not in body:
            return False
        joined = texts[0] + texts[1]
        if not joined.isascii() or "\x00" in joined or clean_json(body.get("metadata", {}))[1]:
            return False
    return True


def sanitise_row(row: dict[str, Any]) -> dict[str, Any]:
    """Clean `row` (a build_row result, changed in place and returned), noting each change on row["flags"]."""
    if _clean_already(row):
        row["flags"] = []
        return row
    flags: list[str] = row.setdefault("flags", [])
    for name, limit in _TEXT.items():
        value = row.get(name)
        if value is None:
            continue
        if type(value) is str and (limit is None or len(value) <= limit) and value.isascii() and "\x00" not in value:
            continue  # the common case: nothing to clean
        if not isinstance(value, str):
            value = str(value)
            flags.append(f"{name}: not text, stored as text")
        value, problem = clean_text(value)
        if problem:
            flags.append(f"{name}: {problem}")
        if limit is not None and len(value) > limit:
            flags.append(f"{name}: cut to {limit} characters from {len(value)}")
            value = value[:limit]
        row[name] = value
    for name, (low, high) in _INTEGERS.items():
        value = row.get(name)
        if value is None or type(value) is int and low <= value <= high:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            flags.append(f"{name}: {str(value)[:40]!r} is not a count, stored as 0")
            row[name] = 0
        elif not low <= value <= high:
            row[name] = min(max(value, low), high)
            flags.append(f"{name}: {value} out of range, clamped to {row[name]}")
    for name in _FLOATS:
        value = row.get(name)
        if value is None or type(value) is float and math.isfinite(value):
            continue
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            flags.append(f"{name}: {str(value)[:40]!r} is not a number, stored as 0")
            row[name] = 0.0
    for name in _JSON:
        if name in row:
            row[name], changed = clean_json(row[name])
            if changed:
                flags.append(f"{name}: values cleaned (NUL, invalid text or out-of-range numbers)")
    _clean_costs(row, flags)
    if "body" in row:
        row["body"] = _clean_body(row["body"], flags)
    row["flags"] = [clean_text(flag)[0][:300] for flag in flags]
    return row


def _clean_costs(row: dict[str, Any], flags: list[str]) -> None:
    try:
        costs = [Decimal(row[name]) for name in _COSTS if row.get(name) is not None]
    except (InvalidOperation, TypeError, ValueError):
        costs = [Decimal("NaN")]
    if costs and not all(cost_fits(cost) for cost in costs):
        flags.append(f"unpriced: cost {row.get('cost_total')} is negative or beyond what a record holds")
        for name in _COSTS:
            row[name] = None
        row["price_source"] = ""


def _clean_body(body: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    changed = False
    for name in ("request", "response"):
        if isinstance(body.get(name), str):
            body[name], problem = clean_text(body[name])
            changed = changed or bool(problem)
    body["metadata"], metadata_changed = clean_json(body.get("metadata", {}))
    if changed or metadata_changed:
        flags.append("body: cleaned (NUL or invalid text)")
    return body


def clean_error(exc: BaseException) -> str:
    """An exception as text a text column takes."""
    return clean_text(f"{type(exc).__name__}: {exc}")[0][:_ERROR_CHARS]
