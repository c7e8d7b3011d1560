"""Secrets a provider quotes back (a 401 that repeats the API key) are removed before a span is stored.

Status messages and exception text are free text: an SDK error may hold the key the request was
sent with. Key-shaped strings are replaced by ``[REDACTED]`` wherever runmeter writes such text.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact"]

REDACTED = "[REDACTED]"

_KEYS = re.compile(
    r"(?:"
    r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{8,}"  # OpenAI, Anthropic
    r"|\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/\-]{8,}=*"  # an Authorization header quoted back
    r"|\bAIza[0-9A-Za-z_\-]{30,}"  # Google API keys
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgsk_[A-Za-z0-9]{20,}"  # Groq
    r"|\bxai-[A-Za-z0-9]{20,}"  # xAI
    r"|\bhf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack
    r")"
)
_HINTS = ("sk-", "Bearer", "Basic", "AIza", "AKIA", "ASIA", "gsk_", "xai-", "hf_", "xox")


def redact(text: str) -> str:
    """``text`` with key-shaped strings replaced (most text has none: a cheap scan first)."""
    if not text or not any(h in text for h in _HINTS):
        return text
    return _KEYS.sub(REDACTED, text)
