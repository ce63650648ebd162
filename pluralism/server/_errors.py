"""OpenAI-shaped error replies: `{"error": {"message", "type", "param", "code"}}`.

OpenAI clients turn these into typed exceptions (`BadRequestError`, `AuthenticationError`...)
from the status alone, so the status must be right; the message is one sentence saying what to
do. Nothing here ever includes a traceback or the upstream's API key.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from pluralism._json import dumps
from pluralism._redact import redact
from pluralism.errors import PluralismError

log = logging.getLogger("pluralism.server")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_error",
}


class ProxyError(Exception):
    """An error reply the proxy decided on itself (bad body, unknown model, missing key)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_body(status: int, message: str, code: str | None, param: str | None = None) -> bytes:
    """Every error reply's body; the message is redacted here, whoever wrote it."""
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return dumps(
        {"error": {"message": redact(message), "type": kind, "param": param, "code": code}}
    )


def error_response(
    status: int,
    message: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_body(status, message, code, param),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def from_exception(exc: BaseException) -> tuple[int, str, str | None, str | None]:
    """(status, message, code, param) for any exception; unexpected ones are logged here."""
    if isinstance(exc, ProxyError):
        return exc.status, exc.message, exc.code, exc.param
    if isinstance(exc, PluralismError):
        if exc.status_code >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return exc.status_code, exc.message, exc.code, None
    log.error("Unexpected error while answering a request", exc_info=exc)
    return (
        500,
        "The proxy hit an internal error; retry, and report it with the time of the request "
        "if it persists.",
        "internal_error",
        None,
    )


def invalid_body(exc: ValidationError) -> ProxyError:
    """The first pydantic problem as one sentence naming the field, as OpenAI does."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    # A union reports each branch (`content.str`, `content.list[...]`); the field is enough.
    loc = [
        p
        for p in loc
        if p not in ("str", "bool", "int", "float")
        and not p.startswith(("list[", "function-", "tagged-union"))
    ]
    param = ".".join(loc) or None
    if err["type"] == "missing":
        message = f"The request body is missing `{param}`; add it (see the OpenAI chat API)."
    elif err["type"] == "extra_forbidden":
        message = f"`{param}` is not a known field; remove it or check its spelling."
    else:
        message = f"`{param}`: {err['msg']}; fix the value and retry."
    return ProxyError(400, message, code="invalid_value", param=param)


async def unhandled(request: Request, exc: Exception) -> Response:
    """The last line of defence: a stack trace is logged, never sent."""
    status, message, code, param = from_exception(exc)
    return error_response(status, message, code, param)


def http_error(status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
    """Starlette's own errors (unknown path, wrong method) in the OpenAI shape; its headers
    (405's `Allow`) are kept."""
    if status == 404:
        message, code = "There is no such endpoint; use POST /v1/chat/completions.", "not_found"
    elif status == 405:
        allowed = (headers or {}).get("Allow", "")
        message, code = f"This endpoint accepts only {allowed or 'other methods'}.", "bad_method"
    else:
        message, code = str(detail), "http_error"
    return error_response(status, message, code, headers=headers)
