"""Typed exceptions. Each message is one sentence: what was wrong and what to do.

The CLI prints `str(exc)` and exits non-zero; the proxy maps `status_code` and `code` onto an
OpenAI-shaped error body. Nothing here carries a traceback to the user.
"""

from __future__ import annotations


class PluralismError(Exception):
    """Base class of every error pluralism raises on purpose."""

    status_code: int = 400
    code: str = "pluralism_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(PluralismError, ValueError):
    """A request was malformed (unknown mode, empty prompt, too few options...)."""

    code = "invalid_request"


class UnknownModeError(InputError):
    code = "unknown_mode"


class SteerNotFoundError(InputError):
    code = "steer_not_found"


class PopulationNotFoundError(InputError):
    code = "population_not_found"


class ConfigError(PluralismError):
    """A community, policy or server config file is broken; names the file and the field."""

    code = "config_error"

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = path if path is None or line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line


class ModelPackageMissingError(PluralismError):
    """A bundled model package is not installed."""

    status_code = 503
    code = "model_missing"


class ModelError(PluralismError):
    """A model backend failed (local runtime error, or an upstream server misbehaving)."""

    status_code = 502
    code = "model_error"


class UpstreamError(ModelError):
    """An OpenAI-compatible upstream refused, failed or answered garbage."""

    def __init__(self, message: str, *, status_code: int = 502, upstream: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.upstream = upstream
        self.code = "upstream_timeout" if status_code == 504 else "upstream_error"


class RuleStoreError(PluralismError):
    """The rule store could not be read or written (e.g. Redis unreachable)."""

    status_code = 503
    code = "rule_store_error"
    # True when trying again later may succeed (the store is down), false when it cannot
    # (a wrong database number, another embedder's rules).
    retryable: bool = False
