"""Evaluators of operational limits, latency and cost. They apply even when the model call failed."""

from __future__ import annotations

from .base import Case, Evaluator, Param, Verdict, num


class Latency(Evaluator):
    kind = "latency"
    label = "Latency"
    description = "The call took at most max_ms. Over the limit the score is max_ms / latency."
    params = {"max_ms": Param("float", None, "The slowest acceptable call, in milliseconds.", required=True)}

    def prepare(self) -> dict[str, str]:
        return {} if self.max_ms > 0 else {"max_ms": "Must be above 0."}

    def check(self, case: Case) -> Verdict:
        if case.latency_ms is None:
            return Verdict(0.0, False, "no latency measured for this item")
        if case.latency_ms <= self.max_ms:
            return Verdict(1.0, True, f"took {num(case.latency_ms)} ms, within {num(self.max_ms)} ms")
        return Verdict(
            self.max_ms / case.latency_ms,
            False,
            f"took {num(case.latency_ms)} ms, over the {num(self.max_ms)} ms limit",
        )


class Cost(Evaluator):
    kind = "cost"
    label = "Cost"
    description = "The call cost at most max_usd. Over the limit the score is max_usd / cost."
    params = {"max_usd": Param("float", None, "The most a call may cost, in US dollars.", required=True)}

    def prepare(self) -> dict[str, str]:
        return {} if self.max_usd >= 0 else {"max_usd": "Must not be negative."}

    def check(self, case: Case) -> Verdict:
        if case.cost is None:
            return Verdict(0.0, False, "the call is unpriced, so its cost cannot be checked")
        if case.cost <= self.max_usd:
            return Verdict(1.0, True, f"cost ${case.cost:.6g}, within ${self.max_usd:.6g}")
        return Verdict(self.max_usd / case.cost, False, f"cost ${case.cost:.6g}, over the ${self.max_usd:.6g} limit")
