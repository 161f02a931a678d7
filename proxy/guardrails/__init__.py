"""Guardrails and PII redaction on the request path: policies compiled into plain checks (checks.py, policy.py),
PII and secrets found by Presidio's pattern recognizers with no model (pii.py), the text of any wire format and
its placeholders (text.py), the two stages (stage.py) and the answer side, whole or streamed (stream.py)."""
