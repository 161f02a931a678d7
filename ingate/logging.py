"""Defence in depth for "secrets are never logged": mask gateway and provider keys in any log line."""

import logging
import re

from tenancy.keys import KEY_MARKER

# Gateway keys, OpenAI/Anthropic-style keys and bearer tokens. Short runs after the prefix stay
# visible so a log line still says which key was involved.
_SECRET = re.compile(
    rf"({re.escape(KEY_MARKER)}[A-Za-z0-9]{{4}}|sk-(?:ant-|proj-)?[A-Za-z0-9]{{2}}|Bearer\s+\S{{4}})[A-Za-z0-9_\-\.]+"
)


def redact(text: str) -> str:
    return _SECRET.sub(r"\1…", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
