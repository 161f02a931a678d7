"""The answer side of guardrails: a whole JSON answer checked and restored before it goes out, a stream checked
and restored event by event (hold: released once checked; watch: passed on, ended with the format's error event
on a violation), and stored bodies redacted before they are written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ..exchange import Editor
from .checks import JsonCheck, TextCheck
from .policy import HOLD
from .text import JSON_TEXT, SKIP, Joined, Vault, mask, restore_document, slots

if TYPE_CHECKING:
    from ..exchange import Exchange
    from .state import Guard

HOLD_CHARS = 160  # hold mode: text held back at most before it is checked and released
OVERLAP = 200  # text already released that is checked again with the next piece (a match across pieces)
HOLD_BACK = 48  # hold mode with redaction: characters kept for the next window, where a value may go on


def _known(vault: Vault, value: str) -> bool:
    """A value the client itself sent (and got back restored): not the answer's own, never re-redacted."""
    return value in vault.by_placeholder.values()


def _redact_slot(guard: Guard, checks: list[TextCheck], text: str) -> str:
    """An answer string with what the answer's redacting checks find replaced (values the client sent excepted)."""
    for check in checks:
        found = [(s, e, label) for s, e, label in check.scan(text) if not _known(guard.vault, text[s:e])]
        if found:
            guard.decide(check, "redact", "response", f"{found[0][2]}: {mask(text[found[0][0] : found[0][1]])}")
            for start, end, label in reversed(found):
                text = text[:start] + guard.answer_vault.placeholder(label, text[start:end]) + text[end:]
    return text


def _violations(guard: Guard, checks: list[TextCheck], text: str, after: int = 0) -> tuple[TextCheck, str] | None:
    """Flag what flagging checks find in `text` (matches ending past `after`); the first blocking match, if any."""
    for check in checks:
        for start, end, label in check.scan(text):
            if end <= after or _known(guard.vault, text[start:end]):
                continue
            hint = f"{label}: {mask(text[start:end])}"
            if check.action == "block":
                return check, hint
            guard.decide(check, "flag", "response", hint)
            break
    return None


class WholeGuard(Editor):
    """A non-streamed JSON answer: held whole, checked, restored, passed on (or refused before it goes out)."""

    def __init__(self, ex: Exchange, guard: Guard):
        self.ex, self.guard = ex, guard
        self.parts: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        self.parts.append(chunk)
        return b""

    def flush(self) -> bytes:
        body = b"".join(self.parts)
        guard, ex = self.guard, self.ex
        try:
            data = orjson.loads(body)
        except ValueError:
            return body  # not JSON (an upstream's odd answer): passed on as it came
        policy = guard.policy
        if policy.restore and guard.vault:
            restore_document(guard.vault, data)
        checks = [c for c in policy.response_checks if isinstance(c, TextCheck)]
        joined = Joined(slots(data))
        try:
            hit = _violations(guard, [c for c in checks if c.action != "redact"], joined.text)
            if hit is None:
                for check in policy.response_checks:
                    if isinstance(check, JsonCheck):
                        problem = check.problem(ex.fmt.text(data))
                        if problem:
                            if check.action == "block":
                                hit = (check, problem)
                                break
                            guard.decide(check, "flag", "response", problem)
            redacting = [c for c in checks if c.action == "redact"]
            if hit is None and redacting:
                for slot in joined.slots:
                    slot.set(_redact_slot(guard, redacting, slot.get()))
        except Exception as exc:  # noqa: BLE001  (on_error decides; never a 500)
            refusal = guard.failed(checks[0] if checks else policy.response_checks[0], "response", exc)
            if refusal is None:
                return orjson.dumps(data)
            return self._refuse(refusal)
        if hit is not None:
            return self._refuse(guard.refusal(hit[0], "response", hit[1]))
        return orjson.dumps(data)

    def _refuse(self, refusal) -> bytes:
        # Before the answer's head went out (the usual case) the relay answers the refusal with its status; a
        # chunked answer already started gets the error body in its place.
        self.ex.refusal = refusal
        return self.ex.fmt.error_body(refusal.status, refusal.code, refusal.message)


class _Event:
    __slots__ = ("raw", "name", "data", "changed")

    def __init__(self, raw: bytes, name: bytes | None, data: Any):
        self.raw, self.name, self.data, self.changed = raw, name, data, False


