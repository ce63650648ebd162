"""`pluralism serve`: the proxy from the command line.

Imported by `pluralism.cli` on every CLI start, so it imports nothing heavy at module level;
FastAPI, uvicorn and the models load inside `serve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

DEFAULT_CONFIG = Path("pluralism.yaml")


def serve(
    upstream: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the OpenAI-compatible chatbot to wrap, e.g. "
            "http://127.0.0.1:8000/v1 (default: the embedded model)."
        ),
    ] = None,
    upstream_model: Annotated[
        str | None, typer.Option(help="The model name the upstream serves.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="A pluralism.yaml (default: ./pluralism.yaml if present)."),
    ] = None,
    policies: Annotated[
        Path | None, typer.Option(help="Directory of rule files (default: shipped policies).")
    ] = None,
    communities: Annotated[
        Path | None,
        typer.Option(help="Directory of community YAML files (default: shipped pool)."),
    ] = None,
    values: Annotated[
        Path | None,
        typer.Option(help="Values catalogue Overton answers name (default: shipped values)."),
    ] = None,
    rules_embedder: Annotated[
        list[Path] | None,
        typer.Option(
            help="Model directory to recall rules and values with, e.g. from `pluralism "
            "policies tune`; repeat for an ensemble (default: bundled MiniLM)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [8080].")] = None,
    default_mode: Annotated[
        str | None,
        typer.Option(
            help="Mode for model `pluralism`: overton | steerable | distributional | "
            "rules [overton]."
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="Log level [info].")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes, each loading its own models [1]; one per core."),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible proxy in front of an existing chatbot."""
    from pluralism.server._config import load_config

    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    cfg = load_config(
        path,
        overrides={
            "upstream": upstream,
            "upstream_model": upstream_model,
            "policies": policies,
            "communities": communities,
            "values": values,
            "rules_embedder": rules_embedder or None,
            "host": host,
            "port": port,
            "default_mode": default_mode,
            "log_level": log_level,
            "workers": workers,
        },
    )
    _precheck(cfg)
    import logging

    import uvicorn

    from pluralism.server._app import create_app, worker_env

    logging.basicConfig(level=cfg.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # bm25s sets its own logger to DEBUG; the operator's level should decide.
    logging.getLogger("bm25s").setLevel(max(logging.getLogger().level, logging.INFO))
    options: dict[str, Any] = {
        "host": cfg.host,
        "port": cfg.port,
        "log_level": cfg.log_level,
        "access_log": cfg.access_log,
        # uvloop and httptools when installed: they halve the proxy's own overhead.
        "loop": "auto",
        "http": "auto",
        "timeout_graceful_shutdown": cfg.shutdown_timeout_s,
        "limit_concurrency": cfg.max_connections,
    }
    if cfg.workers == 1:
        uvicorn.run(create_app(cfg), **options)
        return
    # Worker processes import the app by name and read the resolved config from their
    # environment; metrics go through files that /metrics of any worker adds up.
    with worker_env(cfg):
        uvicorn.run(
            "pluralism.server._app:worker_app", factory=True, workers=cfg.workers, **options
        )


def _precheck(cfg: object) -> None:
    """Fail before binding the port on broken files, so the operator sees one clear line."""
    from pluralism.config import default_dir, load_communities
    from pluralism.embedding import check_model_dir
    from pluralism.errors import ConfigError, InputError
    from pluralism.rules import load_policies
    from pluralism.server._config import ProxyConfig

    assert isinstance(cfg, ProxyConfig)
    if cfg.upstream and not cfg.upstream_model:
        raise ConfigError(
            "--upstream is set but --upstream-model is not; name the model the upstream serves"
        )
    pool = load_communities(cfg.communities or default_dir("communities"))
    known = [c.id for c in pool]
    # With Redis and no policies directory the rules come from Redis alone; the values
    # catalogue is always read from files.
    names: list[Literal["policies", "values"]] = (
        ["values"] if cfg.redis_url and not cfg.policies else ["policies", "values"]
    )
    for name in names:
        load_policies(cfg.rule_dir(name), known_communities=known).raise_for_errors()
    for model in cfg.rules_embedder:
        try:
            check_model_dir(model)
        except InputError as exc:
            raise ConfigError(f"rules_embedder: {exc}") from None
