"""Dataset import and export: JSONL and CSV parsing, every bad line reported, and round trips."""

import json
import pickle
import uuid

import pytest

from evals import transfer
from evals.transfer import DatasetImportError, ItemData, clean_item, parse, parse_csv, parse_jsonl, to_csv, to_jsonl

KEY = uuid.UUID("6f1c2b9e-58a4-4c41-9d1e-0a6b3c2d1e0f").hex


def jsonl(*lines) -> bytes:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines).encode()


def errors_of(call, data) -> list[tuple[int, str]]:
    with pytest.raises(DatasetImportError) as caught:
        call(data)
    return caught.value.errors


# --- JSONL --------------------------------------------------------------------------------------------


def test_jsonl_string_input_becomes_one_user_message():
    [item] = parse_jsonl(jsonl({"input": "What is 2+2?", "expected": "4"}))
    assert item == ItemData(messages=[{"role": "user", "content": "What is 2+2?"}], expected="4")


def test_jsonl_reads_messages_variables_tags_metadata_and_key():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    [first, second] = parse_jsonl(
        jsonl(
            {"messages": messages, "expected_output": "Hello", "tags": ["smoke", "greeting"], "metadata": {"src": "a"}},
            {"variables": {"question": "refund?"}, "key": str(uuid.UUID(KEY))},
        )
    )
    assert first == ItemData(messages=messages, expected="Hello", tags=["smoke", "greeting"], metadata={"src": "a"})
    assert second == ItemData(variables={"question": "refund?"}, key=KEY)


def test_jsonl_input_object_becomes_variables_and_input_list_becomes_messages():
    [by_object, by_list] = parse_jsonl(jsonl({"input": {"name": "Ada"}}, {"input": [{"role": "user", "content": "x"}]}))
    assert by_object.variables == {"name": "Ada"} and by_object.messages is None
    assert by_list.messages == [{"role": "user", "content": "x"}] and by_list.variables == {}