class StreamGuard(Editor):
    """A streamed answer (SSE or NDJSON), event by event: placeholders put back (one split across events is held
    until it is whole), text checked in step with the policy's stream mode."""

    def __init__(self, ex: Exchange, guard: Guard, *, ndjson: bool):
        self.ex, self.guard, self.fmt = ex, guard, ex.fmt
        policy = guard.policy
        self.ndjson = ndjson
        self.separator = b"\n" if ndjson else b"\n\n"
        self.buffer = b""
        self.restore = policy.restore and bool(guard.vault)
        text_checks = [c for c in policy.response_checks if isinstance(c, TextCheck)]
        self.flaggers = [c for c in text_checks if c.action != "redact"]
        self.redactors = [c for c in text_checks if c.action == "redact"]
        self.json_checks = [c for c in policy.response_checks if isinstance(c, JsonCheck)]
        self.hold = policy.stream_mode == HOLD and bool(policy.response_checks)
        self.hold_chars = float("inf") if self.json_checks else HOLD_CHARS  # JSON is judged whole
        self.tails: dict[str, str] = {}  # channel -> the start of a placeholder, held for the next piece
        self.carriers: dict[str, tuple[_Event, list]] = {}  # channel -> an event to carry that tail, its path
        self.held: list[tuple[bytes, _Event | None]] = []  # hold mode: (bytes to send before, the event)
        self.held_text: list[str] = []
        self.recent = ""  # the end of the text already checked (a match may straddle two pieces)
        self.whole: list[str] = []  # every piece of text, for the JSON checks
        self.over = False  # ended by a guardrail: the rest of the upstream's stream is dropped
        # hold mode with redaction: channel -> (raw text kept for the next window, the event it came in, its path)
        self.carry: dict[str, tuple[str, _Event, list]] = {}

    # --- the editor

    def feed(self, chunk: bytes) -> bytes:
        if self.over:
            return b""
        self.buffer += chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
        *events, self.buffer = self.buffer.split(self.separator)
        out = [self._event(raw) for raw in events if raw.strip()]
        return b"".join(out)

    def flush(self) -> bytes:
        if self.over:
            return b""
        out = [self._event(self.buffer)] if self.buffer.strip() else []
        self.buffer = b""
        if not self.over:
            tails = self._flush_tails(None)
            if self.hold:
                self.held.append((tails, None))  # after the text still held, not before it
            else:
                out.append(tails)
            out.append(self._check(final=True))
        return b"".join(out)

    # --- one event

    def _event(self, raw: bytes) -> bytes:
        if self.over:
            return b""
        event = self._parse(raw)
        data = event.data
        out = []
        if data is not None and not (isinstance(data, dict) and data.get("type") == "ping"):
            carried = self._restore(event) if self.restore else set()
            out.append(self._flush_tails(carried))
        merge = self.hold and bool(self.redactors)  # hold mode redacts the text of several events as one
        if self.redactors and not merge and isinstance(data, dict | list):
            for slot in slots(data):  # watch mode: what each event holds (a value split across two passes)
                text = slot.get()
                redacted = _redact_slot(self.guard, self.redactors, text)
                if redacted != text:
                    slot.set(redacted)
                    event.changed = True
        text = self.fmt.text(data) if isinstance(data, dict) else ""
        if not (self.flaggers or self.json_checks or merge):
            return b"".join(out) + self._encode(event)
        if text:
            self.held_text.append(text)
            if self.json_checks:
                self.whole.append(text)
        if not self.hold:
            out.append(self._encode(event))
            out.append(self._check())
            return b"".join(out)
        self.held.append((b"".join(out), event))
        ends_text = data is not None and not text  # a finish, a block's end: what was held goes out whole
        if sum(map(len, self.held_text)) >= self.hold_chars or (ends_text and (self.held_text or self.carry)):
            return self._check(settle=ends_text)
        return b""

    def _check(self, final: bool = False, settle: bool = False) -> bytes:
        """Check the text held (or passed, in watch mode) since the last check; release it, or end the stream."""
        pieces = "".join(self.held_text)
        self.held_text = []
        text = self.recent + pieces
        hit = None
        try:
            if pieces and self.flaggers:
                hit = _violations(self.guard, self.flaggers, text, after=len(self.recent))
            if hit is None and final:
                whole = "".join(self.whole)
                for check in self.json_checks:
                    problem = check.problem(whole)
                    if problem:
                        if check.action == "block":
                            hit = (check, problem)
                            break
                        self.guard.decide(check, "flag", "response", problem)
            extra = b""
            if hit is None and self.hold and self.redactors:
                extra = self._redact_held(final or settle)
        except Exception as exc:  # noqa: BLE001  (on_error decides; never a 500)
            refusal = self.guard.failed(self.guard.policy.response_checks[0], "response", exc)
            if refusal is not None:
                self.ex.refusal = refusal
                return self._end()
            extra = b""
        self.recent = text[-OVERLAP:]
        if hit is not None:
            self.ex.refusal = self.guard.refusal(hit[0], "response", hit[1])
            return self._end()
        released = b"".join(prefix + (self._encode(event) if event else b"") for prefix, event in self.held)
        self.held = []
        return released + extra

    def _redact_held(self, settle: bool) -> bytes:
        """Redact the held text of each channel as one string (a value split across events is found whole) and
        write it into the first of its events, the others emptied; the last few characters are kept for the next
        window (a value may go on there) unless `settle`. What is kept for a channel none of the held events
        carries goes out in a copy of the event that brought it."""
        groups: dict[str, list[tuple[_Event, Any, Any, list]]] = {}
        for _prefix, event in self.held:
            data = event.data if event is not None else None
            if isinstance(data, dict | list):
                kind = data.get("type", "") if isinstance(data, dict) else ""
                for container, key, path, channel, _json in _delta_strings(data, kind):
                    groups.setdefault(channel, []).append((event, container, key, path))
        for channel, items in groups.items():
            kept = self.carry.pop(channel, ("", None, None))[0]
            merged = kept + "".join(container[key] for _e, container, key, _p in items)
            released, rest = self._redact_text(merged, settle)
            for i, (event, container, key, _path) in enumerate(items):
                value = released if i == 0 else ""
                if container[key] != value:
                    container[key] = value
                    event.changed = True
            if rest:
                last = items[-1]
                self.carry[channel] = (rest, last[0], last[3])
        out = []
        if settle:
            for channel in list(self.carry):
                rest, event, path = self.carry.pop(channel)
                released, _ = self._redact_text(rest, True)
                out.append(self._copy_with(event, path, released))
        return b"".join(out)

    def _redact_text(self, text: str, settle: bool) -> tuple[str, str]:
        """(the text to release, redacted; the raw rest kept back). The cut never falls inside a match."""
        found = []
        for check in self.redactors:
            for start, end, label in check.scan(text):
                if not _known(self.guard.vault, text[start:end]):
                    found.append((start, end, label, check))
        cut = len(text) if settle else max(0, len(text) - HOLD_BACK)
        moved = True
        while moved:
            moved = False
            for start, end, _label, _check in found:
                if start < cut < end:
                    cut, moved = start, True
        out, at = [], 0
        for start, end, label, check in sorted(f for f in found if f[1] <= cut):
            if start < at:
                continue
            self.guard.decide(check, "redact", "response", f"{label}: {mask(text[start:end])}")
            out += [text[at:start], self.guard.answer_vault.placeholder(label, text[start:end])]
            at = end
        out.append(text[at:cut])
        return "".join(out), text[cut:]

    def _end(self) -> bytes:
        """End the stream with the format's error event; nothing held or still to come reaches the client, and the
        relay stops reading the upstream (`ex.refusal` set: the model stops generating what nobody will read)."""
        self.over = True
        self.held = []
        record = self.guard.record
        return self.fmt.stream_error("invalid_request_error", record.error)

    # --- placeholders

    def _restore(self, event: _Event) -> set[str]:
        """Put placeholders back in the event's strings, holding an unfinished one for the next piece on the same
        channel; the channels this event carries."""
        data = event.data
        vault = self.guard.vault
        seen = set()
        if not isinstance(data, dict | list):
            return seen
        kind = data.get("type", "") if isinstance(data, dict) else ""
        for container, key, path, channel, json_text in _delta_strings(data, kind):
            seen.add(channel)
            text = self.tails.pop(channel, "") + container[key]
            restored = vault.restore(text, json_text)
            n = vault.pending_tail(restored)
            if n:
                self.tails[channel] = restored[-n:]
                restored = restored[:-n]
                self.carriers[channel] = (event, path)
            if restored != container[key]:
                container[key] = restored
                event.changed = True
        return seen

    def _flush_tails(self, carried: set[str] | None) -> bytes:
        """Send the held starts of placeholders that did not go on (the piece that followed was not theirs): each
        in a copy of the event that brought it."""
        out = []
        for channel in [c for c in self.tails if carried is None or c not in carried]:
            tail = self.tails.pop(channel)
            event, path = self.carriers.pop(channel)
            out.append(self._copy_with(event, path, tail))
        return b"".join(out)

    def _copy_with(self, event: _Event, path: list, text: str) -> bytes:
        """A copy of `event` carrying `text` at `path` (held text that the events after it could not carry)."""
        copy = orjson.loads(orjson.dumps(event.data))
        target = copy
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = text
        return self._encode(_Event(b"", event.name, copy), force=True)

    # --- framing

    def _parse(self, raw: bytes) -> _Event:
        if self.ndjson:
            try:
                return _Event(raw, None, orjson.loads(raw))
            except ValueError:
                return _Event(raw, None, None)
        name = None
        data_lines = []
        for line in raw.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                data_lines.append(line[5:].strip())
        payload = b"\n".join(data_lines)
        if not payload.startswith((b"{", b"[")):
            return _Event(raw, name, None if payload != b"[DONE]" else b"[DONE]")
        try:
            return _Event(raw, name, orjson.loads(payload))
        except ValueError:
            return _Event(raw, name, None)

    def _encode(self, event: _Event, force: bool = False) -> bytes:
        if not event.changed and not force:
            return event.raw + self.separator
        body = orjson.dumps(event.data)
        if self.ndjson:
            return body + b"\n"
        head = b"event: " + event.name + b"\n" if event.name else b""
        return head + b"data: " + body + b"\n\n"


