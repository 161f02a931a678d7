"""Guardrails on the request path (proxy/stages.py), as two stages:

- `GuardrailsIn` (after the prompt is rendered and before the cache and the limits): checks the request as it
  will go upstream; blocks it (400 in the client's format, recorded `blocked`, before any budget is reserved or
  cache entry filled), redacts it (placeholders, so the cache key sees what the provider sees), or flags it.
- `GuardrailsOut` (last, so its editor runs after the cache has captured the provider's answer): puts the
  request's placeholders back and checks the answer, whole or streamed (hold or watch), ending a blocked stream
  with the format's error event; when the request is over, redacts the bodies kept for the record
  (`redact_stored`).

An org without a policy costs one attribute check in each; a request whose policy has no check for a direction
costs nothing more on that side."""

from __future__ import annotations

import logging

import orjson

from .. import formats, internal
from ..errors import ProxyError
from ..exchange import Editor, Exchange
from ..providers import named_route
from ..stages import Stage
from .checks import CallCheck, ModelsCheck, SizeCheck, TextCheck
from .state import Guard
from .stream import StreamGuard, WholeGuard, redact_stored
from .text import REQUEST_ROOTS, Joined, mask, slots

log = logging.getLogger(__name__)

OWN_CALL = b"x-ingate-guardrail-call"  # honoured only on Ingate's own calls: nothing over HTTP can skip a policy
MAX_CALL_CHARS = 32_000  # what a moderation or judge call is sent of a long prompt (its end: the newest turns)


class GuardrailsIn(Stage):
    """Request-side checks (see the module docstring)."""

    async def request(self, ex: Exchange) -> None:
        config = ex.org.guardrails
        if config is None:
            return
        if OWN_CALL in ex.incoming.ingate and isinstance(ex.principal, internal.Principal):
            return  # a moderation or judge call made by a check: not checked again
        policy = config.for_principal(ex.principal)
        if policy is None:
            return
        guard = ex.guard = Guard(policy, ex.record)
        if not policy.request_checks:
            return
        parsed = await ex.json()
        model = (ex.fmt.model(parsed) if parsed is not None else "") or ex.route.model
        joined = Joined(slots(parsed, REQUEST_ROOTS)) if parsed is not None else Joined([])
        spans: list[tuple[int, int, str]] = []
        for check in policy.request_checks:
            try:
                if isinstance(check, ModelsCheck):
                    if model and check.refuses(model):
                        self._act(guard, check, model)
                elif isinstance(check, SizeCheck):
                    if len(joined.text) > check.max_chars:
                        self._act(guard, check, f"{len(joined.text)} chars, at most {check.max_chars}")
                elif isinstance(check, TextCheck):
                    found = check.scan(joined.text) if joined.text else []
                    if found:
                        text = joined.text
                        hint = f"{found[0][2]}: {mask(text[found[0][0] : found[0][1]])}"
                        if check.action == "redact":
                            guard.decide(check, "redact", "request", hint, matches=len(found))
                            spans.extend(found)
                        else:
                            self._act(guard, check, hint, matches=len(found))
                elif isinstance(check, CallCheck) and joined.text:
                    await self._call(ex, guard, check, joined.text[-MAX_CALL_CHARS:])
            except ProxyError:
                raise
            except Exception as exc:  # noqa: BLE001  (a check that fails follows on_error; never a 500)
                log.warning("Guardrail check %r failed on request %s: %s", check.name, ex.record.request_id, exc)
                refusal = guard.failed(check, "request", exc)
                if refusal is not None:
                    raise refusal from None
        if spans:
            joined.rewrite(_placeholders(guard, joined.text, spans))
            ex.replace_body(orjson.dumps(parsed), parsed)

    @staticmethod
    def _act(guard: Guard, check, hint: str, **extra) -> None:
        if check.action == "block":
            raise guard.refusal(check, "request", hint, **extra)
        guard.decide(check, "flag", "request", hint, **extra)

    async def _call(self, ex: Exchange, guard: Guard, check: CallCheck, text: str) -> None:
        """A moderation or judge check: one call through the gateway, recorded (and costed) like any call."""
        key = ex.principal
        principal = internal.Principal(org_id=key.org_id, org_slug=key.org_slug, app_id=key.app_id)
        headers = [
            (b"content-type", b"application/json"),
            (b"user-agent", b"ingate-guardrails/1"),
            (OWN_CALL, str(guard.policy.id).encode()),
        ]
        if check.kind == "moderation":
            path = "/v1/moderations"
            body = {"model": check.model, "input": text}
        else:
            path, _query, body = internal.build_request(check.provider, check.model, [], {"temperature": 0}, False)
            body["ingate"] = {"variables": {"input": text}}
            headers.append((b"x-ingate-prompt", check.prompt.encode()))
        status, raw, record = await internal.call(
            principal, named_route(check.provider, path), path, orjson.dumps(body), headers=headers
        )
        if not 200 <= status < 300:
            raise RuntimeError(f"the {check.kind} call answered {status}: {record.error or raw[:200]!r}")
        data = orjson.loads(raw)
        if check.kind == "moderation":
            hit = _moderation_hit(data, check.categories)
        else:
            answer = _answer_text(check.provider, path, data)
            hit = f"judge said: {mask(answer)}" if check.fail_when.search(answer) else ""
        if hit:
            self._act(guard, check, hit, call=record.request_id)


def _moderation_hit(data: dict, categories: tuple[str, ...]) -> str:
    """The flagged categories ("" when none that the check names)."""
    flagged = []
    for result in data.get("results") or []:
        for name, on in (result.get("categories") or {}).items():
            if on and (not categories or name in categories):
                flagged.append(name)
    return ", ".join(sorted(set(flagged)))


def _answer_text(provider: str, path: str, data: dict) -> str:
    return formats.of_provider(provider, named_route(provider, path).endpoint).text(data)


def _placeholders(guard: Guard, text: str, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Spans of several checks made one non-overlapping list, each with its request's placeholder."""
    out = []
    end = -1
    for start, stop, label in sorted(spans, key=lambda s: (s[0], -s[1])):
        if start < end:
            continue
        out.append((start, stop, guard.vault.placeholder(label, text[start:stop])))
        end = stop
    return out


class GuardrailsOut(Stage):
    """Response-side checks and restoring (see the module docstring)."""

    def response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> Editor | None:
        guard = ex.guard
        if guard is None or guard.blocked or not 200 <= status < 300:
            return None
        policy = guard.policy
        if not policy.response_checks and not (policy.restore and guard.vault):
            return None
        content_type = b""
        encoding = b""
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-encoding":
                encoding = value.strip().lower()
        if encoding not in (b"", b"identity"):
            guard.decide("answer", "error", "response", why=f"answer compressed as {encoding.decode()}: not checked")
            return None
        headers[:] = [h for h in headers if h[0] != b"content-length"]  # the body's length changes
        if b"event-stream" in content_type or b"ndjson" in content_type:
            return StreamGuard(ex, guard, ndjson=b"ndjson" in content_type)
        if b"json" not in content_type:
            return None
        return WholeGuard(ex, guard)

    def done(self, ex: Exchange) -> None:
        guard = ex.guard
        if guard is not None and guard.policy.redact_stored:
            redact_stored(ex, guard)

    def invalidate(self, kind: str, value: str) -> None:
        pass  # policies are cached with the org's credentials (proxy/credentials.py)
