"""The evaluators one by one, their configuration errors, the registry, and how the LLM judge's replies are
read (the judge through a real fake provider is tested with the eval runner)."""

import asyncio

import orjson
import pytest

from evals.evaluators import (
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


def run(spec: dict, output: str, ctx: Context | None = None, **case_fields) -> Verdict:
    evaluator = build(spec)
    return asyncio.run(evaluator.evaluate(Case(output, **case_fields), ctx or Context()))


def config_errors(spec: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        build(spec)
    return caught.value.errors


# --- Verdict -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, kept", [(1.5, 1.0), (-0.2, 0.0), (float("nan"), 0.0), (0.25, 0.25)])
def test_verdict_clamps_its_score_into_zero_to_one(given, kept):
    assert Verdict(given, False, "").score == kept


def test_verdict_as_dict_is_json_ready():
    verdict = Verdict(0.5, True, "half", cost=0.0012, request_id="req_1")
    assert orjson.loads(orjson.dumps(verdict.as_dict())) == {
        "score": 0.5,
        "passed": True,
        "explanation": "half",
        "cost": 0.0012,
        "request_id": "req_1",
    }


# --- configuration -----------------------------------------------------------------------------------------


def test_it_names_each_unknown_option():
    errors = config_errors({"kind": "exact_match", "casesensitive": True, "trim": False})
    assert set(errors) == {"casesensitive", "trim"}
    assert "Unknown option for exact_match" in errors["trim"]
    assert "case_sensitive" in errors["trim"]  # lists the valid options


def test_it_names_each_option_of_the_wrong_type():
    errors = config_errors({"kind": "numeric", "tolerance": "0.1", "relative_tolerance": True, "value": [1]})
    assert errors == {
        "relative_tolerance": "Must be a number.",
        "tolerance": "Must be a number.",
        "value": "Must be a number.",
    }
    assert config_errors({"kind": "exact_match", "strip": "yes"}) == {"strip": "Must be true or false."}
    assert config_errors({"kind": "contains", "values": "Paris"}) == {"values": "Must be a list."}
    assert config_errors({"kind": "json_schema", "schema": "[]"}) == {"schema": "Must be an object."}
    assert config_errors({"kind": "regex", "pattern": 5}) == {"pattern": "Must be text."}


def test_a_choice_outside_the_list_names_the_choices():
    errors = config_errors({"kind": "similarity", "method": "levenshtein"})
    assert errors == {"method": "Must be one of: ratio, partial_ratio, token_sort_ratio, token_set_ratio."}


def test_it_names_each_missing_required_option():
    assert config_errors({"kind": "llm_judge", "rubric": ""}) == {
        "model": "This field is required.",
        "provider": "This field is required.",
        "rubric": "This field is required.",
    }
    assert config_errors({"kind": "latency"}) == {"max_ms": "This field is required."}
    assert config_errors({"kind": "cost", "max_usd": None}) == {"max_usd": "This field is required."}


def test_config_error_message_names_every_field():
    with pytest.raises(ConfigError) as caught:
        build({"kind": "regex", "pattern": "a", "ignore_case": "no", "colour": "red"})
    assert str(caught.value) == (
        "colour: Unknown option for regex. Valid options: pattern, ignore_case, "
        "multiline, dotall, full_match.; ignore_case: Must be true or false."
    )


def test_cleaned_values_become_attributes_and_config():
    evaluator = build({"kind": "latency", "max_ms": 1000})
    assert evaluator.max_ms == 1000.0 and isinstance(evaluator.max_ms, float)
    assert evaluator.config == {"max_ms": 1000.0}
    assert build({"kind": "exact_match"}).config["case_sensitive"] is False


def test_param_rejects_an_unknown_type_and_choices_without_a_choice_type():
    with pytest.raises(TypeError, match="Param type must be one of"):
        Param("number", 0)
    with pytest.raises(TypeError, match="choice Param"):
        Param("choice", "a")
    with pytest.raises(TypeError, match="choice Param"):
        Param("str", "a", choices=("a", "b"))


def test_a_param_cannot_shadow_an_evaluator_attribute():
    with pytest.raises(TypeError, match=r"params named like Evaluator attributes: \['check', 'name'\]"):

        class Clumsy(Evaluator):
            params = {"check": Param("bool", True), "name": Param("str", ""), "fine": Param("int", 1)}


# --- registry, build, build_all, catalogue -----------------------------------------------------------------


def test_every_built_in_evaluator_is_registered():
    assert set(EVALUATORS) == {
        "exact_match",
        "contains",
        "not_contains",
        "regex",
        "valid_json",
        "json_schema",
        "numeric",
        "similarity",
        "llm_judge",
        "latency",
        "cost",
    }


def test_a_new_subclass_registers_itself_and_build_finds_it():
    try:

        class WordCount(Evaluator):
            kind = "test_word_count"
            label = "Word count"
            description = "At most max_words words."
            params = {"max_words": Param("int", None, "The limit.", required=True)}

            def check(self, case: Case) -> Verdict:
                words = len(case.output.split())
                return Verdict(1.0 if words <= self.max_words else 0.0, words <= self.max_words, f"{words} words")

        evaluator = build({"kind": "test_word_count", "max_words": 3, "name": "short"})
        assert isinstance(evaluator, WordCount) and evaluator.name == "short"
        assert asyncio.run(evaluator.evaluate(Case("one two three four"), Context())).passed is False
        assert any(entry["kind"] == "test_word_count" for entry in catalogue())
    finally:
        EVALUATORS.pop("test_word_count", None)
    assert "test_word_count" not in EVALUATORS


def test_a_subclass_cannot_take_a_kind_already_registered():
    with pytest.raises(TypeError, match="already registered by ExactMatch"):

        class Impostor(Evaluator):
            kind = "exact_match"

    assert EVALUATORS["exact_match"].__name__ == "ExactMatch"


def test_build_rejects_an_unknown_kind_and_lists_the_known_ones():
    errors = config_errors({"kind": "bleu"})
    assert list(errors) == ["kind"]
    assert errors["kind"].startswith("Unknown evaluator kind 'bleu'. Choose one of: exact_match, contains")


@pytest.mark.parametrize("spec", [{}, {"kind": ""}, {"kind": 3}, "exact_match", None])
def test_build_needs_a_kind(spec):
    assert list(config_errors(spec)) == ["kind"]


def test_build_names_the_evaluator_after_the_spec_or_its_kind():
    assert build({"kind": "valid_json", "name": "is json"}).name == "is json"
    assert build({"kind": "valid_json"}).name == "valid_json"
    assert config_errors({"kind": "valid_json", "name": 7}) == {"name": "Must be text."}


def test_build_all_keys_errors_by_position_and_field():
    with pytest.raises(ConfigError) as caught:
        build_all(
            [
                {"kind": "valid_json"},
                {"kind": "nope"},
                {"kind": "regex", "pattern": "("},
                {"kind": "numeric", "tolerance": "x"},
            ]
        )
    errors = caught.value.errors
    assert set(errors) == {"1.kind", "2.pattern", "3.tolerance"}
    assert "missing ), unterminated subpattern" in errors["2.pattern"]


def test_build_all_rejects_duplicate_names():
    with pytest.raises(ConfigError) as caught:
        build_all([{"kind": "contains"}, {"kind": "contains", "values": ["x"]}])
    assert caught.value.errors == {
        "1.name": "Another evaluator is already named 'contains'; give each one a distinct name."
    }


def test_build_all_returns_the_evaluators_in_order():
    built = build_all(
        [
            {"kind": "contains"},
            {"kind": "contains", "name": "mentions x", "values": ["x"]},
            {"kind": "latency", "max_ms": 500},
        ]
    )
    assert [(e.kind, e.name) for e in built] == [
        ("contains", "contains"),
        ("contains", "mentions x"),
        ("latency", "latency"),
    ]
    with pytest.raises(ConfigError) as caught:
        build_all({"kind": "contains"})
    assert list(caught.value.errors) == ["evaluators"]


def test_catalogue_describes_every_evaluator_and_its_params():
    entries = {entry["kind"]: entry for entry in orjson.loads(orjson.dumps(catalogue()))}
    assert set(entries) == set(EVALUATORS)
    regex = entries["regex"]
    assert regex["label"] == "Regular expression" and regex["description"]
    assert regex["params"]["pattern"] == {
        "type": "str",
        "default": None,
        "help": "The regular expression.",
        "choices": None,
        "required": True,
    }
    assert entries["similarity"]["params"]["method"]["choices"] == [
        "ratio",
        "partial_ratio",
        "token_sort_ratio",
        "token_set_ratio",
    ]
    assert all(entry["params"] and all(p["help"] for p in entry["params"].values()) for entry in entries.values())


# --- a failed model call -----------------------------------------------------------------------------------

ANSWER_EVALUATORS = [
    {"kind": "exact_match"},
    {"kind": "contains"},
    {"kind": "not_contains", "values": ["x"]},
    {"kind": "regex", "pattern": ".*"},
    {"kind": "valid_json"},
    {"kind": "json_schema", "schema": {}},
    {"kind": "numeric", "value": 0},
    {"kind": "similarity"},
    {"kind": "llm_judge", "rubric": "r", "provider": "p", "model": "m"},
]


@pytest.mark.parametrize("spec", ANSWER_EVALUATORS, ids=lambda spec: spec["kind"])
def test_a_failed_model_call_scores_zero_whatever_the_evaluator(spec):
    asked = []

    async def ask(*args):
        asked.append(args)
        return JudgeReply('{"score": 1}')

    verdict = run(spec, "", Context(ask), expected="", error="upstream timed out")
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == "The model call failed: upstream timed out"
    assert asked == []


def test_latency_and_cost_still_apply_when_the_model_call_failed():
    assert run({"kind": "latency", "max_ms": 100}, "", error="boom", latency_ms=50).passed is True
    assert run({"kind": "cost", "max_usd": 0.01}, "", error="boom", cost=0.001).passed is True


# --- exact_match -------------------------------------------------------------------------------------------


def test_exact_match_passes_identical_text():
    verdict = run({"kind": "exact_match"}, "Paris", expected="Paris")
    assert (verdict.score, verdict.passed, verdict.explanation) == (1.0, True, "output equals 'Paris'")


def test_exact_match_ignores_case_and_whitespace_by_default():
    verdict = run({"kind": "exact_match"}, "  PARIS\n", expected="Paris")
    assert verdict.passed is True
    assert verdict.explanation == "output matches 'Paris' after normalising surrounding whitespace and case"


def test_exact_match_explains_what_still_differs():
    verdict = run({"kind": "exact_match"}, "paris.", expected="Paris")
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == "expected 'Paris', got 'paris.' (differs after normalising case)"


def test_exact_match_can_be_case_sensitive():
    verdict = run({"kind": "exact_match", "case_sensitive": True}, "paris", expected="Paris")
    assert verdict.passed is False
    assert verdict.explanation == "expected 'Paris', got 'paris'"


def test_exact_match_collapses_inner_whitespace_unless_told_not_to():
    assert run({"kind": "exact_match"}, "New \t York", expected="New York").passed is True
    assert run({"kind": "exact_match", "collapse_whitespace": False}, "New  York", expected="New York").passed is False


def test_exact_match_applies_nfkc_to_fullwidth_text():
    verdict = run({"kind": "exact_match"}, "ｆｕｌｌｗｉｄｔｈ", expected="fullwidth")
    assert verdict.passed is True and "Unicode" in verdict.explanation
    assert (
        run({"kind": "exact_match", "unicode_normalize": False}, "ｆｕｌｌｗｉｄｔｈ", expected="fullwidth").passed
        is False
    )


def test_exact_match_keeps_accents_but_unifies_their_encodings():
    assert run({"kind": "exact_match"}, "café", expected="cafe").passed is False
    assert run({"kind": "exact_match"}, "cafe\u0301", expected="caf\u00e9").passed is True
    assert run({"kind": "exact_match"}, "ÉCOLE", expected="école").passed is True


def test_exact_match_compares_emoji_exactly():
    assert run({"kind": "exact_match"}, "🎉 done", expected="🎉 Done").passed is True
    assert run({"kind": "exact_match"}, "🎊 done", expected="🎉 done").passed is False


def test_exact_match_can_ignore_punctuation():
    assert run({"kind": "exact_match", "ignore_punctuation": True}, "Paris!", expected="paris").passed is True
    assert run({"kind": "exact_match"}, "Paris!", expected="paris").passed is False


def test_exact_match_compares_with_its_own_value_over_the_expected_output():
    assert run({"kind": "exact_match", "value": "yes"}, "Yes", expected="no").passed is True


@pytest.mark.parametrize("expected", [None, ""])
def test_exact_match_without_an_expected_output_fails_and_says_why(expected):
    verdict = run({"kind": "exact_match"}, "Paris", expected=expected)
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == "The item has no expected output to compare with."


def test_exact_match_fails_an_empty_output():
    verdict = run({"kind": "exact_match"}, "", expected="Paris")
    assert verdict.passed is False and verdict.explanation == "expected 'Paris', got ''"


def test_long_texts_are_cut_in_explanations():
    verdict = run({"kind": "exact_match"}, "x" * 500, expected="Paris")
    assert verdict.explanation == f"expected 'Paris', got '{'x' * 60}'…"


# --- contains / not_contains -------------------------------------------------------------------------------


def test_contains_looks_for_the_expected_output_by_default():
    verdict = run({"kind": "contains"}, "The capital is PARIS.", expected="Paris")
    assert (verdict.score, verdict.passed, verdict.explanation) == (1.0, True, "found 'Paris'")


def test_contains_any_names_what_it_did_not_find():
    verdict = run({"kind": "contains", "values": ["Lyon", "Nice"]}, "Paris")
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == "none of 'Lyon', 'Nice' found in 'Paris'"


def test_contains_all_scores_the_share_found_and_passes_only_with_all():
    verdict = run({"kind": "contains", "values": ["red", "green", "blue"], "mode": "all"}, "Red and green")
    assert verdict.score == pytest.approx(2 / 3) and verdict.passed is False
    assert verdict.explanation == "found 2 of 3; missing 'blue'"
    assert run({"kind": "contains", "values": ["red", "blue"], "mode": "all"}, "blue, red").passed is True


def test_contains_can_be_case_sensitive():
    assert run({"kind": "contains", "values": ["Paris"], "case_sensitive": True}, "paris").passed is False


def test_contains_matches_fullwidth_accented_and_emoji_text():
    assert run({"kind": "contains", "values": ["ABC"]}, "code ＡＢＣ here").passed is True
    assert run({"kind": "contains", "values": ["Zoë"]}, "met zoe\u0308 today").passed is True
    assert run({"kind": "contains", "values": ["🚀"]}, "launch 🚀").passed is True


def test_contains_without_values_or_expected_output_fails_and_says_why():
    verdict = run({"kind": "contains"}, "anything")
    assert verdict.passed is False and "no expected output" in verdict.explanation


@pytest.mark.parametrize("values", [[], ["ok", ""], ["ok", 3]])
def test_contains_values_must_be_non_empty_texts(values):
    assert config_errors({"kind": "contains", "values": values}) == {"values": "Must be a list of non-empty texts."}


def test_not_contains_passes_when_nothing_forbidden_appears():
    verdict = run({"kind": "not_contains", "values": ["as an AI", "sorry"]}, "Paris.")
    assert (verdict.score, verdict.passed) == (1.0, True)
    assert verdict.explanation == "none of 'as an AI', 'sorry' appear"


def test_not_contains_names_what_it_found():
    verdict = run({"kind": "not_contains", "values": ["as an AI", "sorry"]}, "Sorry, as an AI I cannot.")
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == "contains 'as an AI', 'sorry', which must not appear"
    partly = run({"kind": "not_contains", "values": ["a", "z"]}, "a")
    assert (partly.score, partly.passed) == (0.5, False)


def test_not_contains_defaults_to_the_expected_output_and_has_no_mode():
    assert run({"kind": "not_contains"}, "It is Paris", expected="paris").passed is False
    assert "mode" in config_errors({"kind": "not_contains", "mode": "all"})


# --- regex -------------------------------------------------------------------------------------------------


def test_regex_finds_a_match_anywhere_and_says_where():
    verdict = run({"kind": "regex", "pattern": r"\d{3}"}, "order 12345")
    assert (verdict.passed, verdict.explanation) == (True, "matched '123' at position 6")


def test_regex_without_a_match_fails_and_shows_the_pattern():
    verdict = run({"kind": "regex", "pattern": r"^\d+$"}, "twelve")
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == r"no match for /^\d+$/ in 'twelve'"


def test_regex_full_match_needs_the_whole_output():
    assert run({"kind": "regex", "pattern": r"\d+", "full_match": True}, "123 ").passed is False
    assert run({"kind": "regex", "pattern": r"\d+", "full_match": True}, "123").passed is True


def test_regex_flags():
    assert run({"kind": "regex", "pattern": "paris"}, "PARIS").passed is False
    assert run({"kind": "regex", "pattern": "paris", "ignore_case": True}, "PARIS").passed is True
    assert run({"kind": "regex", "pattern": "^b$"}, "a\nb").passed is False
    assert run({"kind": "regex", "pattern": "^b$", "multiline": True}, "a\nb").passed is True
    assert run({"kind": "regex", "pattern": "a.b"}, "a\nb").passed is False
    assert run({"kind": "regex", "pattern": "a.b", "dotall": True}, "a\nb").passed is True


def test_regex_matches_unicode_text():
    assert run({"kind": "regex", "pattern": r"^\w+é$"}, "café").passed is True


def test_an_invalid_regex_is_a_config_error_naming_the_problem():
    assert config_errors({"kind": "regex", "pattern": "(unclosed"}) == {
        "pattern": "Not a valid regular expression: missing ), unterminated subpattern at position 0."
    }
    assert config_errors({"kind": "regex"}) == {"pattern": "This field is required."}


# --- valid_json --------------------------------------------------------------------------------------------


def test_valid_json_accepts_an_object():
    verdict = run({"kind": "valid_json"}, '{"city": "Zürich 🏔"}')
    assert (verdict.score, verdict.passed, verdict.explanation) == (1.0, True, "valid JSON (an object)")


def test_valid_json_accepts_a_fenced_block_unless_told_not_to():
    fenced = '```json\n{"a": [1, 2]}\n```'
    assert run({"kind": "valid_json"}, fenced).passed is True
    assert run({"kind": "valid_json"}, "\n  ```\n[1]\n```\n").explanation == "valid JSON (an array)"
    assert run({"kind": "valid_json", "strip_code_fences": False}, fenced).passed is False


def test_valid_json_gives_the_position_of_the_error():
    verdict = run({"kind": "valid_json"}, '{"a": 1,}')
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation.startswith("not valid JSON:")
    assert "line 1 column 8" in verdict.explanation


def test_valid_json_rejects_what_is_not_strict_json():
    assert run({"kind": "valid_json"}, "NaN").passed is False
    assert run({"kind": "valid_json"}, "{'a': 1}").passed is False
    assert run({"kind": "valid_json"}, 'Here you go: {"a": 1}').passed is False


def test_valid_json_fails_an_empty_output():
    verdict = run({"kind": "valid_json"}, "  ")
    assert verdict.passed is False and verdict.explanation == "not valid JSON: the output is empty"


# --- json_schema -------------------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def test_json_schema_passes_a_conforming_fenced_document():
    verdict = run({"kind": "json_schema", "schema": PERSON}, '```json\n{"name": "Zoë", "age": 3}\n```')
    assert (verdict.score, verdict.passed, verdict.explanation) == (1.0, True, "matches the schema")


def test_json_schema_lists_violations_with_their_paths():
    verdict = run({"kind": "json_schema", "schema": PERSON}, '{"name": 5, "tags": ["a", 2]}')
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == (
        "3 schema violations: $: 'age' is a required property; "
        "$.name: 5 is not of type 'string'; $.tags[1]: 2 is not of type 'string'"
    )


def test_json_schema_shows_at_most_three_violations():
    verdict = run({"kind": "json_schema", "schema": PERSON}, '{"name": 1, "age": -1, "tags": [1, 2]}')
    assert verdict.explanation.startswith("4 schema violations: ")
    assert verdict.explanation.endswith(" (and 1 more)")
    assert verdict.explanation.count("$") == 3


def test_json_schema_reports_output_that_is_not_json():
    verdict = run({"kind": "json_schema", "schema": PERSON}, '{"name": "x", "age": }')
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation.startswith("not valid JSON: ") and "column 22" in verdict.explanation


def test_an_invalid_schema_is_a_config_error():
    errors = config_errors({"kind": "json_schema", "schema": {"type": "bogus"}})
    assert list(errors) == ["schema"]
    assert errors["schema"].startswith("Not a valid JSON Schema: 'bogus' is not valid")
    assert config_errors({"kind": "json_schema"}) == {"schema": "This field is required."}


# --- numeric -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, number",
    [
        ("The total is 1,234.5 dollars", 1234.5),
        ("It dropped to -3 degrees", -3),
        ("about 1e3", 1000),
        ("\u22127.5", -7.5),  # Unicode minus sign
        ("１２３", 123),  # full-width digits
        ("roughly .25 of it", 0.25),
        ("2024-05-01", 2024),
    ],
)
def test_numeric_reads_the_first_number_in_the_output(output, number):
    assert run({"kind": "numeric", "value": number}, output).passed is True
    assert run({"kind": "numeric", "value": number + 1}, output).passed is False


def test_numeric_compares_with_the_number_in_the_expected_output():
    verdict = run({"kind": "numeric"}, "It is 42.", expected="Answer: 42")
    assert (verdict.score, verdict.passed, verdict.explanation) == (1.0, True, "got 42, expected 42")


def test_numeric_passes_within_absolute_or_relative_tolerance():
    assert run({"kind": "numeric", "tolerance": 0.5}, "41.6", expected="42").passed is True
    assert run({"kind": "numeric", "tolerance": 0.5}, "41.4", expected="42").passed is False
    verdict = run({"kind": "numeric", "relative_tolerance": 0.05}, "1,040", expected="1000")
    assert verdict.passed is True and verdict.explanation == "got 1,040, expected 1,000 (within 50)"


def test_numeric_score_decays_with_the_relative_difference():
    verdict = run({"kind": "numeric"}, "90", expected="100")
    assert verdict.score == pytest.approx(0.9) and verdict.passed is False
    assert verdict.explanation == "expected 100, got 90 (off by 10; allowed 0)"
    assert run({"kind": "numeric"}, "300", expected="100").score == 0.0
    assert run({"kind": "numeric"}, "0.5", expected="0").score == 0.0


def test_numeric_without_a_number_fails_and_says_why():
    verdict = run({"kind": "numeric"}, "forty-two", expected="42")
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == "no number in the output 'forty-two'"
    assert run({"kind": "numeric"}, "", expected="42").passed is False
    assert run({"kind": "numeric"}, "42", expected="n/a").explanation == ("the expected output 'n/a' holds no number")
    assert "no expected output" in run({"kind": "numeric"}, "42").explanation


def test_numeric_tolerances_cannot_be_negative():
    assert config_errors({"kind": "numeric", "tolerance": -1}) == {"tolerance": "Must not be negative."}


# --- similarity --------------------------------------------------------------------------------------------


def test_similarity_scores_identical_text_one():
    verdict = run({"kind": "similarity"}, "Paris", expected="paris")
    assert (verdict.score, verdict.passed) == (1.0, True)


def test_similarity_passes_at_or_above_the_threshold():
    verdict = run({"kind": "similarity"}, "Pari", expected="Paris")  # ratio 88.9
    assert verdict.score == pytest.approx(0.8889, abs=1e-3) and verdict.passed is True
    assert verdict.explanation == "similarity 0.89 (ratio) to 'Paris', at or above the threshold 0.8"
    strict = run({"kind": "similarity", "threshold": 0.9}, "Pari", expected="Paris")
    assert strict.passed is False and "below the threshold 0.9" in strict.explanation


def test_similarity_methods_differ_on_word_order():
    output, expected = "york new", "new york"
    assert run({"kind": "similarity"}, output, expected=expected).passed is False
    assert run({"kind": "similarity", "method": "token_sort_ratio"}, output, expected=expected).score == 1.0


def test_similarity_can_be_case_sensitive():
    assert run({"kind": "similarity", "case_sensitive": True}, "PARIS", expected="paris").score == 0.0


def test_similarity_normalises_fullwidth_text():
    assert run({"kind": "similarity"}, "ｐａｒｉｓ", expected="Paris").score == 1.0


def test_similarity_threshold_must_be_between_zero_and_one():
    assert config_errors({"kind": "similarity", "threshold": 80}) == {"threshold": "Must be between 0 and 1."}


def test_similarity_without_expected_output_fails():
    assert run({"kind": "similarity"}, "Paris").explanation == "The item has no expected output to compare with."


# --- llm_judge ---------------------------------------------------------------------------------------------

JUDGE = {
    "kind": "llm_judge",
    "rubric": "The answer names the capital of France.",
    "provider": "openai",
    "model": "gpt-judge",
}


def judged(*replies: JudgeReply, spec: dict | None = None, **case_fields) -> tuple[Verdict, list[tuple]]:
    """The verdict for answer "Paris", and the calls the judge received."""
    calls, queue = [], list(replies)

    async def ask(provider, model, messages, params):
        calls.append((provider, model, messages, params))
        return queue.pop(0)

    case_fields.setdefault("messages", [{"role": "user", "content": "Capital of France?"}])
    return run(spec or JUDGE, case_fields.pop("output", "Paris"), Context(ask), **case_fields), calls


def test_the_judge_is_asked_with_the_rubric_conversation_expected_output_and_answer():
    _, calls = judged(JudgeReply('{"score": 1, "reason": "ok"}'), expected="Paris", output="It's Paris 🇫🇷")
    [(provider, model, messages, params)] = calls
    assert (provider, model, params) == ("openai", "gpt-judge", {"temperature": 0.0})
    system, user = messages
    assert system["role"] == "system" and "The answer names the capital of France." in system["content"]
    assert '{"score": <a number from 0 to 1>' in system["content"]
    assert user["role"] == "user"
    assert "[user] Capital of France?" in user["content"]
    assert "<expected_answer>\nParis\n</expected_answer>" in user["content"]
    assert "<answer>\nIt's Paris 🇫🇷\n</answer>" in user["content"]


def test_the_judge_prompt_keeps_text_parts_and_leaves_out_a_missing_expected_output():
    parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:..."}},
            ],
        }
    ]
    _, calls = judged(JudgeReply('{"score": 1}'), messages=parts, output="")
    user = calls[0][2][1]["content"]
    assert "What is this?\n[image_url]" in user and "data:" not in user
    assert "<expected_answer>" not in user
    assert "<answer>\n(empty)\n</answer>" in user


