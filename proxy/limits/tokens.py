"""How many input tokens a request may use, for its reservation: OpenAI's own tokenizer (o200k or cl100k, picked
by model name, from `bpe-openai`, which ships both vocabularies: nothing is downloaded) over the text of a small
OpenAI-format request, else a bound of one token per INGATE_LIMITS_BYTES_PER_TOKEN bytes of body.

The tokenizer counts every string of the request's input (message texts, tool definitions and arguments, and the
JSON keys around them, a few tokens more than the model sees), plus OpenAI's per-message overhead; never fewer
tokens than the model will be billed for the text. It is used only where that holds: text-only requests (images,
audio and files cost tokens their bytes do not tell), whose input is all in the body (not `previous_response_id`,
`conversation` or a stored `prompt`), to OpenAI models only (a route to another provider's model counts by bytes),
and bodies up to INGATE_LIMITS_TOKENIZE_BYTES (the count costs about 0.1 µs per byte; above, bytes it is).

The vocabularies take ~2 s and ~160 MB to load, so they load on a thread of their own at the first request that
wants one; requests meanwhile count by bytes. Building one holds the GIL for ~0.15 s (measured: one pause of the
event loop, once per process). A process whose orgs have no budget or token limit never loads them."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

log = logging.getLogger(__name__)

O200K, CL100K = "o200k_base", "cl100k_base"
# Per message (or Responses input item) and per request, as OpenAI's chat format adds them (3 and 3, rounded up),
# and per tool definition (its namespace wrapping; its names, descriptions and schema are counted as text).
PER_MESSAGE, PER_REQUEST, PER_TOOL = 4, 3, 12
# Request fields that are settings or labels, not input the model reads.
_NOT_INPUT = frozenset(
    {"model", "user", "metadata", "service_tier", "safety_identifier", "prompt_cache_key", "store", "stream_options"}
)
# Input whose tokens its text does not tell: the bytes bound applies (it is no exact bound for them either).
_OPAQUE_TYPES = frozenset({"image_url", "input_image", "image", "input_file", "file", "input_audio", "audio"})
_OPAQUE_KEYS = frozenset({"image_url", "input_audio", "file", "file_data", "file_id", "image"})
_ELSEWHERE = ("previous_response_id", "conversation")  # the input the provider holds is not in the body

# Model name prefixes, longest first (after a router's "openai/" prefix is dropped).
_PREFIXES = (
    ("gpt-4o", O200K),
    ("gpt-4.1", O200K),
    ("gpt-4.5", O200K),
    ("gpt-5", O200K),
    ("gpt-oss", O200K),
    ("chatgpt-4o", O200K),
    ("codex-", O200K),
    ("o1", O200K),
    ("o3", O200K),
    ("o4", O200K),
    ("gpt-4", CL100K),
    ("gpt-35-turbo", CL100K),
    ("gpt-3.5-turbo", CL100K),
    ("text-embedding-3", CL100K),
    ("text-embedding-ada-002", CL100K),
)


def encoding_for(model: str) -> str | None:
    """The OpenAI vocabulary `model` counts in, or None for a model of another family (or an unknown name)."""
    name = model.lower().removeprefix("openai/")
    for prefix, encoding in _PREFIXES:
        if name.startswith(prefix):
            return encoding
    return None


class Tokenizers:
    """The vocabularies of this process, loaded once, off the event loop, on first demand."""

    def __init__(self):
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._loading: set[str] = set()
        self.failed = False

    def get(self, encoding: str):
        """The tokenizer, or None while it loads (or if it cannot: then never again asked)."""
        found = self._loaded.get(encoding)
        if found is None and not self.failed:
            with self._lock:
                if encoding not in self._loading:
                    self._loading.add(encoding)
                    threading.Thread(
                        target=self._load, args=(encoding,), name=f"tokenizer-{encoding}", daemon=True
                    ).start()
        return found

    def load_now(self, encoding: str):
        """Load and return it on this thread (tests, start-up warming)."""
        self._load(encoding)
        return self._loaded.get(encoding)

    def _load(self, encoding: str) -> None:
        try:
            from bpe_openai import _bindings

            self._loaded[encoding] = _bindings.tokenizer_for_encoding(encoding)
        except Exception as exc:  # noqa: BLE001  (a broken install leaves the bytes bound, which is conservative)
            self.failed = True
            log.warning("Limits: the %s tokenizer could not be loaded (%s); counting input by bytes", encoding, exc)


TOKENIZERS = Tokenizers()


def input_tokens(
    body_size: int,
    parsed: Any,
    models: list[str],
    *,
    bytes_per_token: float,
    tokenize_bytes: int,
    tokenizers: Tokenizers = TOKENIZERS,
) -> int:
    """The input tokens to reserve for a request of `body_size` bytes (`parsed`: its JSON) that may reach
    `models`: the tokenizer's count where the module docstring says it applies, else the bytes bound."""
    bound = math.ceil(body_size / bytes_per_token)
    if body_size > tokenize_bytes or not models or not isinstance(parsed, dict):
        return bound
    encoding = encoding_for(models[0])
    if encoding is None or any(encoding_for(m) != encoding for m in models[1:]):
        return bound
    if any(parsed.get(name) for name in _ELSEWHERE) or isinstance(parsed.get("prompt"), dict):
        return bound
    tokenizer = tokenizers.get(encoding)
    if tokenizer is None:
        return bound
    texts: list[str] = []
    counted = _collect({k: v for k, v in parsed.items() if k not in _NOT_INPUT}, texts)
    if counted is None:
        return bound
    for name in ("messages", "input"):
        items = parsed.get(name)
        if isinstance(items, list):
            counted += PER_MESSAGE * len(items)
    tools = parsed.get("tools") or parsed.get("functions")
    if isinstance(tools, list):
        counted += PER_TOOL * len(tools)
    return counted + PER_REQUEST + tokenizer.count("\n".join(texts))


def _collect(value: Any, texts: list[str]) -> int | None:
    """Gathers the strings (keys included) under `value` into `texts`; returns the tokens counted apart (token
    ids in a prompt, numbers), or None when the input holds something opaque (an image, audio, a file)."""
    stack, extra = [value], 0
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict):
            if item.get("type") in _OPAQUE_TYPES or not _OPAQUE_KEYS.isdisjoint(item):
                return None
            texts.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            extra += 1  # a token id (completions, embeddings), or a number in a schema
    return extra
