"""Fake LLM provider: a real HTTP/1.1 server on loopback speaking the OpenAI, Azure OpenAI,
Anthropic, Gemini and Ollama wire formats (streaming included), for tests and benchmarks.
Run standalone with `python -m tests.fake_provider --port 9999`; in pytest use `FakeProvider` or the `fake` fixture."""

import importlib.util

from .options import DEFAULT_CHUNKS, DEFAULT_TEXT, TOKEN_RULE, completion_tokens, last_user_text, prompt_tokens
from .records import Disconnect, RecordedRequest
from .server import FakeProvider

# conftest.py lists this package in pytest_plugins, so the fixtures must be its attributes.
if importlib.util.find_spec("pytest") is not None:  # the standalone server must not need pytest.
    from .plugin import fake, fake_provider

__all__ = [
    "FakeProvider",
    "RecordedRequest",
    "Disconnect",
    "fake_provider",
    "fake",
    "prompt_tokens",
    "last_user_text",
    "completion_tokens",
    "DEFAULT_TEXT",
    "DEFAULT_CHUNKS",
    "TOKEN_RULE",
]
