"""Secrets out of text: every log line, error message and health report passes through here.

A password in a Redis or upstream URL, a bearer token, a key in a query string: each can reach a
message by way of an exception from a library that quotes what it was given. Masking is done
before any cut to length, so a cut can never leave most of a secret behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"

# scheme://user:password@host — keep the user (it helps to know which account), drop the rest.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)")
# scheme://token@host (no colon): a bare userinfo is a token as often as a name.
_URL_TOKEN = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s:/@]{16,}(?=@)")
_BEARER = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=-]{4,}", re.I)
# key=value in a query string or environment, "key": "value" in JSON; not "max token: 96".
_PARAM = re.compile(
    r"(?P<head>\b(?:api[_-]?key|access[_-]?token|token|password|passwd|secret)"
    r"(?:=|[\"']\s*:\s*[\"']))[^\s&\"',;}]{4,}",
    re.I,
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with credentials masked: URL passwords, bearer tokens, key=value secrets, and each
    of `secrets` (exact values this process knows, such as its upstream key)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern in (_URL_PASSWORD, _URL_TOKEN, _BEARER, _PARAM):
        text = pattern.sub(lambda m: m.group("head") + MASK, text)
    return text


def cut(text: str, limit: int, secrets: Iterable[str] = ()) -> str:
    """Redacted, then shortened to `limit` characters (an ellipsis marks a cut)."""
    clean = redact(text, secrets)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def redact_logs() -> None:
    """Redact every log record this process makes from now on, whichever library logs it.

    A record factory rather than a handler filter: uvicorn and httpx bring their own handlers,
    and a factory sees every record before any of them formats it. Idempotent.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_pluralism_redacts", False):
        return

    def make(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as it would
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    make._pluralism_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make)
