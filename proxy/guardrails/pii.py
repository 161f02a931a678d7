"""PII and secret detection with Microsoft Presidio's analyzer, pattern recognizers only: no NLP model is loaded
or downloaded. Names of persons are found only when a local spaCy model is installed (INGATE_GUARDRAILS_SPACY_MODEL,
e.g. `python -m spacy download en_core_web_sm` on a machine that may fetch it); everything else is regexes with
checksums (Luhn for cards, mod-97 for IBANs) and context words.

The analyzer is built once per process, on first use, on the proxy's database threads (where policies are
compiled), never on the event loop."""

from __future__ import annotations

import bisect
import functools
import gc
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Entity -> the label of its placeholders (<EMAIL_1>). The one list of what a `pii` check can name.
ENTITIES: dict[str, str] = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
    "US_SSN": "US_SSN",
    "UK_NINO": "UK_NINO",
    "ES_NIF": "ES_NIF",
    "IT_FISCAL_CODE": "IT_FISCAL_CODE",
    "IN_AADHAAR": "IN_AADHAAR",
    "API_KEY": "API_KEY",
    "PRIVATE_KEY": "PRIVATE_KEY",
    "PERSON": "PERSON",
}
# Found by default (a `pii` check that names no entities): all but PERSON, which needs a model.
DEFAULT_ENTITIES = tuple(e for e in ENTITIES if e != "PERSON")

# Provider keys and tokens: prefixes the providers document, long enough not to catch ordinary words.
_SECRET_PATTERNS = [
    ("anthropic", r"\bsk-ant-[A-Za-z0-9_\-]{20,}", 1.0),
    ("openai", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}", 0.9),
    ("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.9),
    ("github", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})", 1.0),
    ("google_api_key", r"\bAIza[0-9A-Za-z_\-]{35}", 0.9),
    ("slack", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", 0.9),
]
_PRIVATE_KEY = (
    "private_key",
    r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----[\s\S]{16,}?-----END (?:[A-Z]+ )*PRIVATE KEY-----",
    1.0,
)
# Phone numbers by pattern (Presidio's own recognizer runs libphonenumber's matcher: ~0.7 s on 100 KB): an
# international number, or a national one written in groups; context words raise the score.
_PHONE = [
    ("international", r"(?<![\w+])\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]?\d{2,4}){1,3}\b", 0.6),
    ("grouped", r"(?<![\w+\-])\(?\d{3}\)?[ .\-]\d{3}[ .\-]\d{4}\b", 0.5),
]


@dataclass(frozen=True, slots=True)
class Found:
    start: int
    end: int
    entity: str
    score: float


@functools.cache
def analyzer(spacy_model: str = "") -> Any:
    """The process's Presidio AnalyzerEngine (built once; Presidio is imported only then, so a gateway whose orgs
    have no PII check never loads it). With `spacy_model` installed, persons too."""
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        EsNifRecognizer,
        IbanRecognizer,
        InAadhaarRecognizer,
        IpRecognizer,
        ItFiscalCodeRecognizer,
        UkNinoRecognizer,
        UsSsnRecognizer,
    )

    class Email(EmailRecognizer):
        """Presidio's e-mail patterns without its top-level-domain lookup, which downloads the public suffix list."""

        def validate_result(self, pattern_text: str) -> bool | None:
            return None

    def patterns(specs) -> list:
        return [Pattern(*spec) for spec in specs]

    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        Email(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        UkNinoRecognizer(),
        EsNifRecognizer(supported_language="en"),
        ItFiscalCodeRecognizer(supported_language="en"),
        InAadhaarRecognizer(),
        PatternRecognizer(
            "PHONE_NUMBER", patterns=patterns(_PHONE), context=["phone", "call", "tel", "mobile", "cell"]
        ),
        PatternRecognizer("API_KEY", patterns=patterns(_SECRET_PATTERNS)),
        PatternRecognizer("PRIVATE_KEY", patterns=patterns([_PRIVATE_KEY])),
    ):
        registry.add_recognizer(recognizer)
    nlp = _no_nlp()
    if spacy_model:
        spacy_nlp = _spacy_engine(spacy_model)
        if spacy_nlp is not None:
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON"]))
            nlp = spacy_nlp
    engine = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
    # Loaded after the gateway froze its start-up objects out of the cyclic GC (proxy/relay.py): freeze again, or
    # every collection walks Presidio's (and spaCy's) many objects and a 100 KB scan costs twice as much.
    gc.freeze()
    return engine


@functools.cache
def _no_nlp() -> Any:
    """An NLP engine that does nothing: pattern recognizers need no tokens, and no model is ever loaded."""
    from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine

    class NoNlp(NlpEngine):
        def load(self) -> None:
            pass

        def is_loaded(self) -> bool:
            return True

        def process_text(self, text: str, language: str) -> NlpArtifacts:
            return NlpArtifacts(
                entities=[], tokens=[], tokens_indices=[], lemmas=[], nlp_engine=self, language=language
            )

        def process_batch(self, texts, language, batch_size=1, n_process=1, **kwargs):
            for text in texts:
                yield text, self.process_text(text, language)

        def is_stopword(self, word: str, language: str) -> bool:
            return False

        def is_punct(self, word: str, language: str) -> bool:
            return False

        def get_supported_entities(self) -> list[str]:
            return []

        def get_supported_languages(self) -> list[str]:
            return ["en"]

    return NoNlp()