def test_a_judge_json_reply_gives_the_score_and_reason():
    verdict, _ = judged(JudgeReply('{"score": 0.8, "reason": "Names Paris."}', cost=0.0004, request_id="req_9"))
    assert (verdict.score, verdict.passed) == (0.8, True)
    assert verdict.explanation == "judge score 0.80: Names Paris."
    assert (verdict.cost, verdict.request_id) == (0.0004, "req_9")


def test_a_judge_json_reply_inside_code_fences_or_prose_is_read():
    fenced, _ = judged(JudgeReply('Sure.\n```json\n{"score": 0.3, "reason": "Vague."}\n```'))
    assert (fenced.score, fenced.passed, fenced.explanation) == (0.3, False, "judge score 0.30: Vague.")
    nested, _ = judged(JudgeReply('My grade {"detail": {"x": 1}, "score": 1, "reason": "Yes."} done'))
    assert nested.score == 1.0


@pytest.mark.parametrize(
    "score, expected",
    [
        ("0.7", 0.7),
        ("4/5", 0.8),
        ("7/10", 0.7),
        ("80%", 0.8),
        (7, 0.7),
        (1, 1.0),
        (0, 0.0),
    ],
)
def test_judge_scores_in_other_forms_are_normalised(score, expected):
    verdict, _ = judged(JudgeReply(orjson.dumps({"score": score, "reason": "r"}).decode()))
    assert verdict.score == pytest.approx(expected)


