"""Eval dataset items in and out: JSONL and CSV import that reports every bad line at once, and streaming export.

Choices a user can see: unknown top-level fields of an item go into its metadata rather than failing the import
(other tools' exports carry ids, sources and scores worth keeping); a non-string `expected` is kept as the JSON
text of the value (42 -> "42", true -> "true", {"a": 1} -> '{"a":1}'); null and "" mean absent; CSV files
written with ";" or tabs (European Excel) are read too. Pure Python: no models here, the caller stores the items.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_ITEMS = 50_000
ROLES = ("system", "user", "assistant", "tool")

_BOM = b"\xef\xbb\xbf"
_SHOWN_ERRORS = 5
_FIELDS = {"input", "messages", "variables", "expected", "expected_output", "metadata", "tags", "key"}
# Postgres cannot store NUL in text or jsonb, and unpaired surrogates cannot be written as UTF-8.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_COMPACT = {"ensure_ascii": False, "separators": (",", ":")}


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
        raise ValueError(f"an item must be a JSON object, not {_kind(raw)}")
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
            raise ValueError(f"input must be a string, a list of messages or an object of variables, not {_kind(value)}")
    if "messages" in given:
        if messages is not None:
            raise ValueError("give input or messages, not both")
        messages = _messages(given["messages"], "messages")
    if "variables" in given:
        if variables is not None:
            raise ValueError("give input or variables, not both")
        if not isinstance(given["variables"], dict):
            raise ValueError(f"variables must be an object of name: value, not {_kind(given['variables'])}")
        variables = dict(given["variables"])
    if not messages and not variables:
        raise ValueError("an item needs `input`, `messages` or `variables`")

    if "expected" in given and "expected_output" in given:
        raise ValueError("give expected or expected_output, not both")
    expected = _expected(given.get("expected", given.get("expected_output")))

    metadata = given.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be an object, not {_kind(metadata)}")
    extra = {name: value for name, value in raw.items() if name not in _FIELDS}
    if clash := sorted(extra.keys() & metadata.keys()):
        raise ValueError(f"`{clash[0]}` is both a field and a metadata key; keep one")

    return ItemData(
        messages=messages, variables=variables or {}, expected=expected, metadata={**metadata, **extra},
        tags=_tags(given.get("tags", [])), key=_key(given.get("key", "")),
    )


def _messages(value: Any, name: str) -> list[dict]:
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of messages, not {_kind(value)}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    cleaned = []
    for n, message in enumerate(value):
        where = f"{name}[{n}]"
        if not isinstance(message, dict):
            raise ValueError(f"{where} must be an object with role and content, not {_kind(message)}")
        role = message.get("role")
        if "role" not in message:
            raise ValueError(f"{where}.role is missing")
        if not isinstance(role, str) or role not in ROLES:
            raise ValueError(f"{where}.role must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if isinstance(content, list):
            for p, part in enumerate(content):
                if not isinstance(part, dict):
                    raise ValueError(f"{where}.content[{p}] must be a content part object, not {_kind(part)}")
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
    return json.dumps(value, **_COMPACT)


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        parts = re.split("[,;]", value)
    elif isinstance(value, list):
        for n, tag in enumerate(value):
            if not isinstance(tag, str):
                raise ValueError(f"tags[{n}] must be a string, not {_kind(tag)}")
            if "," in tag or ";" in tag:  # they separate tags in CSV, so such a tag would not come back whole
                raise ValueError(f"tags[{n}] must not contain ',' or ';'")
        parts = value
    else:
        raise ValueError(f"tags must be a list of strings or a comma-separated string, not {_kind(value)}")
    return list(dict.fromkeys(tag.strip() for tag in parts if tag.strip()))


def _key(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"key must be a string, not {_kind(value)}")
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


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


# --- import -------------------------------------------------------------------------------------------


def read_upload(upload) -> list[ItemData]:
    """Items from an uploaded file (a Django UploadedFile), refusing files over INGATE_EVAL_MAX_IMPORT_BYTES
    before reading them into memory."""
    from django.conf import settings

    limit = settings.INGATE_EVAL_MAX_IMPORT_BYTES
    if upload.size > limit:
        raise DatasetImportError([(0, f"the file is {upload.size:,} bytes; imports take up to {limit:,} "
                                      "(INGATE_EVAL_MAX_IMPORT_BYTES): split it into several imports")])
    return parse(upload.read(), upload.name or "", upload.content_type or "")


def parse(data: bytes, filename: str = "", content_type: str = "") -> list[ItemData]:
    """Items from an uploaded file: JSONL or CSV by file extension, else by content type, else by content."""
    suffix = filename.rpartition(".")[2].lower() if "." in filename else ""
    if suffix in ("xlsx", "xls", "ods", "numbers"):
        raise DatasetImportError([(1, "spreadsheet files are not read; save it as CSV (UTF-8) or JSONL")])
    kind = _BY_SUFFIX.get(suffix) or _BY_TYPE.get(content_type.partition(";")[0].strip().lower())
    if kind is None:
        kind = "jsonl" if data.removeprefix(_BOM).lstrip()[:1] in (b"{", b"[") else "csv"
    return parse_jsonl(data) if kind == "jsonl" else parse_csv(data)


_BY_SUFFIX = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "csv": "csv"}
_BY_TYPE = {
    "application/jsonl": "jsonl", "application/jsonlines": "jsonl", "application/x-jsonlines": "jsonl",
    "application/ndjson": "jsonl", "application/x-ndjson": "jsonl", "application/json": "jsonl",
    "text/csv": "csv", "application/csv": "csv", "text/comma-separated-values": "csv",
    "application/vnd.ms-excel": "csv",  # what browsers on Windows send for a .csv when Excel is installed
}


def parse_jsonl(data: bytes) -> list[ItemData]:
    """One JSON object per line. Raises DatasetImportError listing every bad line."""
    data = _without_bom(data)
    if data.lstrip()[:1] == b"[" and _is_json_array(data):
        first = data[:len(data) - len(data.lstrip())].count(b"\n") + 1
        raise DatasetImportError([(first, "the file is one JSON array; write one JSON object per line (JSONL)")])
    items: list[ItemData] = []
    errors: list[tuple[int, str]] = []
    rows = 0
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        line, problem = None, ""
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = _bad_utf8(exc)
        if line is not None and not line.strip():
            continue
        rows += 1
        if rows > MAX_ITEMS:
            raise DatasetImportError(errors + [(number, _too_many())])
        if line is None:
            errors.append((number, problem))
            continue
        try:
            items.append(clean_item(json.loads(line)))
        except json.JSONDecodeError as exc:
            errors.append((number, f"not valid JSON ({exc.msg}: column {exc.colno})"))
        except RecursionError:
            errors.append((number, "not valid JSON (nested too deeply)"))
        except ValueError as exc:
            errors.append((number, str(exc)))
    if errors:
        raise DatasetImportError(errors)
    return items


def parse_csv(data: bytes) -> list[ItemData]:
    """A header row, then one item per row. Raises DatasetImportError listing every bad row by the line it
    starts on (a quoted cell may hold line breaks); the header is line 1."""
    text = _decode(data)
    if not text.strip():
        raise DatasetImportError([(1, "the file is empty; the first line must be a header row, e.g. input,expected")])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    columns: list[tuple[str, str]] | None = None
    items: list[ItemData] = []
    errors: list[tuple[int, str]] = []
    rows, start = 0, 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cells):  # blank lines, and the ",,," rows spreadsheets leave at the end
                continue
            if columns is None:
                columns, problems = _header(cells)
                if problems:
                    raise DatasetImportError([(line, problem) for problem in problems])
                continue
            rows += 1
            if rows > MAX_ITEMS:
                raise DatasetImportError(errors + [(line, _too_many())])
            if len(cells) != len(columns):
                errors.append((line, f"the row has {len(cells)} cells, the header has {len(columns)}"))
                continue
            try:
                items.append(clean_item(_row(columns, cells)))
            except ValueError as exc:
                errors.append((line, str(exc)))
    except csv.Error as exc:  # the reader cannot go on after this, so it is the last error
        errors.append((start, _csv_problem(exc)))
    if columns is None and not errors:
        errors.append((1, "the file has no header row"))
    if errors:
        raise DatasetImportError(errors)
    return items


_CSV_COLUMNS = {
    "input": "input", "messages": "messages", "variables": "variables", "expected": "expected",
    "expected_output": "expected", "tags": "tags", "metadata": "metadata", "key": "key",
}


def _header(cells: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Each column as (kind, name): a field of _CSV_COLUMNS, ("var", variable), ("extra", metadata key) or
    ("unnamed", column number)."""
    columns: list[tuple[str, str]] = []
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for n, cell in enumerate(cells, start=1):
        name = cell.strip()
        lower = name.lower()
        if lower in _CSV_COLUMNS:
            column = (_CSV_COLUMNS[lower], "")
        elif lower.startswith(("var:", "variables.")):
            column = ("var", name[4:].strip() if lower.startswith("var:") else name[10:].strip())
            if not column[1]:
                problems.append(f"column {n} ({name}) names no variable")
        elif name:
            column = ("extra", name)
        else:
            column = ("unnamed", str(n))
        if column in seen:
            problems.append(f"column {n} ({name}) repeats column {seen[column]}")
        seen.setdefault(column, n)
        columns.append(column)
    if not any(kind in ("input", "messages", "variables", "var") for kind, _ in columns):
        problems.append("the header needs an input, messages, variables or var:<name> column (is line 1 a header row?)")
    return columns, problems


