"""The proxy's configuration: `pluralism.yaml`, then `PLURALISM_<FIELD>` variables, then flags.

Operators edit the file and set secrets in the environment, so a mistake in either is reported
as one sentence naming the file, line and field (or the variable), never as a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from pluralism.config import key_lines, read_yaml, validation_message
from pluralism.errors import ConfigError
from pluralism.settings import Settings

ENV_PREFIX = "PLURALISM_"
ProxyMode = Literal["overton", "steerable", "distributional", "rules"]
MODES: tuple[ProxyMode, ...] = ("overton", "steerable", "distributional", "rules")
# Fields that hold a directory: relative paths in a config file are relative to that file.
_PATH_FIELDS = ("communities", "policies", "values")
# Fields a comma-separated environment variable fills as a list.
_LIST_FIELDS = ("api_keys", "rules_embedder")


class ProxyConfig(BaseModel):
    """Everything `pluralism serve` can be told; `examples/pluralism.example.yaml` documents it."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    upstream: str | None = None
    upstream_model: str | None = None
    upstream_api_key: SecretStr | None = None
    upstream_timeout_s: float = Field(60.0, gt=0)
    upstream_max_retries: int = Field(2, ge=0, le=10)
    communities: Path | None = None
    policies: Path | None = None
    # The values catalogue Overton answers name (Settings.values_k); read from files even
    # when the rules live in Redis, and watched with the policies.
    values: Path | None = None
    # Model directories the rule and values memories recall with (e.g. from `pluralism
    # policies tune`; several make an equal-weight ensemble); routing keeps the bundled MiniLM.
    rules_embedder: list[Path] = Field(default_factory=list)
    watch_policies: bool = True
    redis_url: str | None = None
    api_keys: list[SecretStr] = Field(default_factory=list)
    default_mode: ProxyMode = "overton"
    # Tags every request carries (what this deployment is about, e.g. [medical]), added to
    # the request's own `pluralism.tags`.
    tags: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    # Seconds a client may take to send its whole body; a slower one gets a 408, so a
    # thousand slow connections cannot hold the proxy.
    body_timeout_s: float = Field(30.0, gt=0, le=3600)
    # Open connections per process beyond which new ones get a 503 at once (uvicorn's
    # limit_concurrency).
    max_connections: int = Field(1000, ge=1, le=1_000_000)
    # On SIGTERM: stop accepting, let running requests finish for this long, then cancel them
    # (each gets a 503 `shutting_down`) and exit.
    shutdown_timeout_s: float = Field(10.0, ge=0, le=3600)
    # Requests that run models in this process (every mode but a forwarded `rules`) at once;
    # one more gets a 503 with Retry-After at once instead of queueing without limit behind
    # work that takes seconds each. Unset: one per core (bench/bench_overload.py: on 2 cores,
    # 2 answered every request inside a 30 s client timeout, 4 let some time out).
    max_model_requests: int | None = Field(None, ge=1, le=10_000)

    def model_request_limit(self) -> int:
        from pluralism._threads import usable_cores

        return self.max_model_requests or usable_cores()

    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = False
    # Processes answering requests, each with its own models: one Python process tops out at
    # about one core of proxy work, so a CPU-bound pass-through wants one per core.
    workers: int = Field(1, ge=1, le=64)
    settings: Settings = Field(default_factory=Settings)

    def rule_dir(self, name: Literal["policies", "values"]) -> Path:
        """The configured `policies` or `values` directory, else the shipped one; one that does
        not exist is a `ConfigError` naming the flag to fix."""
        from pluralism.config import default_dir

        configured: Path | None = getattr(self, name)
        directory = Path(configured) if configured else default_dir(name)
        if not directory.is_dir():
            raise ConfigError(
                f"{name} directory does not exist; create it or point --{name} elsewhere",
                path=str(directory),
            )
        return directory

    @field_validator("upstream")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL such as http://127.0.0.1:8000/v1")
        return v.rstrip("/") if v else None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        """Checked here, so a typo is one line at start-up rather than a traceback later."""
        if v is None:
            return v
        from urllib.parse import urlsplit

        parts = urlsplit(v.strip())
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                "must be a redis://, rediss:// or unix:// URL such as redis://127.0.0.1:6379/0"
            )
        db = parts.path.strip("/")
        if parts.scheme != "unix" and db and not db.isdigit():
            raise ValueError(
                "the path after the host must be a database number (redis://host:6379/0)"
            )
        return v.strip()

    @field_validator("rules_embedder", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if isinstance(v, str | Path) else v

    @field_validator("default_mode", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("api_keys", mode="before")
    @classmethod
    def _no_blank_keys(cls, v: Any) -> Any:
        # A blank key is a mistake (an unset variable in a template), never a wish to turn
        # authentication off: dropping it could leave no keys, and no keys means open.
        if isinstance(v, list) and any(isinstance(k, str) and not k.strip() for k in v):
            raise ValueError(
                "holds an empty key; remove the entry or fill it in (to serve without keys, "
                "leave api_keys out)"
            )
        return v


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ProxyConfig:
    """File values, then environment overrides, then `overrides` (the command-line flags).

    `None` in `overrides` means "flag not given" and leaves the lower layers alone.
    """
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    where: str | None = None
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(
                "config file not found; pass an existing pluralism.yaml", path=str(file)
            )
        where = str(file)
        loaded, text = read_yaml(file)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("a config file must be a YAML mapping of field: value", path=where)
        lines = key_lines(text)
        data = {**loaded}
        for name in _PATH_FIELDS:
            if isinstance(data.get(name), str):
                data[name] = str((file.parent / data[name]).expanduser())
        embedders = data.get("rules_embedder")
        if isinstance(embedders, str):
            embedders = [embedders]
        if isinstance(embedders, list):
            data["rules_embedder"] = [
                str((file.parent / e).expanduser()) if isinstance(e, str) else e for e in embedders
            ]
        _check(data, lines, where)
    from_env = env_overrides(os.environ if env is None else env)
    for name, value in from_env.items():
        try:
            ProxyConfig.model_validate({**data, name: value})
        except ValidationError as exc:
            what, _ = validation_message(exc, {})
            raise ConfigError(
                f"environment variable {ENV_PREFIX}{name.upper()}: {what}; fix or unset it"
            ) from None
    data.update(from_env)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _check(data, lines, where)


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """`PLURALISM_<FIELD>` for every top-level field except the nested `settings`."""
    out: dict[str, Any] = {}
    for name in ProxyConfig.model_fields:
        if name == "settings":
            continue
        raw = env.get(f"{ENV_PREFIX}{name.upper()}")
        if raw is None:
            continue
        if name in _LIST_FIELDS:
            items = [k.strip() for k in raw.split(",") if k.strip()]
            if not items:
                raise ConfigError(
                    f"environment variable {ENV_PREFIX}{name.upper()} is set but empty; unset "
                    f"it, or put a value in it (comma-separated for several)"
                )
            out[name] = items
        else:
            out[name] = raw
    return out


def _check(data: dict[str, Any], lines: dict[str, int], where: str | None) -> ProxyConfig:
    try:
        return ProxyConfig.model_validate(data)
    except ValidationError as exc:
        what, line = validation_message(exc, lines)
        raise ConfigError(what, path=where or "configuration", line=line) from None
