"""One dataset item: validating an item given as a JSON object (from any format) into ItemData, and what the
file formats share (the item limit, the error that lists every bad line, byte-level checks)."""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_ITEMS = 50_000
ROLES = ("system", "user", "assistant", "tool")

BOM = b"\xef\xbb\xbf"
_SHOWN_ERRORS = 5
_FIELDS = {"input", "messages", "variables", "expected", "expected_output", "metadata", "tags", "key"}
# Postgres cannot store NUL in text or jsonb, and unpaired surrogates cannot be written as UTF-8.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
COMPACT = {"ensure_ascii": False, "separators": (",", ":")}


class DatasetImportError(ValueError):
    """A file that cannot be imported. `errors` holds every problem as (line number, message)."""

    def __init__(self, errors: list[tuple[int, str]]):
        self.errors = sorted(errors, key=lambda error: error[0])
        shown = "; ".join(self.lines()[:_SHOWN_ERRORS])
        more = len(self.errors) - _SHOWN_ERRORS
        super().__init__(shown + (f"; and {more} more" if more > 0 else ""))

    def lines(self) -> list[str]:
        """Each problem as text: "line 3: …", or the bare message for the file as a whole (line 0)."""
        return [f"line {line}: {message}" if line else message for line, message in self.errors]

    def __reduce__(self):  # pickles (e.g. through Celery) with its errors, not with the summary string
        return type(self), (self.errors,)


@dataclass(slots=True)
class ItemData:
    """One dataset item as plain data. Valid items (those clean_item returns) have messages or variables."""

    messages: list[dict] | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    expected: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    key: str = ""

    def as_dict(self) -> dict:
        """The JSONL shape: empty fields left out, but always `messages` or `variables`."""
        out: dict[str, Any] = {}
        if self.key:
            out["key"] = self.key
        if self.messages is not None:
            out["messages"] = self.messages
        if self.variables or self.messages is None:
            out["variables"] = self.variables
        if self.expected is not None:
            out["expected"] = self.expected
        if self.tags:
            out["tags"] = self.tags
        if self.metadata:
            out["metadata"] = self.metadata
        return out


# --- one item -----------------------------------------------------------------------------------------


def clean_item(raw: Any) -> ItemData:
    """Validate one item given as a JSON object; raises ValueError naming the field at fault."""
    if not isinstance(raw, dict):
        raise ValueError(f"an item must be a JSON object, not {kind_of(raw)}")
    _check_values(raw)
    given = {name: value for name, value in raw.items() if value is not None and value != ""}

    messages: list[dict] | None = None
    variables: dict[str, Any] | None = None
    if "input" in given:
        value = given["input"]
        if isinstance(value, str):
            messages = [{"role": "user", "content": value}]
        elif isinstance(value, list):
            messages = _messages(value, "input")
        elif isinstance(value, dict):
            variables = dict(value)
        else:
            raise ValueError(
                f"input must be a string, a list of messages or an object of variables, not {kind_of(value)}"
            )
    if "messages" in given:
        if messages is not None:
            raise ValueError("give input or messages, not both")
        messages = _messages(given["messages"], "messages")
    if "variables" in given:
        if variables is not None:
            raise ValueError("give input or variables, not both")
        if not isinstance(given["variables"], dict):
            raise ValueError(f"variables must be an object of name: value, not {kind_of(given['variables'])}")
        variables = dict(given["variables"])
    if not messages and not variables:
        raise ValueError("an item needs `input`, `messages` or `variables`")

    if "expected" in given and "expected_output" in given:
        raise ValueError("give expected or expected_output, not both")
    expected = _expected(given.get("expected", given.get("expected_output")))

    metadata = given.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be an object, not {kind_of(metadata)}")
    extra = {name: value for name, value in raw.items() if name not in _FIELDS}
    if clash := sorted(extra.keys() & metadata.keys()):
        raise ValueError(f"`{clash[0]}` is both a field and a metadata key; keep one")

    return ItemData(
        messages=messages,
        variables=variables or {},
        expected=expected,
        metadata={**metadata, **extra},
        tags=_tags(given.get("tags", [])),
        key=_key(given.get("key", "")),
    )


