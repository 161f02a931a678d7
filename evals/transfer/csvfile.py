"""CSV, a header row then one item per row: import that reports every bad row (files written with ";" or tabs,
as European Excel does, are read too), and streaming export with a var:<name> column per variable."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from .items import (
    COMPACT,
    DatasetImportError,
    ItemData,
    as_item,
    bad_utf8,
    clean_item,
    count_row,
    kind_of,
    without_bom,
)


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
            rows = count_row(rows, line, errors)
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
    "input": "input",
    "messages": "messages",
    "variables": "variables",
    "expected": "expected",
    "expected_output": "expected",
    "tags": "tags",
    "metadata": "metadata",
    "key": "key",
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
    for (kind, name), cell in zip(columns, cells, strict=False):
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
            raise ValueError(f"variables must be an object of name: value, not {kind_of(given)}")
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
        return 'a quoted cell is never closed (a stray " ?)'
    if "expected after" in message:
        return 'a closing quote must be followed by the delimiter or the line end (write "" for a quote in a cell)'
    if "field larger than field limit" in message:
        return f"a cell is longer than {csv.field_size_limit():,} characters; use JSONL for items this large"
    return f"not valid CSV ({message})"


def _decode(data: bytes) -> str:
    """The whole file as text, or a DatasetImportError naming every line that is not UTF-8."""
    data = without_bom(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    errors = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append((number, bad_utf8(exc)))
    raise DatasetImportError(errors)


def to_csv(items: Iterable[ItemData | dict]) -> Iterator[bytes]:
    """A header row, then one row per item, yielded as it is written. The var:<name> columns are the union of
    all items' variables, so the items are gathered first. Reads back equal with parse_csv when variables are
    non-empty strings (others are written as JSON text; an empty cell reads back as absent)."""
    gathered = [as_item(item) for item in items]
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
        messages = "" if text is not None or item.messages is None else json.dumps(item.messages, **COMPACT)
        metadata = json.dumps(item.metadata, **COMPACT) if item.metadata else ""
        writer.writerow(
            [item.key, text or "", messages, *variables, item.expected or "", ",".join(item.tags), metadata]
        )
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
    return value if isinstance(value, str) else json.dumps(value, **COMPACT)