def test_jsonl_reports_every_bad_line_with_its_number():
    data = jsonl(
        {"input": "fine"},
        '{"input": "a" "expected": "b"}',
        '["not", "an", "object"]',
        {"expected": "no input"},
        {"input": "x", "expected": "y", "metadata": "not an object"},
        {"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]},
        {"input": "x", "tags": [1]},
        {"input": 42},
    )
    assert errors_of(parse_jsonl, data) == [
        (2, "not valid JSON (Expecting ',' delimiter: column 15)"),
        (3, "an item must be a JSON object, not an array"),
        (4, "an item needs `input`, `messages` or `variables`"),
        (5, "metadata must be an object, not a string"),
        (6, "messages[1].role must be one of system, user, assistant, tool"),
        (7, "tags[0] must be a string, not a number"),
        (8, "input must be a string, a list of messages or an object of variables, not a number"),
    ]


def test_import_error_summary_names_the_first_lines_and_counts_the_rest():
    error = DatasetImportError([(9, "late"), (3, "expected is not a string")] + [(n, "bad") for n in range(10, 15)])
    assert str(error) == (
        "line 3: expected is not a string; line 9: late; line 10: bad; line 11: bad; line 12: bad; and 2 more"
    )
    assert pickle.loads(pickle.dumps(error)).errors == error.errors


def test_jsonl_skips_blank_lines_and_accepts_a_bom_keeping_physical_line_numbers():
    data = b"\xef\xbb\xbf" + b'{"input": "a"}\r\n\r\n   \n{"input": 1}\n\n'
    assert errors_of(parse_jsonl, data) == [
        (4, "input must be a string, a list of messages or an object of variables, not a number"),
    ]
    assert parse_jsonl(b'\xef\xbb\xbf\n{"input": "a"}\r\n\n') == [ItemData(messages=[{"role": "user", "content": "a"}])]


def test_jsonl_reports_invalid_utf8_on_its_line_with_the_other_errors():
    data = b'{"input": "ok"}\n{"input": "caf\xe9"}\n{"input": null}\n'
    assert errors_of(parse_jsonl, data) == [
        (2, "not valid UTF-8 (byte 0xe9 at byte 15 of the line); save the file as UTF-8"),
        (3, "an item needs `input`, `messages` or `variables`"),
    ]


def test_utf16_files_are_rejected_with_advice():
    assert errors_of(parse_jsonl, '{"input": "a"}'.encode("utf-16")) == [(1, "the file is UTF-16; save it as UTF-8")]


def test_a_file_holding_one_json_array_gets_a_hint_to_write_jsonl():
    data = b'\n[\n  {"input": "a"},\n  {"input": "b"}\n]\n'
    assert errors_of(parse_jsonl, data) == [(2, "the file is one JSON array; write one JSON object per line (JSONL)")]


def test_empty_jsonl_is_no_items():
    assert parse_jsonl(b"") == [] and parse_jsonl(b"\n \n") == []


# --- one item ------------------------------------------------------------------------------------------


def test_unknown_fields_go_into_metadata():
    item = clean_item({"input": "x", "id": 7, "source": "support", "metadata": {"split": "test"}})
    assert item.metadata == {"split": "test", "id": 7, "source": "support"}


def test_an_unknown_field_also_in_metadata_is_an_error():
    with pytest.raises(ValueError, match="`source` is both a field and a metadata key; keep one"):
        clean_item({"input": "x", "source": "a", "metadata": {"source": "b"}})


@pytest.mark.parametrize(
    "given, kept",
    [
        (42, "42"),
        (0.5, "0.5"),
        (True, "true"),
        ({"answer": "四", "n": 4}, '{"answer":"四","n":4}'),
        ([1, 2], "[1,2]"),
        ("", None),
        (None, None),
    ],
)
def test_non_string_expected_is_kept_as_json_text(given, kept):
    assert clean_item({"input": "x", "expected": given}).expected == kept


def test_tags_may_be_a_comma_separated_string_and_are_trimmed_and_deduplicated():
    assert clean_item({"input": "x", "tags": " a, b;;a ,c "}).tags == ["a", "b", "c"]
    with pytest.raises(ValueError, match="tags\\[1\\] must not contain ',' or ';'"):
        clean_item({"input": "x", "tags": ["a", "b,c"]})


def test_key_must_be_a_uuid_and_is_kept_as_hex():
    assert clean_item({"input": "x", "key": str(uuid.UUID(KEY)).upper()}).key == KEY
    with pytest.raises(ValueError, match="key must be a UUID"):
        clean_item({"input": "x", "key": "case-1"})
    with pytest.raises(ValueError, match="key must be a string, not a number"):
        clean_item({"input": "x", "key": 5})


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"messages": "hi"}, "messages must be a list of messages, not a string"),
        ({"messages": []}, "messages must not be empty"),
        ({"messages": ["hi"]}, "messages[0] must be an object with role and content, not a string"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role is missing"),
        ({"messages": [{"role": "user"}]}, "messages[0].content is missing"),
        (
            {"messages": [{"role": "user", "content": 3}]},
            "messages[0].content must be a string or a list of content parts",
        ),
        ({"messages": [{"role": "user", "content": ["x"]}]}, "messages[0].content[0] must be a content part object"),
        ({"input": [{"role": "root", "content": "x"}]}, "input[0].role must be one of system, user, assistant, tool"),
        ({"input": "x", "messages": [{"role": "user", "content": "y"}]}, "give input or messages, not both"),
        ({"input": {"a": 1}, "variables": {"b": 2}}, "give input or variables, not both"),
        ({"variables": ["a"]}, "variables must be an object of name: value, not an array"),
        ({"variables": {}}, "an item needs `input`, `messages` or `variables`"),
        ({"input": "x", "expected": "a", "expected_output": "b"}, "give expected or expected_output, not both"),
        ({"input": "x", "tags": 3}, "tags must be a list of strings or a comma-separated string, not a number"),
        ({"input": "a\x00b"}, "input must not contain NUL"),
        (
            {"input": "x", "metadata": {"notes": ["ok", "\ud800"]}},
            "metadata.notes[1] must not contain unpaired surrogates",
        ),
        ({"variables": {"score": float("nan")}}, "variables.score must be a finite number"),
        ({"input": "x", "metadata": {"a": {"b\x00": 1}}}, "a key in metadata.a must not contain NUL"),
    ],
)
def test_clean_item_names_the_field_at_fault(raw, message):
    with pytest.raises(ValueError) as caught:
        clean_item(raw)
    assert str(caught.value).startswith(message)


def test_content_parts_and_tool_calls_are_kept_as_given():
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:x"}},
            ],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert clean_item({"messages": messages}).messages == messages


# --- CSV ----------------------------------------------------------------------------------------------


def test_csv_reads_input_expected_tags_key_and_var_columns():
    data = f"key,input,var:name,variables.city,expected,tags\n{KEY},Hello,Ada,Paris,Hi Ada,a;b\n,,Bob,,,\n".encode()
    first, second = parse_csv(data)
    assert first == ItemData(
        messages=[{"role": "user", "content": "Hello"}],
        variables={"name": "Ada", "city": "Paris"},
        expected="Hi Ada",
        tags=["a", "b"],
        key=KEY,
    )
    assert second == ItemData(variables={"name": "Bob"})