def _messages(value: Any, name: str) -> list[dict]:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of messages, not {kind_of(value)}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    cleaned = []
    for n, message in enumerate(value):
        where = f"{name}[{n}]"
        if not isinstance(message, dict):
            raise ValueError(f"{where} must be an object with role and content, not {kind_of(message)}")
        role = message.get("role")
        if "role" not in message:
            raise ValueError(f"{where}.role is missing")
        if not isinstance(role, str) or role not in ROLES:
            raise ValueError(f"{where}.role must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if isinstance(content, list):
            for p, part in enumerate(content):
                if not isinstance(part, dict):
                    raise ValueError(f"{where}.content[{p}] must be a content part object, not {kind_of(part)}")
        elif not isinstance(content, str):
            if content is None and role == "assistant" and message.get("tool_calls"):
                pass  # an assistant turn that only calls tools has no content, as in the OpenAI API
            elif "content" not in message:
                raise ValueError(f"{where}.content is missing")
            else:
                raise ValueError(f"{where}.content must be a string or a list of content parts")
        cleaned.append(dict(message))
    return cleaned


def _expected(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    return json.dumps(value, **COMPACT)


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        parts = re.split("[,;]", value)
    elif isinstance(value, list):
        for n, tag in enumerate(value):
            if not isinstance(tag, str):
                raise ValueError(f"tags[{n}] must be a string, not {kind_of(tag)}")
            if "," in tag or ";" in tag:  # they separate tags in CSV, so such a tag would not come back whole
                raise ValueError(f"tags[{n}] must not contain ',' or ';'")
        parts = value
    else:
        raise ValueError(f"tags must be a list of strings or a comma-separated string, not {kind_of(value)}")
    return list(dict.fromkeys(tag.strip() for tag in parts if tag.strip()))


def _key(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"key must be a string, not {kind_of(value)}")
    if not value.strip():
        return ""
    try:
        return uuid.UUID(value.strip()).hex
    except ValueError:
        raise ValueError("key must be a UUID (as in an export); leave it out for a new item") from None


def _check_values(raw: dict) -> None:
    """Reject what JSON parsers let through but the database will not store, naming where it is."""
    stack: list[tuple[tuple, Any]] = [((name,), value) for name, value in raw.items()]
    while stack:
        path, value = stack.pop()
        if isinstance(path[-1], str) and (bad := _BAD_TEXT.search(path[-1])):
            raise ValueError(f"a key in {_path(path[:-1]) or 'the item'} must not contain {_unstorable(bad)}")
        if isinstance(value, str) and (bad := _BAD_TEXT.search(value)):
            raise ValueError(f"{_path(path)} must not contain {_unstorable(bad)}")
        if isinstance(value, dict):
            stack.extend((path + (name,), item) for name, item in value.items())
        elif isinstance(value, list):
            stack.extend((path + (n,), item) for n, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{_path(path)} must be a finite number (NaN and Infinity are not JSON)")


def _unstorable(found: re.Match) -> str:
    return "NUL (\\u0000) characters" if found.group() == "\x00" else "unpaired surrogates (\\ud800-\\udfff)"


def _path(path: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def kind_of(value: Any) -> str:
    """A JSON value's type as an error message names it: "a string", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


# --- shared by the file formats ------------------------------------------------------------------------


def count_row(rows: int, line: int, errors: list[tuple[int, str]]) -> int:
    """One more item row read; past MAX_ITEMS the import stops at this line, with the errors found so far."""
    rows += 1
    if rows > MAX_ITEMS:
        raise DatasetImportError(errors + [(line, f"more than {MAX_ITEMS:,} items; split the file")])
    return rows


def without_bom(data: bytes) -> bytes:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetImportError([(1, "the file is UTF-16; save it as UTF-8")])
    return data.removeprefix(BOM)


def bad_utf8(exc: UnicodeDecodeError) -> str:
    byte = exc.object[exc.start]
    return f"not valid UTF-8 (byte 0x{byte:02x} at byte {exc.start + 1} of the line); save the file as UTF-8"


def as_item(item: ItemData | dict) -> ItemData:
    """ItemData as is; a dict by ItemData's field names (other keys ignored), e.g. a stored row's values."""
    if isinstance(item, ItemData):
        return item
    key = item.get("key") or ""
    return ItemData(
        messages=item.get("messages"),
        variables=item.get("variables") or {},
        expected=item.get("expected"),
        metadata=item.get("metadata") or {},
        tags=item.get("tags") or [],
        key=key.hex if isinstance(key, uuid.UUID) else str(key),
    )
