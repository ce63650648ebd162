"""`ProxyState`: everything one proxy holds (models, rules, keys, metrics), in one object.

Nothing lives on module globals or on the app: two apps in one process (tests do this) are
fully independent. Models load in the background so `/healthz` answers while they do, and
`/readyz` says when they are done.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from pluralism._redact import redact
from pluralism.errors import ConfigError, InputError
from pluralism.models._http import LeanTransport, lean_client
from pluralism.server._config import ProxyConfig
from pluralism.server._metrics import Metrics
from pluralism.server._timing import TimedModel

log = logging.getLogger("pluralism.server")


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_hashes(keys: list[str]) -> list[bytes]:
    """Config keys are plain or `sha256:<hex>` (so a file need not hold the key itself)."""
    out = []
    for key in keys:
        if key.startswith("sha256:"):
            try:
                digest = bytes.fromhex(key[7:])
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise ConfigError(
                    "an api_keys entry starting with sha256: must be followed by 64 hex digits; "
                    "fix it or give the key itself"
                )
            out.append(digest)
        else:
            out.append(hash_key(key))
    return out


REDIS_RETRY_MAX_S = 10.0


@dataclass
class ProxyState:
    config: ProxyConfig
    metrics: Metrics = field(default_factory=Metrics)
    key_hashes: list[bytes] = field(default_factory=list)
    # Filled by `load`; `pluralism` stays None until the models are ready.
    pluralism: Any = None
    rules: Any = None
    values: Any = None  # the values catalogue, a RuleMemory read from files
    meta: TimedModel | None = None
    upstream_label: str = "local"
    load_error: str | None = None
    # Requests running models in this process now (admission control; one event loop).
    model_requests: int = 0
    # While the start waits for something (Redis), what and why, for /readyz.
    waiting: str | None = None
    closing: threading.Event = field(default_factory=threading.Event)
    # The upstream's HTTP client, bound to the serving loop on first use.
    client: httpx.AsyncClient | None = None
    started: float = field(default_factory=time.time)

    @classmethod
    def from_config(cls, config: ProxyConfig) -> ProxyState:
        hashes = key_hashes([k.get_secret_value() for k in config.api_keys])
        # The plain keys go no further than this: the state keeps only their hashes.
        hashed = [SecretStr(f"sha256:{h.hex()}") for h in hashes]
        return cls(config.model_copy(update={"api_keys": hashed}), key_hashes=hashes)

    @property
    def ready(self) -> bool:
        return self.pluralism is not None

    def check_key(self, presented: str | None) -> bool:
        """Constant time per stored key, and every key is tried, so timing says nothing."""
        if not self.key_hashes:
            return True
        if not presented:
            return False
        digest = hash_key(presented)
        found = False
        for stored in self.key_hashes:
            found |= hmac.compare_digest(digest, stored)
        return found

    def load(self, embedder: Any = None) -> None:
        """Build the pool, the rule memory and the models (blocking: seconds for MiniLM)."""
        from pluralism._calls import adapter_names, answer_memory
        from pluralism.config import default_dir, load_communities
        from pluralism.core import Pluralism
        from pluralism.embedding import default_embedder
        from pluralism.models import ModelPool, OpenAIChatModel

        cfg = self.config
        pool = load_communities(cfg.communities or default_dir("communities"))
        emb = embedder if embedder is not None else default_embedder()
        models = ModelPool(threads=cfg.settings.threads)
        for community in pool:
            inner = models.get(community.model)
            if not isinstance(inner, TimedModel):
                inner = TimedModel(inner)
                models.register(community.model, inner)
            # Load its adapter now: the first request routed to it would pay for it otherwise,
            # and a damaged one should stop the start, with its name.
            adapter_names(inner, [community])
            # Likewise its answers file: embedded once here, and a broken one names its line.
            answer_memory(community, emb)
        if cfg.upstream:
            if not cfg.upstream_model:
                raise ConfigError(
                    "`upstream` is set but `upstream_model` is not; name the model the upstream "
                    "serves (--upstream-model)"
                )
            key = cfg.upstream_api_key.get_secret_value() if cfg.upstream_api_key else None
            transport = LeanTransport()
            self.client = lean_client(transport)
            upstream = OpenAIChatModel(
                cfg.upstream,
                cfg.upstream_model,
                api_key=key or None,
                timeout_s=cfg.upstream_timeout_s,
                max_retries=cfg.upstream_max_retries,
                client=self.client,
                lean=transport,
            )
            self.upstream_label = upstream._upstream
            meta = TimedModel(upstream, on_call=self.metrics.upstream.observe)
        else:
            inner = models.get(cfg.settings.meta_model)
            meta = inner if isinstance(inner, TimedModel) else TimedModel(inner)
            self.upstream_label = f"local:{meta.model_id}"
        recaller = emb
        if cfg.rules_embedder:
            from pluralism.embedding import load_embedder

            try:
                recaller = load_embedder(cfg.rules_embedder)
            except InputError as exc:
                raise ConfigError(f"rules_embedder: {exc}") from exc
        self.rules = self._rules(recaller, [c.id for c in pool])
        self.values = self._values(recaller, [c.id for c in pool])
        self.meta = meta
        # Start the embedded engines now: a file llama.cpp cannot load stops the start, with
        # its name, instead of failing the first request.
        for model in models.models().values():
            start = getattr(model, "start", None)
            if callable(start):
                start()
        self.pluralism = Pluralism(
            pool,
            embedder=emb,
            models=models,
            meta=meta,
            rules=self.rules,
            values=self.values,
            settings=cfg.settings,
        )
        # Warm the embedders: the first encode compiles kernels and would land on a request.
        emb.encode(["warm up"])
        if recaller is not emb:
            recaller.encode(["warm up"])

    def _rules(self, embedder: Any, communities: list[str]) -> Any:
        cfg = self.config
        if cfg.redis_url:
            from pluralism.errors import RuleStoreError
            from pluralism.rules import RuleMemory

            # The policy files, when configured, are the source of truth: from_redis pushes
            # them when Redis holds something else, and (watched) every good edit after.
            directory = self.config.rule_dir("policies") if cfg.policies else None
            for attempt in itertools.count(1):
                try:
                    memory = RuleMemory.from_redis(
                        cfg.redis_url,
                        embedder=embedder,
                        directory=directory,
                        watch=cfg.watch_policies and directory is not None,
                        known_communities=communities,
                    )
                    self.waiting = None
                    return memory
                except RuleStoreError as exc:
                    # from_redis adds a hint naming its own option; the store's sentence is
                    # the cause.
                    cause = exc.__cause__ if isinstance(exc.__cause__, RuleStoreError) else exc
                    if not cause.retryable:
                        raise RuleStoreError(str(cause)) from None
                    # Redis down at start (a replica restarted with it, say): wait for it
                    # with backoff, saying so in /readyz, rather than stay down for good.
                    delay = min(0.5 * 2 ** (attempt - 1), REDIS_RETRY_MAX_S)
                    self.waiting = f"{cause} Retrying in {delay:g} s (attempt {attempt})."
                    log.warning("%s", self.waiting)
                    if self.closing.wait(delay):
                        raise RuleStoreError("stopped while waiting for Redis") from None
            raise AssertionError("unreachable")
        return self._from_files("policies", embedder, communities)

    def _values(self, embedder: Any, communities: list[str]) -> Any:
        return self._from_files("values", embedder, communities)

    def _from_files(
        self, name: Literal["policies", "values"], embedder: Any, communities: list[str]
    ) -> Any:
        """A watched `RuleMemory` of the configured directory, else the shipped `name/`."""
        from pluralism.rules import RuleMemory

        return RuleMemory.from_path(
            self.config.rule_dir(name),
            embedder=embedder,
            watch=self.config.watch_policies,
            known_communities=communities,
        )

    def readiness(self) -> tuple[bool, list[str], dict[str, Any]]:
        reasons: list[str] = []
        checks: dict[str, Any] = {"models": self.ready, "upstream": self.upstream_label}
        if self.load_error:
            reasons.append(f"startup failed: {self.load_error}")
        elif not self.ready and self.waiting:
            reasons.append(self.waiting)
        elif not self.ready:
            reasons.append("models are still loading")
        if self.rules is not None:
            status = self.rules.status()
            checks["rules"] = {
                "version": self.rules.version,
                "embedder": self.rules.embedder.model_id,
                **_plain(status),
            }
            if self.values is not None:
                checks["values"] = {"version": self.values.version, "count": len(self.values.rules)}
            if not self.rules.healthy:
                reasons.append(
                    "the Redis rule store is unreachable; serving the last rules it sent"
                    if self.config.redis_url
                    else "the rule store is unhealthy"
                )
        elif self.ready:
            reasons.append("no rule memory is loaded")
        # /readyz needs no key: an exception quoting a Redis URL must not hand out its password.
        return not reasons, [redact(r) for r in reasons], _redacted(checks)

    def close(self) -> None:
        self.closing.set()
        for name, memory in (("rule memory", self.rules), ("values catalogue", self.values)):
            if memory is None:
                continue
            try:
                memory.close()
            except Exception:
                log.exception("Closing the %s failed", name)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def _plain(status: dict[str, Any]) -> dict[str, Any]:
    """Only JSON scalars from a store's status (it may hold clients or paths)."""
    return {
        k: v if isinstance(v, str | int | float | bool) or v is None else str(v)
        for k, v in status.items()
    }