def test_csv_tags_split_on_commas_and_semicolons():
    [item] = parse_csv(b'input,tags\nx,"red, green;blue"\n')
    assert item.tags == ["red", "green", "blue"]


def test_csv_quoted_multiline_cells_keep_error_line_numbers_right():
    data = (
        b"input,expected\r\n"
        b'"first line\r\nsecond line\r\nthird",ok\r\n'  # lines 2-4
        b"only one cell\r\n"  # line 5
        b'"multi\nline",too,many\n'  # lines 6-7
        b"\n"  # line 8
        b",orphan expected\n"  # line 9
    )
    assert errors_of(parse_csv, data) == [
        (5, "the row has 1 cells, the header has 2"),
        (6, "the row has 3 cells, the header has 2"),
        (9, "an item needs `input`, `messages` or `variables`"),
    ]
    [item] = parse_csv(data.split(b"only")[0])
    assert item.messages == [{"role": "user", "content": "first line\r\nsecond line\r\nthird"}]


def test_csv_metadata_must_be_a_json_object_and_other_columns_join_it():
    data = b'input,metadata,source\nx,"{""split"": ""dev""}",web\ny,not json,\nz,"[1]",\n'
    assert errors_of(parse_csv, data) == [
        (3, "metadata is not valid JSON (Expecting value: column 1)"),
        (4, "metadata must be an object, not an array"),
    ]
    [item] = parse_csv(data.split(b"y,")[0])
    assert item.metadata == {"split": "dev", "source": "web"}


def test_csv_messages_and_variables_columns_hold_json():
    data = b'messages,variables,var:b\n"[{""role"": ""system"", ""content"": ""s""}]","{""a"": 1}",2\n'
    [item] = parse_csv(data)
    assert item.messages == [{"role": "system", "content": "s"}] and item.variables == {"a": 1, "b": "2"}


def test_csv_needs_a_header_row_with_an_input_column():
    assert errors_of(parse_csv, b"") == [
        (1, "the file is empty; the first line must be a header row, e.g. input,expected")
    ]
    assert errors_of(parse_csv, b"What is 2+2?,4\n") == [
        (1, "the header needs an input, messages, variables or var:<name> column (is line 1 a header row?)"),
    ]
    assert errors_of(parse_csv, b"input,expected,Expected_Output\n") == [
        (1, "column 3 (Expected_Output) repeats column 2")
    ]


def test_csv_unclosed_quote_is_reported_where_its_row_starts():
    data = b'input,expected\nfine,1\n"never closed,2\nlost,3\n'
    assert errors_of(parse_csv, data) == [(3, 'a quoted cell is never closed (a stray " ?)')]


def test_csv_values_in_unnamed_columns_are_errors_but_empty_ones_are_ignored():
    assert parse_csv(b"input,expected,\nx,y,\n") == [
        ItemData(messages=[{"role": "user", "content": "x"}], expected="y")
    ]
    assert errors_of(parse_csv, b"input,\nx,y\n") == [(2, "column 2 has a value but no name in the header")]


def test_csv_skips_blank_lines_and_rows_of_empty_cells():
    items = parse_csv(b"\r\ninput,expected\n\n,\nx,y\n,\n")
    assert items == [ItemData(messages=[{"role": "user", "content": "x"}], expected="y")]


def test_csv_written_with_semicolons_or_tabs_is_read():
    expected = [ItemData(messages=[{"role": "user", "content": "a, b"}], expected="c")]
    assert parse_csv(b"input;expected\na, b;c\n") == expected
    assert parse_csv(b"input\texpected\na, b\tc\n") == expected


def test_csv_reports_every_line_that_is_not_utf8():
    data = b"\xef\xbb\xbfinput\ncaf\xe9\nok\nna\xefve\n"
    assert [line for line, _ in errors_of(parse_csv, data)] == [2, 4]


# --- export and round trips -------------------------------------------------------------------------------


ITEMS = [
    ItemData(messages=[{"role": "user", "content": "Hello 👋 世界"}], expected="こんにちは 🌏", tags=["i18n"], key=KEY),
    ItemData(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": 'line 1\nline 2, "quoted"'}],
        metadata={"split": "dev", "score": 0.5, "nested": {"ok": True}},
    ),
    ItemData(variables={"name": "Zoë", "city": "東京"}, expected="Hi, Zoë"),
    ItemData(messages=[{"role": "user", "content": "x"}], variables={"tone": "dry"}, tags=["a", "b"]),
    ItemData(messages=[{"role": "user", "content": [{"type": "text", "text": "part"}]}]),
    ItemData(messages=[{"role": "user", "content": ""}], expected="\r\n spaces kept \r"),
    ItemData(messages=[{"role": "user", "content": "named", "name": "ada"}]),
]


