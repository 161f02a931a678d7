"""One request's guardrail state: the policy that applies, its placeholders, and the decisions that go on the
record (`guardrail`: the strongest outcome; `guardrail_decisions`: check, action, direction, masked hint)."""

from __future__ import annotations

from ..codes import ErrorCode
from ..errors import ProxyError
from ..records import Outcome, ProxyRecord
from .checks import Check
from .policy import Policy
from .text import Vault

# The record's `guardrail` field: "" (nothing happened), then each outcome outranks the one before.
FLAGGED, REDACTED, BLOCKED = "flagged", "redacted", "blocked"
_RANK = {"": 0, FLAGGED: 1, REDACTED: 2, BLOCKED: 3}
_OUTCOME_OF = {"flag": FLAGGED, "redact": REDACTED, "block": BLOCKED}
MAX_DECISIONS = 50
_TELLS = frozenset(
    {"models", "max_size", "json", "moderation"}
)  # checks whose hint the client may read  # a long answer flagged piece by piece still makes one short list


class Guard:
    __slots__ = ("policy", "record", "vault", "answer_vault", "blocked", "_seen")

    def __init__(self, policy: Policy, record: ProxyRecord):
        self.policy = policy
        self.record = record
        self.vault = Vault()  # the request's redactions: put back in the answer when the policy restores
        self.answer_vault = Vault()  # what response checks redact: never put back
        self.blocked = False
        self._seen: set[tuple[str, str, str]] = set()

    @property
    def reads_answer(self) -> bool:
        """Whether the answer must be read (checked or restored): then it is asked for uncompressed."""
        return bool(self.policy.response_checks) or (self.policy.restore and bool(self.vault))

    def decide(self, check: Check | str, action: str, direction: str, hint: str = "", **extra) -> None:
        """Note a decision on the record (once per check, action and direction; the count adds up)."""
        name = check if isinstance(check, str) else check.name
        record = self.record
        key = (name, action, direction)
        if key in self._seen:
            for decision in record.guardrail_decisions:
                if (decision["check"], decision["action"], decision["direction"]) == key:
                    decision["count"] = decision.get("count", 1) + 1
            return
        self._seen.add(key)
        if len(record.guardrail_decisions) < MAX_DECISIONS:
            decision = {"check": name, "action": action, "direction": direction, "hint": hint[:120], **extra}
            if not isinstance(check, str):
                decision["kind"] = check.kind
            record.guardrail_decisions.append(decision)
        outcome = _OUTCOME_OF.get(action, FLAGGED)  # "error" (allowed by on_error) marks the record flagged
        if _RANK[outcome] > _RANK[record.guardrail]:
            record.guardrail = outcome

    def refusal(self, check: Check | str, direction: str, hint: str = "", why: str = "", **extra) -> ProxyError:
        """Block: the decision recorded, the record's outcome `blocked`, and the error the client gets."""
        self.decide(check, "block", direction, hint, **({"why": why[:300]} if why else {}), **extra)
        self.blocked = True
        name = check if isinstance(check, str) else check.name
        own = "" if isinstance(check, str) else check.message
        said = (
            own
            or self.policy.message
            or (
                "The request was refused by a guardrail."
                if direction == "request"
                else "The answer was withheld by a guardrail."
            )
        )
        if why:  # the check failed and the policy fails closed: say so (the failure's details stay on the record)
            said = "the check could not run, and this policy blocks when a check fails (on_error: block)."
        message = f"Blocked by guardrail '{name}' (policy '{self.policy.name}'): {said}"
        if not isinstance(check, str) and check.kind in _TELLS and hint:
            message += f" ({hint})"  # a model name, a size, a schema error, categories: nothing the client did not send
        record = self.record
        record.outcome, record.error_type, record.error = Outcome.BLOCKED, ErrorCode.GUARDRAIL_BLOCKED, message
        return ProxyError(400, ErrorCode.GUARDRAIL_BLOCKED, message)

    def failed(self, check: Check, direction: str, exc: Exception) -> ProxyError | None:
        """A check that could not run: the policy's on_error says block (the refusal) or allow (None)."""
        why = f"{type(exc).__name__}: {exc}"[:300]
        if self.policy.fails_closed:
            return self.refusal(check, direction, why=f"the check could not run ({why}); on_error is block")
        self.decide(check, "error", direction, why=why)
        return None