@pytest.mark.parametrize("score, expected", [(-0.3, 0.0), (42, 1.0), ("12/10", 1.0), ("150%", 1.0)])
def test_out_of_range_judge_scores_are_clamped(score, expected):
    verdict, _ = judged(JudgeReply(orjson.dumps({"score": score}).decode()))
    assert verdict.score == expected
    assert verdict.passed is (expected >= 0.5)


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Score: 4/5\nThe answer is right but terse.", 0.8),
        ("**Score:** 0.65.", 0.65),
        ("score = 9/10", 0.9),
        ("Verdict: PASS", 1.0),
        ("FAIL - wrong city", 0.0),
    ],
)
def test_judge_replies_without_json_fall_back_to_a_score_line_or_pass_fail(reply, expected):
    verdict, _ = judged(JudgeReply(reply))
    assert verdict.score == pytest.approx(expected)
    assert verdict.explanation == f"judge score {expected:.2f}: {reply}"


def test_the_pass_threshold_decides_passing():
    spec = {**JUDGE, "pass_threshold": 0.9}
    verdict, _ = judged(JudgeReply('{"score": 0.85}'), spec=spec)
    assert verdict.passed is False and verdict.explanation == "judge score 0.85: (no reason given)"
    assert config_errors({**JUDGE, "pass_threshold": 2}) == {"pass_threshold": "Must be between 0 and 1."}