def test_jsonl_round_trip_keeps_items_equal():
    assert parse_jsonl(b"".join(to_jsonl(ITEMS))) == ITEMS


def test_csv_round_trip_keeps_items_equal():
    assert parse_csv(b"".join(to_csv(ITEMS))) == ITEMS


def test_jsonl_export_writes_unicode_unescaped_one_line_per_item():
    lines = list(to_jsonl(ITEMS[:1]))
    assert len(lines) == 1 and lines[0].endswith(b"\n") and lines[0].count(b"\n") == 1
    assert "👋 世界".encode() in lines[0] and b"\\u" not in lines[0]
    assert json.loads(lines[0]) == {
        "key": KEY,
        "messages": ITEMS[0].messages,
        "expected": "こんにちは 🌏",
        "tags": ["i18n"],
    }


def test_csv_export_streams_a_header_then_one_chunk_per_row():
    chunks = list(to_csv(ITEMS[:4]))
    assert len(chunks) == 5
    assert chunks[0] == b"key,input,messages,var:city,var:name,var:tone,expected,tags,metadata\r\n"
    assert chunks[1].decode() == f"{KEY},Hello 👋 世界,,,,,こんにちは 🌏,i18n,\r\n"
    assert chunks[4].decode() == ',x,,,,dry,,"a,b",\r\n'


def test_csv_export_uses_the_messages_column_unless_it_is_one_plain_user_message():
    [_, row] = b"".join(to_csv(ITEMS[1:2])).decode().splitlines()[:2]
    assert row.startswith(',,"[{""role"":""system""')


def test_exports_accept_dicts_such_as_stored_rows():
    row = {
        "id": 3,
        "key": uuid.UUID(KEY),
        "messages": None,
        "variables": {"q": "a"},
        "expected": None,
        "metadata": {},
        "tags": [],
    }
    assert parse_jsonl(b"".join(to_jsonl([row]))) == [ItemData(variables={"q": "a"}, key=KEY)]
    assert parse_csv(b"".join(to_csv([row]))) == [ItemData(variables={"q": "a"}, key=KEY)]


def test_empty_exports_read_back_as_no_items():
    assert parse_jsonl(b"".join(to_jsonl([]))) == [] and parse_csv(b"".join(to_csv([]))) == []


# --- format detection and limits ----------------------------------------------------------------------


JSONL_BODY = b'{"input": "a"}\n'
CSV_BODY = b"input\na\n"


@pytest.mark.parametrize(
    "data, filename, content_type",
    [
        (JSONL_BODY, "cases.jsonl", ""),
        (JSONL_BODY, "cases.NDJSON", "text/csv"),  # the extension wins over what the browser claims
        (JSONL_BODY, "cases.json", ""),
        (JSONL_BODY, "", "application/x-ndjson; charset=utf-8"),
        (JSONL_BODY, "upload", ""),
        (b"\xef\xbb\xbf\n  " + JSONL_BODY, "", "text/plain"),
        (CSV_BODY, "cases.csv", "application/json"),
        (CSV_BODY, "", "text/csv"),
        (CSV_BODY, "cases.txt", ""),
    ],
)
def test_parse_picks_the_format_by_extension_then_content_type_then_content(data, filename, content_type):
    assert parse(data, filename, content_type) == [ItemData(messages=[{"role": "user", "content": "a"}])]


def test_parse_rejects_spreadsheet_files_with_advice():
    assert errors_of(lambda data: parse(data, "cases.xlsx"), b"PK\x03\x04") == [
        (1, "spreadsheet files are not read; save it as CSV (UTF-8) or JSONL"),
    ]


def test_more_than_max_items_fails_at_the_first_line_past_the_limit(monkeypatch):
    monkeypatch.setattr(transfer.items, "MAX_ITEMS", 3)
    assert len(parse_jsonl(jsonl(*[{"input": "x"}] * 3))) == 3
    assert errors_of(parse_jsonl, jsonl({"input": 1}, "", *[{"input": "x"}] * 5)) == [
        (1, "input must be a string, a list of messages or an object of variables, not a number"),
        (5, "more than 3 items; split the file"),
    ]
    assert errors_of(parse_csv, b'input\na\n"b\nb"\n\nc\nd\ne\n') == [(7, "more than 3 items; split the file")]
