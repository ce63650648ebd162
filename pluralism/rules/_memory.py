"""`RuleMemory`: the rule memory the graph recalls from, over any `RuleStore`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pluralism.embedding import Embedder, Vectors, default_embedder
from pluralism.errors import ConfigError, RuleStoreError
from pluralism.rules._files import DEFAULT_COMMUNITIES, ParseCache, load_policies
from pluralism.rules._index import FusionWeights, RuleIndex, combine_digests, rule_digest
from pluralism.rules._memory_store import InMemoryRuleStore
from pluralism.rules._store import RuleStore
from pluralism.rules._vectors import VectorCache
from pluralism.rules._watch import AuditLog, PolicyWatcher, default_audit_path
from pluralism.rules.situate import PrincipleCache
from pluralism.types import Rule, RuleHit, RuleScope

log = logging.getLogger(__name__)

# Measured with MiniLM on the default policies (each example held out of its own rule's vector):
# the gold rule scores >= 0.21 for 90% of examples, while small talk ("tell me a joke") reaches a
# median best of 0.16 against unrelated rules. A recalled-but-irrelevant rule only adds a line of
# context; a missed one drops a safeguard, so the cut leans low.
DEFAULT_THRESHOLD = 0.2
# Longer prompts are cut before embedding and tokenising: the rule signal is at the start, and a
# pasted several-MB document must not cost seconds per request.
MAX_QUERY_CHARS = 4000


class RuleMemory:
    """Recall of rules for a prompt: always-rules in scope plus the top-k hybrid hits.

    Build one with `from_path` (policy files, optionally hot-reloaded), `from_redis` (shared by
    replicas) or `empty`. Every edit changes `version`, a content hash the trace records.
    """

    def __init__(
        self,
        store: RuleStore,
        embedder: Embedder,
        *,
        weights: FusionWeights | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        cache_dir: Path | None = None,
        cache_vectors: bool = True,
        audit_log: AuditLog | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.weights = weights or FusionWeights()
        self.threshold = threshold
        self.vectors = VectorCache(embedder, cache_dir, enabled=cache_vectors)
        self.audit = audit_log
        self.principle_cache = PrincipleCache()
        self.directory: Path | None = None
        self.known_communities: Iterable[str] | None = DEFAULT_COMMUNITIES
        self.known_populations: Iterable[str] | None = None
        self._watcher: PolicyWatcher | None = None
        # Each policy file's last parse: a reload re-reads only the files that changed.
        self._parsed: ParseCache = {}

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def empty(cls, embedder: Embedder | None = None, **kwargs: Any) -> RuleMemory:
        emb = embedder or default_embedder()
        return cls(InMemoryRuleStore(emb.dim), emb, **kwargs)

    @classmethod
    def from_rules(
        cls, rules: Sequence[Rule], embedder: Embedder | None = None, **kwargs: Any
    ) -> RuleMemory:
        mem = cls.empty(embedder, **kwargs)
        mem.load(rules, source="api")
        return mem

    @classmethod
    def from_path(
        cls,
        directory: str | Path,
        *,
        embedder: Embedder | None = None,
        watch: bool = False,
        known_communities: Iterable[str] | None = DEFAULT_COMMUNITIES,
        known_populations: Iterable[str] | None = None,
        audit_log: str | Path | None = None,
        **kwargs: Any,
    ) -> RuleMemory:
        """Rules from the `*.yaml` files in `directory`; a broken file raises `ConfigError`.

        With `watch=True` later edits are linted and swapped in while serving; the audit log
        defaults to `<directory>.audit.jsonl` beside it when watching, else the user state
        directory.
        """
        root = Path(directory)
        parsed: ParseCache = {}
        loaded = load_policies(
            root,
            known_communities=known_communities,
            known_populations=known_populations,
            cache=parsed,
        )
        loaded.raise_for_errors()
        emb = embedder or default_embedder()
        audit = AuditLog(
            audit_log if audit_log is not None else default_audit_path(root, watch=watch)
        )
        mem = cls(InMemoryRuleStore(emb.dim), emb, audit_log=audit, **kwargs)
        mem._parsed = parsed
        mem.directory = root
        mem.known_communities, mem.known_populations = known_communities, known_populations
        mem.load(loaded.rules, files=loaded.files, source="start")
        if watch:
            mem.watch()
        return mem

    @classmethod
    def from_redis(
        cls,
        url: str,
        *,
        embedder: Embedder | None = None,
        fallback_to_memory: bool = False,
        namespace: str = "pluralism:rules",
        connect_timeout_s: float = 2.0,
        directory: str | Path | None = None,
        watch: bool = False,
        known_communities: Iterable[str] | None = DEFAULT_COMMUNITIES,
        known_populations: Iterable[str] | None = None,
        audit_log: str | Path | None = None,
        **kwargs: Any,
    ) -> RuleMemory:
        """Rules shared through Redis; unreachable Redis raises `RuleStoreError` or falls back.

        With `directory`, the policy files there are the source of truth: they are pushed to
        Redis at start when their content differs from what Redis holds (so restarting many
        replicas costs one write, not one each), and with `watch=True` every good edit is
        pushed and reaches all replicas.
        """
        from pluralism.rules._redis_store import RedisRuleStore

        emb = embedder or default_embedder()
        store: RuleStore
        try:
            store = RedisRuleStore(
                url,
                dim=emb.dim,
                embedder_id=emb.model_id,
                namespace=namespace,
                connect_timeout_s=connect_timeout_s,
            )
        except RuleStoreError as exc:
            if not fallback_to_memory:
                # The hint names this method's option, so it is added here; callers with
                # options of their own (the proxy) report the store's own sentence, the cause.
                raise RuleStoreError(
                    f"{exc} Or pass fallback_to_memory=True to serve rules from memory."
                ) from exc
            log.warning("%s Serving rules from memory instead; edits stay in this process.", exc)
            store = InMemoryRuleStore(emb.dim)
        if directory is None:
            return cls(store, emb, **kwargs)
        root = Path(directory)
        parsed: ParseCache = {}
        loaded = load_policies(
            root,
            known_communities=known_communities,
            known_populations=known_populations,
            cache=parsed,
        )
        try:
            loaded.raise_for_errors()
        except ConfigError:
            store.close()
            raise
        audit = AuditLog(
            audit_log if audit_log is not None else default_audit_path(root, watch=watch)
        )
        mem = cls(store, emb, audit_log=audit, **kwargs)
        mem._parsed = parsed
        mem.directory = root
        mem.known_communities, mem.known_populations = known_communities, known_populations
        if combine_digests([rule_digest(r) for r in loaded.rules]) != store.version:
            mem.load(loaded.rules, files=loaded.files, source="start")
        if isinstance(store, RedisRuleStore):
            # The files are the source of truth: after an outage (Redis restarted empty, or an
            # edit refused while it was down), publish them again.
            store.on_reconnect = mem._republish
        if watch:
            mem.watch()
        return mem

    # -- reading ----------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self.store.version

    @property
    def rules(self) -> list[Rule]:
        return list(self.store.snapshot().rules)

    @property
    def healthy(self) -> bool:
        return self.store.healthy

    def status(self) -> dict[str, Any]:
        return {**self.store.status(), "watching": str(self.directory) if self._watcher else None}

    def get(self, rule_id: str) -> Rule | None:
        snap = self.store.snapshot()
        pos = snap.position.get(rule_id)
        return None if pos is None else snap.rules[pos]

    def recall(
        self,
        prompt: str,
        *,
        k: int = 10,
        scope: RuleScope | None = None,
        threshold: float | None = None,
    ) -> list[RuleHit]:
        """`always` rules in scope plus the top-`k` rules above `threshold`, by priority."""
        snap: RuleIndex = self.store.snapshot()
        if len(snap) == 0 or k < 0:
            return []
        query = prompt[:MAX_QUERY_CHARS]
        vector = self.embedder.encode([query])[0]
        return snap.search(
            query,
            np.asarray(vector, dtype=np.float32),
            k=k,
            scope=scope,
            threshold=self.threshold if threshold is None else threshold,
            weights=self.weights,
        )

    async def arecall(
        self,
        prompt: str,
        *,
        k: int = 10,
        scope: RuleScope | None = None,
        threshold: float | None = None,
    ) -> list[RuleHit]:
        return await asyncio.to_thread(self.recall, prompt, k=k, scope=scope, threshold=threshold)

    # -- writing ----------------------------------------------------------------------------
    def rule_vectors(self, rules: Sequence[Rule]) -> Vectors:
        """One unit vector per rule: its text plus the mean of its examples.

        A rule text is long and general, a prompt short and concrete; MiniLM puts the two far
        apart (cosine ~0.1-0.3 for a matching pair). Adding the examples' centroid moves the rule
        towards how users actually ask: on the default policies, with each example held out,
        top-3 recall of its rule rises from 92% to 98% and the median score from 0.28 to 0.35.
        """
        texts = [r.text for r in rules] + [e for r in rules for e in r.examples]
        encoded = (
            self.vectors.encode(texts) if texts else np.zeros((0, self.embedder.dim), np.float32)
        )
        out = np.array(encoded[: len(rules)], dtype=np.float32)
        at = len(rules)
        for i, rule in enumerate(rules):
            n = len(rule.examples)
            if n:
                out[i] += encoded[at : at + n].mean(axis=0)
                at += n
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: Vectors = (out / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        return unit

    def _vector(self, rule: Rule) -> Vectors:
        row: Vectors = self.rule_vectors([rule])[0]
        return row

    def add(self, rule: Rule) -> str:
        version = self.store.add(rule, self._vector(rule))
        self._audit(source="api", added=[rule.id])
        return version

    def replace(self, rule: Rule) -> str:
        version = self.store.replace(rule, self._vector(rule))
        self._audit(source="api", changed=[rule.id])
        return version

    def remove(self, rule_id: str) -> str:
        version = self.store.remove(rule_id)
        self._audit(source="api", removed=[rule_id])
        return version

    def load(
        self, rules: Sequence[Rule], *, files: Sequence[str] = (), source: str = "api"
    ) -> dict[str, list[str]]:
        """Swap the whole rule set for `rules` at once; returns the added/changed/removed ids."""
        before = {r.id: r for r in self.store.snapshot().rules}
        after = {r.id: r for r in rules}
        diff = {
            "added": sorted(after.keys() - before.keys()),
            "changed": sorted(i for i in after.keys() & before.keys() if after[i] != before[i]),
            "removed": sorted(before.keys() - after.keys()),
        }
        vectors = self.rule_vectors(rules)
        previous = self.version
        self.store.replace_all(list(rules), vectors)
        if self.version != previous or source == "start":
            self._audit(source=source, files=list(files), previous_version=previous, **diff)
        return diff

    def _audit(self, **entry: Any) -> None:
        if self.audit is not None:
            self.audit.append({"status": "applied", "version": self.version, **entry})

    # -- hot reload -------------------------------------------------------------------------
    def reload(self, files: Sequence[str] = ()) -> bool:
        """Re-read the policies directory; a broken edit is refused and the old rules stay."""
        if self.directory is None:
            raise RuleStoreError(
                "This rule memory was not loaded from a directory: use from_path()."
            )
        loaded = load_policies(
            self.directory,
            known_communities=self.known_communities,
            known_populations=self.known_populations,
            cache=self._parsed,
        )
        if loaded.errors:
            problems = [str(p) for p in loaded.errors]
            log.error(
                "Refused a policy change (%d problem(s), first: %s); still serving version %s",
                len(problems),
                problems[0],
                self.version,
            )
            if self.audit is not None:
                self.audit.append(
                    {
                        "status": "refused",
                        "files": list(files),
                        "version": self.version,
                        "problems": problems,
                    }
                )
            return False
        try:
            self.load(loaded.rules, files=files or loaded.files, source="reload")
        except Exception as exc:  # e.g. Redis down mid-write: keep serving what we have
            log.error(
                "Could not apply a policy change (%s); still serving version %s", exc, self.version
            )
            return False
        return True

    def _republish(self) -> None:
        if self.directory is not None and self.reload(["(Redis reconnected)"]):
            log.info("Published the policy files to Redis again (version %s)", self.version)

    def watch(self) -> None:
        """Start watching the policies directory (from `from_path`) for edits."""
        if self._watcher is None and self.directory is not None:
            self._watcher = PolicyWatcher(self.directory, self._on_files_changed)

    def _on_files_changed(self, files: list[str]) -> None:
        self.reload(files)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self.store.close()

    def __enter__(self) -> RuleMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_rules(hits: Sequence[RuleHit]) -> str:
    """The "supplementary information" block the graph puts into drafts and the meta prompt."""
    if not hits:
        return ""
    lines = ["Supplementary information: rules that apply to this request (most important first)."]
    for n, hit in enumerate(hits, 1):
        source = f" (source: {hit.rule.source})" if hit.rule.source else ""
        lines.append(f"{n}. {hit.rule.text.strip()}{source}")
    return "\n".join(lines)
