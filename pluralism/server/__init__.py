"""The OpenAI-compatible proxy: `create_app(config)` and its configuration.

Light to import on purpose: `pluralism serve` is registered through `pluralism.server._cli`,
and the CLI must not pay for FastAPI (or torch) unless the command actually runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pluralism.server._app import create_app
    from pluralism.server._config import ProxyConfig, load_config
    from pluralism.server._state import ProxyState

_LAZY = {
    "create_app": "pluralism.server._app",
    "ProxyConfig": "pluralism.server._config",
    "load_config": "pluralism.server._config",
    "ProxyState": "pluralism.server._state",
}

__all__ = ["ProxyConfig", "ProxyState", "create_app", "load_config"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pluralism.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
