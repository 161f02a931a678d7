"""Evaluators that give partial credit for how close the output comes: a number within a tolerance of the
expected one, a text by fuzzy similarity to the expected output."""

from __future__ import annotations

import math
import re
import unicodedata

from rapidfuzz import fuzz

from .base import Case, Evaluator, Param, Verdict, model_failed, no_expected, num, show

NUMBER = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def first_number(text: str) -> float | None:
    """The first number written in text: "1,234.5", "-3", "1e3", "−2" (Unicode minus), full-width digits."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-")
    match = NUMBER.search(text)
    return float(match.group().replace(",", "")) if match else None


class Numeric(Evaluator):
    kind = "numeric"
    label = "Number"
    description = (
        "The first number in the output is within a tolerance of the expected number. Outside "
        "the tolerance the score decays: 1 - |difference| / |expected|, floored at 0."
    )
    params = {
        "tolerance": Param("float", 0.0, "Largest absolute difference that still passes."),
        "relative_tolerance": Param("float", 0.0, "Largest difference as a share of the expected number (0.05 = 5%)."),
        "value": Param("float", None, "Compare with this number instead of the item's expected output."),
    }

    def prepare(self) -> dict[str, str]:
        errors = {
            name: "Must not be negative." for name in ("tolerance", "relative_tolerance") if getattr(self, name) < 0
        }
        return errors

    def check(self, case: Case) -> Verdict:
        if failed := model_failed(case):
            return failed
        target = self.value
        if target is None:
            if not case.expected:
                return no_expected()
            if (target := first_number(case.expected)) is None:
                return Verdict(0.0, False, f"the expected output {show(case.expected)} holds no number")
        got = first_number(case.output)
        if got is None:
            return Verdict(0.0, False, f"no number in the output {show(case.output)}")
        diff = abs(got - target)
        allowed = max(self.tolerance, self.relative_tolerance * abs(target))
        if diff <= allowed:
            within = f" (within {num(allowed)})" if diff else ""
            return Verdict(1.0, True, f"got {num(got)}, expected {num(target)}{within}")
        score = max(0.0, 1.0 - diff / max(abs(target), 1e-9)) if math.isfinite(diff) else 0.0
        return Verdict(
            score, False, f"expected {num(target)}, got {num(got)} (off by {num(diff)}; allowed {num(allowed)})"
        )


class Similarity(Evaluator):
    kind = "similarity"
    label = "Text similarity"
    description = "Fuzzy similarity (rapidfuzz, 0 to 1) between the output and the expected output."
    params = {
        "method": Param(
            "choice",
            "ratio",
            "ratio: whole strings; partial_ratio: best matching part; "
            "token_sort_ratio: ignores word order; token_set_ratio: ignores order and repeats.",
            ("ratio", "partial_ratio", "token_sort_ratio", "token_set_ratio"),
        ),
        "threshold": Param("float", 0.8, "Lowest similarity that passes, from 0 to 1."),
        "case_sensitive": Param("bool", False, "Treat 'Paris' and 'paris' as different."),
    }

    def prepare(self) -> dict[str, str]:
        return {} if 0 <= self.threshold <= 1 else {"threshold": "Must be between 0 and 1."}

    def check(self, case: Case) -> Verdict:
        if failed := model_failed(case):
            return failed
        if not case.expected:
            return no_expected()

        def fold(text: str) -> str:
            text = unicodedata.normalize("NFKC", text).strip()
            return text if self.case_sensitive else text.casefold()

        score = getattr(fuzz, self.method)(fold(case.output), fold(case.expected)) / 100
        passed = score >= self.threshold
        return Verdict(
            score,
            passed,
            f"similarity {score:.2f} ({self.method}) to {show(case.expected)}, "
            f"{'at or above' if passed else 'below'} the threshold {self.threshold:g}",
        )