def _spacy_engine(model: str) -> Any:
    """Presidio's spaCy engine when the model is installed locally; None (and a warning) otherwise: nothing is
    ever downloaded."""
    import spacy.util
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    if not spacy.util.is_package(model):
        log.warning("INGATE_GUARDRAILS_SPACY_MODEL=%s is not installed: names of persons are not detected.", model)
        return None
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
    engine.load()
    return engine


# Cheap RE2 supersets of what each recognizer matches (linear time): a recognizer runs only on the windows of text
# around its trigger's matches, which keeps a 100 KB prompt to a few milliseconds (Presidio's own regexes, run
# on everything, take ~150 ms). A recognizer without a trigger reads the whole text.
_TRIGGERS = {
    "EMAIL_ADDRESS": r"[A-Za-z0-9._%+\-]@[A-Za-z0-9\-]",
    "CREDIT_CARD": r"\d{4}[ \-]?\d{4}",
    "IBAN_CODE": r"[A-Za-z]{2}\d{2}[ ]?[A-Za-z0-9]{4}",
    "IP_ADDRESS": r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}",
    "US_SSN": r"\d{3}[ .\-]?\d{2}[ .\-]?\d{4}",
    "UK_NINO": r"(?i)[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]",
    "ES_NIF": r"\d{7,8}-?[A-Za-z]",
    "IT_FISCAL_CODE": r"(?i)[A-Z]{6}\d{2}[A-Z]\d{2}",
    "IN_AADHAAR": r"\d{4}[ \-]?\d{4}[ \-]?\d{4}",
    "PHONE_NUMBER": r"\+\d|\d{3}\)?[ .\-]\d{3}",
    "API_KEY": r"sk-|AKIA|ASIA|gh[pousr]_|github_pat_|AIza|xox[abprs]-",
    "PRIVATE_KEY": r"-----BEGIN",
}
# Characters kept on each side of a trigger's match (then out to the next whitespace): enough for the recognizers'
# own boundaries; context words play no part without an NLP model.
_WINDOW = 24


@functools.cache
def _trigger(entity: str):
    import re2

    pattern = _TRIGGERS.get(entity)
    return re2.compile(pattern) if pattern else None


def _windows(text: str, trigger) -> list[tuple[int, int]] | None:
    """Merged windows of text around the trigger's matches; None when they would cover most of it."""
    from .text import spans

    out: list[list[int]] = []
    size = len(text)
    covered = 0
    for found_start, found_end in spans(trigger, text):
        start, end = max(0, found_start - _WINDOW), min(size, found_end + _WINDOW)
        while start > 0 and not text[start - 1].isspace() and found_start - start < 4 * _WINDOW:
            start -= 1  # never cut a word (or a number) in two: a piece of one could match on its own
        while end < size and not text[end].isspace() and end - found_end < 4 * _WINDOW:
            end += 1
        if out and start <= out[-1][1]:
            covered += max(out[-1][1], end) - out[-1][1]
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
            covered += end - start
        if len(out) > 2000 or covered > size // 2:
            return None
    return [(a, b) for a, b in out]


_GAP = "\n\n"


def _in_windows(recognizer, text: str, windows: list[tuple[int, int]], names: list[str], artifacts) -> list:
    """The recognizer run once over the windows joined (a blank line between them), its results put back at their
    offsets in `text`; one call instead of one per window (each costs Presidio ~0.3 ms)."""
    starts, parts, at = [], [], 0
    for start, end in windows:
        starts.append((at, start))
        parts.append(text[start:end])
        at += end - start + len(_GAP)
    results = recognizer.analyze(_GAP.join(parts), names, artifacts) or []
    out = []
    for r in results:
        i = bisect.bisect_right([s for s, _ in starts], r.start) - 1
        joined_at, text_at = starts[i]
        out.append((r.start - joined_at + text_at, r.end - joined_at + text_at, r))
    return out


def find(engine: Any, text: str, entities: tuple[str, ...], min_score: float) -> list[Found]:
    """Non-overlapping findings in `text`, in order (the higher score, then the longer, wins an overlap)."""
    artifacts = _no_nlp().process_text("", "en")
    results: list[Found] = []
    wanted = set(entities)
    for recognizer in engine.registry.recognizers:
        names = [e for e in recognizer.supported_entities if e in wanted]
        if not names or names == ["PERSON"]:
            continue
        trigger = _trigger(names[0])
        windows = _windows(text, trigger) if trigger is not None else None
        if windows == []:
            continue  # not even the trigger: nothing this recognizer could find
        if windows is None:
            found = [(r.start, r.end, r) for r in recognizer.analyze(text, names, artifacts) or []]
        else:
            found = _in_windows(recognizer, text, windows, names, artifacts)
        for start, end, r in found:
            if r.score >= min_score and end > start:
                results.append(Found(start, end, r.entity_type, r.score))
    if "PERSON" in wanted and any(r.name == "SpacyRecognizer" for r in engine.registry.recognizers):
        for r in engine.analyze(text, language="en", entities=["PERSON"], score_threshold=min_score):
            results.append(Found(r.start, r.end, r.entity_type, r.score))
    results.sort(key=lambda r: (-r.score, r.start - r.end))
    taken: list[Found] = []
    starts: list[int] = []  # of `taken`, kept sorted: an overlap check is a bisect, not a scan
    for r in results:
        i = bisect.bisect_left(starts, r.start)
        if (i < len(taken) and taken[i].start < r.end) or (i > 0 and taken[i - 1].end > r.start):
            continue
        starts.insert(i, r.start)
        taken.insert(i, r)
    return taken
