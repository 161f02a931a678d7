"""JSONL, one item per line: import that reports every bad line, and streaming export."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from .items import DatasetImportError, ItemData, as_item, bad_utf8, clean_item, count_row, without_bom


def parse_jsonl(data: bytes) -> list[ItemData]:
    """One JSON object per line. Raises DatasetImportError listing every bad line."""
    data = without_bom(data)
    if data.lstrip()[:1] == b"[" and _is_json_array(data):
        first = data[: len(data) - len(data.lstrip())].count(b"\n") + 1
        raise DatasetImportError([(first, "the file is one JSON array; write one JSON object per line (JSONL)")])
    items: list[ItemData] = []
    errors: list[tuple[int, str]] = []
    rows = 0
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        line, problem = None, ""
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = bad_utf8(exc)
        if line is not None and not line.strip():
            continue
        rows = count_row(rows, number, errors)
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


def _is_json_array(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), list)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return False


def to_jsonl(items: Iterable[ItemData | dict]) -> Iterator[bytes]:
    """One UTF-8 JSON line per item, in the shape parse_jsonl reads back to equal items."""
    for item in items:
        yield (json.dumps(as_item(item).as_dict(), ensure_ascii=False) + "\n").encode("utf-8")
