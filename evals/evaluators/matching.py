"""Evaluators that compare the output with an expected text: equal, containing, not containing, matching a
regular expression."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from rapidfuzz import fuzz

from .base import Case, Evaluator, Param, Verdict, model_failed, no_expected, show


class ExactMatch(Evaluator):
    kind = "exact_match"
    label = "Exact match"
    description = "The output equals the expected output, after the normalisations you choose."
    params = {
        "case_sensitive": Param("bool", False, "Treat 'Paris' and 'paris' as different."),
        "strip": Param("bool", True, "Ignore whitespace at the start and end."),
        "collapse_whitespace": Param("bool", True, "Treat any run of spaces, tabs and newlines as one space."),
        "ignore_punctuation": Param("bool", False, "Drop punctuation before comparing."),
        "unicode_normalize": Param("bool", True, "Apply Unicode NFKC, so 'ｆｕｌｌｗｉｄｔｈ' equals 'fullwidth'."),
        "value": Param("str", None, "Compare with this text instead of the item's expected output."),
    }

    def steps(self) -> list[tuple[str, Callable[[str], str]]]:
        steps = []
        if self.unicode_normalize:
            steps.append(("Unicode", lambda s: unicodedata.normalize("NFKC", s)))
        if self.strip:
            steps.append(("surrounding whitespace", str.strip))
        if self.collapse_whitespace:
            steps.append(("inner whitespace", lambda s: re.sub(r"\s+", " ", s)))
        if not self.case_sensitive:
            steps.append(("case", str.casefold))
        if self.ignore_punctuation:
            steps.append(
                ("punctuation", lambda s: "".join(c for c in s if not unicodedata.category(c).startswith("P")))
            )
        return steps

    def check(self, case: Case) -> Verdict:
        if failed := model_failed(case):
            return failed
        target = self.value if self.value is not None else case.expected
        if not target:
            return no_expected()
        if case.output == target:
            return Verdict(1.0, True, f"output equals {show(target)}")
        got, want, used = case.output, target, []
        for name, step in self.steps():
            new_got, new_want = step(got), step(want)
            if (new_got, new_want) != (got, want):
                used.append(name)
            got, want = new_got, new_want
        after = f"after normalising {' and '.join(used)}"
        if got == want:
            return Verdict(1.0, True, f"output matches {show(target)} {after}")
        # Naming the normalisations helps when the texts look alike ('Paris' / 'paris.'); otherwise it is noise.
        close = used and fuzz.ratio(got, want) >= 60
        return Verdict(
            0.0, False, f"expected {show(target)}, got {show(case.output)}" + (f" (differs {after})" if close else "")
        )


class Contains(Evaluator):
    kind = "contains"
    label = "Contains"
    description = "The output contains the given texts (any or all of them); by default, the expected output."
    params = {
        "values": Param("list", None, "Texts to look for. Default: the item's expected output."),
        "mode": Param("choice", "any", "Pass when any one is found, or only when all are.", ("any", "all")),
        "case_sensitive": Param("bool", False, "Treat 'Paris' and 'paris' as different."),
    }

    def prepare(self) -> dict[str, str]:
        if self.values is not None and (not self.values or not all(isinstance(v, str) and v for v in self.values)):
            return {"values": "Must be a list of non-empty texts."}
        return {}

    def found(self, case: Case) -> tuple[list[str], list[str]] | None:
        """(found, missing) among the values, or None when there is nothing to look for. Both sides are NFKC
        normalised, so full-width or composed characters match their plain forms."""
        values = self.values or ([case.expected] if case.expected else [])
        if not values:
            return None

        def fold(text: str) -> str:
            text = unicodedata.normalize("NFKC", text)
            return text if self.case_sensitive else text.casefold()

        output = fold(case.output)
        found = [v for v in values if fold(v) in output]
        return found, [v for v in values if v not in found]

    def check(self, case: Case) -> Verdict:
        if failed := model_failed(case):
            return failed
        if (result := self.found(case)) is None:
            return no_expected()
        found, missing = result
        total = len(found) + len(missing)
        if self.mode == "any":
            if found:
                return Verdict(1.0, True, f"found {', '.join(map(show, found))}")
            return Verdict(0.0, False, f"none of {', '.join(map(show, missing))} found in {show(case.output)}")
        if not missing:
            return Verdict(1.0, True, f"found all {total}: {', '.join(map(show, found))}")
        return Verdict(
            len(found) / total, False, f"found {len(found)} of {total}; missing {', '.join(map(show, missing))}"
        )


class NotContains(Contains):
    kind = "not_contains"
    label = "Does not contain"
    description = "The output contains none of the given texts; by default, the expected output."
    params = {
        "values": Param("list", None, "Texts that must not appear. Default: the item's expected output."),
        "case_sensitive": Param("bool", False, "Treat 'Paris' and 'paris' as different."),
    }

    def check(self, case: Case) -> Verdict:
        """Score: the share of the texts that are absent; passes only when all are."""
        if failed := model_failed(case):
            return failed
        if (result := self.found(case)) is None:
            return no_expected()
        found, missing = result
        if not found:
            return Verdict(1.0, True, f"none of {', '.join(map(show, missing))} appear")
        return Verdict(
            len(missing) / (len(found) + len(missing)),
            False,
            f"contains {', '.join(map(show, found))}, which must not appear",
        )


class Regex(Evaluator):
    kind = "regex"
    label = "Regular expression"
    description = "The output matches a regular expression (Python syntax)."
    params = {
        "pattern": Param("str", None, "The regular expression.", required=True),
        "ignore_case": Param("bool", False, "Match regardless of case."),
        "multiline": Param("bool", False, "^ and $ match at each line."),
        "dotall": Param("bool", False, ". also matches newlines."),
        "full_match": Param("bool", False, "The whole output must match, not just a part of it."),
    }

    def prepare(self) -> dict[str, str]:
        flags = (
            (re.IGNORECASE if self.ignore_case else 0)
            | (re.MULTILINE if self.multiline else 0)
            | (re.DOTALL if self.dotall else 0)
        )
        try:
            self.compiled = re.compile(self.pattern, flags)
        except re.error as exc:
            return {"pattern": f"Not a valid regular expression: {exc}."}
        return {}

    def check(self, case: Case) -> Verdict:
        if failed := model_failed(case):
            return failed
        if self.full_match:
            if self.compiled.fullmatch(case.output):
                return Verdict(1.0, True, f"the whole output matches /{self.pattern}/")
            return Verdict(0.0, False, f"{show(case.output)} does not match /{self.pattern}/ as a whole")
        if match := self.compiled.search(case.output):
            return Verdict(1.0, True, f"matched {show(match.group())} at position {match.start()}")
        return Verdict(0.0, False, f"no match for /{self.pattern}/ in {show(case.output)}")