def _delta_strings(data: Any, kind: str):
    """(container, key, path, channel, json_text) of each string of a stream event; the channel tells pieces of one
    text apart from those of another (its path, with the indexes that name a choice, block or output item)."""
    stack: list[tuple[Any, list, str]] = [(data, [], kind)]
    while stack:
        value, path, channel = stack.pop()
        if isinstance(value, dict):
            marks = "".join(f"#{value[k]}" for k in ("index", "output_index", "content_index") if k in value)
            for key, item in value.items():
                if key in SKIP:
                    continue
                if isinstance(item, str):  # empty ones too: an empty piece still continues its text
                    yield (
                        value,
                        key,
                        [*path, key],
                        f"{channel}{marks}.{key}",
                        key in JSON_TEXT or "arguments" in kind,
                    )
                elif isinstance(item, dict | list):
                    stack.append((item, [*path, key], f"{channel}{marks}.{key}"))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    yield value, i, [*path, i], f"{channel}[{i}]", "arguments" in kind
                elif isinstance(item, dict | list):
                    stack.append((item, [*path, i], f"{channel}[{i}]"))


def redact_stored(ex: Exchange, guard: Guard) -> None:
    """Bodies kept for the record (full mode) with what the policy's PII checks find replaced, whatever was done on
    the wire; the request's placeholders stay placeholders."""
    record, check = ex.record, guard.policy.stored_check
    if check is None:
        return
    vault = Vault()
    try:
        for name in ("request_body", "response_body"):
            raw = getattr(record, name)
            if raw:
                try:
                    text = raw.decode()
                except UnicodeDecodeError:
                    continue  # not text (audio, an image upload): nothing a PII check reads
                found = check.scan(text)
                for start, end, label in reversed(found):
                    text = text[:start] + vault.placeholder(label, text[start:end]) + text[end:]
                setattr(record, name, text.encode())
        if isinstance(record.body, dict):
            joined = Joined(slots(record.body))
            found = check.scan(joined.text)
            joined.rewrite([(s, e, vault.placeholder(label, joined.text[s:e])) for s, e, label in found])
    except Exception as exc:  # noqa: BLE001  (bodies that cannot be checked are not kept)
        record.request_body = record.response_body = b""
        record.body = None
        guard.decide("stored bodies", "error", "both", why=f"{type(exc).__name__}: {exc}; bodies not kept")
    if vault:
        guard.decide("stored bodies", "redact", "both", f"{len(vault.by_placeholder)} values")