@pytest.mark.parametrize(
    "reply",
    [
        "I think it is fine.",
        "PASS or FAIL, hard to say",
        '{"score": "high"}',
        '{"score": true}',
        "{not json",
    ],
)
def test_an_unreadable_judge_reply_fails_and_quotes_it(reply):
    verdict, _ = judged(JudgeReply(reply, cost=0.001, request_id="req_2"))
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == f"The judge's answer could not be read: {reply!r}"
    assert (verdict.cost, verdict.request_id) == (0.001, "req_2")


def test_an_unreadable_judge_reply_is_quoted_up_to_200_characters():
    verdict, _ = judged(JudgeReply("blah " * 100))
    assert verdict.explanation == f"The judge's answer could not be read: {('blah ' * 40)!r}…"


def test_an_empty_judge_reply_fails():
    verdict, _ = judged(JudgeReply("  \n", cost=0.0002))
    assert verdict.explanation == "The judge's answer could not be read: the reply was empty."
    assert (verdict.passed, verdict.cost) == (False, 0.0002)


def test_a_failed_judge_call_fails_the_item_and_keeps_its_cost():
    verdict, _ = judged(JudgeReply("", error="HTTP 429: rate limited", cost=0.0, request_id="req_3"))
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation == "The judge call failed: HTTP 429: rate limited"
    assert (verdict.cost, verdict.request_id) == (0.0, "req_3")