def _row(columns: list[tuple[str, str]], cells: list[str]) -> dict:
    """A CSV row as the JSON object clean_item takes; empty cells are left out."""
    raw: dict[str, Any] = {}
    variables: dict[str, str] = {}
    for (kind, name), cell in zip(columns, cells):
        if cell == "":
            continue
        if kind == "var":
            variables[name] = cell
        elif kind == "unnamed":
            raise ValueError(f"column {name} has a value but no name in the header")
        elif kind == "extra":
            raw[name] = cell  # not a field name, so clean_item puts it in metadata
        elif kind in ("messages", "metadata", "variables"):
            try:
                raw[kind] = json.loads(cell)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{kind} is not valid JSON ({exc.msg}: column {exc.colno})") from None
            except RecursionError:
                raise ValueError(f"{kind} is not valid JSON (nested too deeply)") from None
        else:
            raw[kind] = cell
    if variables:
        given = raw.get("variables", {})
        if not isinstance(given, dict):
            raise ValueError(f"variables must be an object of name: value, not {_kind(given)}")
        if clash := sorted(variables.keys() & given.keys()):
            raise ValueError(f"variable {clash[0]} is in both the variables column and its own column; keep one")
        raw["variables"] = {**given, **variables}
    return raw


def _delimiter(text: str) -> str:
    header = text.lstrip("\r\n").split("\n", 1)[0]
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _csv_problem(exc: csv.Error) -> str:
    message = str(exc)
    if "unexpected end of data" in message:
        return "a quoted cell is never closed (a stray \" ?)"
    if "expected after" in message:
        return 'a closing quote must be followed by the delimiter or the line end (write "" for a quote in a cell)'
    if "field larger than field limit" in message:
        return f"a cell is longer than {csv.field_size_limit():,} characters; use JSONL for items this large"
    return f"not valid CSV ({message})"


