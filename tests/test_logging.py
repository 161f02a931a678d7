"""Secrets never reach a log line, even when code logs a header or a key by mistake."""

import logging

from ingate.logging import RedactSecretsFilter


def test_gateway_and_provider_keys_are_masked_in_log_lines():
    gateway_key = "sk-ingate-" + "Ab3" * 17 + "x"
    record = logging.LogRecord(
        "t",
        logging.INFO,
        __file__,
        1,
        "auth failed for %s with upstream %s (%s)",
        (gateway_key, "sk-proj-abcdefghijklmnop", "Bearer eyJhbGciOiJIUzI1NiJ9.payload"),
        None,
    )
    RedactSecretsFilter().filter(record)
    line = record.getMessage()
    assert gateway_key not in line and "abcdefghijklmnop" not in line and "payload" not in line
    assert "sk-ingate-Ab3A" in line  # enough left to tell which key it was