def test_without_a_judge_connection_the_judge_says_so():
    verdict = run(JUDGE, "Paris", Context())
    assert verdict.passed is False and verdict.explanation.startswith("No judge is available")
    assert asyncio.run(build(JUDGE).evaluate(Case("Paris"))).explanation.startswith("No judge is available")


def test_the_judge_cannot_be_run_synchronously():
    with pytest.raises(TypeError, match="evaluate"):
        build(JUDGE).check(Case("Paris"))


# --- latency and cost --------------------------------------------------------------------------------------


def test_latency_passes_under_the_limit_and_decays_over_it():
    assert run({"kind": "latency", "max_ms": 1000}, "", latency_ms=999.5).score == 1.0
    verdict = run({"kind": "latency", "max_ms": 1000}, "", latency_ms=2500)
    assert (verdict.score, verdict.passed) == (0.4, False)
    assert verdict.explanation == "took 2,500 ms, over the 1,000 ms limit"


def test_latency_without_a_measurement_fails():
    verdict = run({"kind": "latency", "max_ms": 1000}, "ok")
    assert (verdict.score, verdict.passed, verdict.explanation) == (0.0, False, "no latency measured for this item")
    assert config_errors({"kind": "latency", "max_ms": 0}) == {"max_ms": "Must be above 0."}


def test_cost_passes_under_the_limit_and_decays_over_it():
    assert run({"kind": "cost", "max_usd": 0.01}, "", cost=0.01).passed is True
    verdict = run({"kind": "cost", "max_usd": 0.01}, "", cost=0.04)
    assert (verdict.score, verdict.passed) == (0.25, False)
    assert verdict.explanation == "cost $0.04, over the $0.01 limit"


def test_cost_of_an_unpriced_call_fails():
    verdict = run({"kind": "cost", "max_usd": 0.01}, "ok")
    assert (verdict.score, verdict.passed) == (0.0, False)
    assert verdict.explanation.startswith("the call is unpriced")