def _decode(data: bytes) -> str:
    """The whole file as text, or a DatasetImportError naming every line that is not UTF-8."""
    data = _without_bom(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    errors = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append((number, _bad_utf8(exc)))
    raise DatasetImportError(errors)


def _without_bom(data: bytes) -> bytes:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetImportError([(1, "the file is UTF-16; save it as UTF-8")])
    return data.removeprefix(_BOM)


def _bad_utf8(exc: UnicodeDecodeError) -> str:
    byte = exc.object[exc.start]
    return f"not valid UTF-8 (byte 0x{byte:02x} at byte {exc.start + 1} of the line); save the file as UTF-8"


def _is_json_array(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), list)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return False


def _too_many() -> str:
    return f"more than {MAX_ITEMS:,} items; split the file"


# --- export -------------------------------------------------------------------------------------------


def to_jsonl(items: Iterable[ItemData | dict]) -> Iterator[bytes]:
    """One UTF-8 JSON line per item, in the shape parse_jsonl reads back to equal items."""
    for item in items:
        yield (json.dumps(_as_item(item).as_dict(), ensure_ascii=False) + "\n").encode("utf-8")


def to_csv(items: Iterable[ItemData | dict]) -> Iterator[bytes]:
    """A header row, then one row per item, yielded as it is written. The var:<name> columns are the union of
    all items' variables, so the items are gathered first. Reads back equal with parse_csv when variables are
    non-empty strings (others are written as JSON text; an empty cell reads back as absent)."""
    gathered = [_as_item(item) for item in items]
    names = sorted({name for item in gathered for name in item.variables})
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> bytes:
        out = buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        return out

    writer.writerow(["key", "input", "messages", *(f"var:{name}" for name in names), "expected", "tags", "metadata"])
    yield flush()
    for item in gathered:
        text = _input_text(item.messages)
        variables = [_cell(item.variables[name]) if name in item.variables else "" for name in names]
        messages = "" if text is not None or item.messages is None else json.dumps(item.messages, **_COMPACT)
        metadata = json.dumps(item.metadata, **_COMPACT) if item.metadata else ""
        writer.writerow([item.key, text or "", messages, *variables, item.expected or "", ",".join(item.tags), metadata])
        yield flush()


def _input_text(messages: list[dict] | None) -> str | None:
    """The text of a lone plain user message, which the CSV `input` column holds; None when it cannot."""
    if not messages or len(messages) != 1:
        return None
    message = messages[0]
    if message.keys() != {"role", "content"} or message["role"] != "user":
        return None
    content = message["content"]
    return content if isinstance(content, str) and content else None


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, **_COMPACT)


def _as_item(item: ItemData | dict) -> ItemData:
    """ItemData as is; a dict by ItemData's field names (other keys ignored), e.g. a stored row's values."""
    if isinstance(item, ItemData):
        return item
    key = item.get("key") or ""
    return ItemData(
        messages=item.get("messages"), variables=item.get("variables") or {}, expected=item.get("expected"),
        metadata=item.get("metadata") or {}, tags=item.get("tags") or [],
        key=key.hex if isinstance(key, uuid.UUID) else str(key),
    )
