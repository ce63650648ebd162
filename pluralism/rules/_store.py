"""The `RuleStore` seam and the snapshot-swapping base both stores share."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pluralism.embedding import Vectors
from pluralism.errors import InputError
from pluralism.rules._index import RuleIndex, rule_digest
from pluralism.types import Rule, RuleHit, RuleScope

log = logging.getLogger(__name__)

ChangeListener = Callable[[RuleIndex], None]


@runtime_checkable
class RuleStore(Protocol):
    """Holds rules and their vectors; every edit makes a new immutable `RuleIndex` snapshot.

    `version` is the content hash of the current rules; `subscribe` registers a callback run with
    the new snapshot after every change, whether made here or (Redis) by another replica.
    """

    @property
    def version(self) -> str: ...

    @property
    def healthy(self) -> bool: ...

    def snapshot(self) -> RuleIndex: ...

    def add(self, rule: Rule, vector: Vectors) -> str: ...

    def replace(self, rule: Rule, vector: Vectors) -> str: ...

    def remove(self, rule_id: str) -> str: ...

    def replace_all(self, rules: Sequence[Rule], vectors: Vectors) -> str: ...

    def search(self, vector: Vectors, k: int, scope: RuleScope | None = None) -> list[RuleHit]: ...

    def subscribe(self, listener: ChangeListener) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def apply_edits(
    index: RuleIndex,
    upserts: Mapping[str, tuple[Rule, Vectors]],
    removals: Sequence[str] = (),
    *,
    ivf_min_rows: int | None = None,
) -> RuleIndex:
    """A new snapshot with `upserts` put (in place, or appended) and `removals` dropped."""
    gone = set(removals)
    rules: list[Rule] = []
    keep: list[int] = []
    for i, rule in enumerate(index.rules):
        if rule.id in gone or rule.id in upserts:
            continue
        rules.append(rule)
        keep.append(i)
    old = index.dense.rows(np.asarray(keep, dtype=np.int64))
    digests = [index.digests[i] for i in keep]
    new_rules = [r for r, _ in upserts.values()]
    new_vecs = [v for _, v in upserts.values()]
    vectors = np.concatenate([old, np.asarray(new_vecs, dtype=np.float32)]) if new_vecs else old
    rules.extend(new_rules)
    digests.extend(rule_digest(r) for r in new_rules)
    return RuleIndex(rules, vectors, digests=digests, ivf_min_rows=ivf_min_rows)


class SnapshotStore:
    """Snapshot swapping, searching and change fan-out; stores add persistence on top."""

    def __init__(self, dim: int, *, ivf_min_rows: int | None = None) -> None:
        self.dim = dim
        self._ivf_min_rows = ivf_min_rows
        self._index = RuleIndex.empty(dim)
        self._listeners: list[ChangeListener] = []
        # Serialises writers; readers take `self._index` without a lock (one atomic reference).
        self._write_lock = threading.RLock()

    @property
    def version(self) -> str:
        return self._index.version

    @property
    def healthy(self) -> bool:
        return True

    def snapshot(self) -> RuleIndex:
        return self._index

    def search(self, vector: Vectors, k: int, scope: RuleScope | None = None) -> list[RuleHit]:
        return self._index.dense_search(np.asarray(vector, dtype=np.float32), k, scope)

    def subscribe(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def _swap(self, index: RuleIndex) -> None:
        changed = index.version != self._index.version
        self._index = index
        if not changed:
            return
        for listener in list(self._listeners):
            try:
                listener(index)
            except Exception:  # a broken listener must not stop the swap reaching others
                log.exception("rule change listener failed")

    def _check_vector(self, vector: Vectors) -> Vectors:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape != (self.dim,):
            raise InputError(
                f"A rule vector has {v.shape[0]} dimensions but this store holds {self.dim}: "
                "embed rules with the store's embedder."
            )
        return v

    def _check_new(self, rule: Rule) -> None:
        if rule.id in self._index.position:
            raise InputError(f"Rule {rule.id!r} already exists: use replace() to change it.")

    def _check_known(self, rule_id: str) -> None:
        if rule_id not in self._index.position:
            raise InputError(
                f"There is no rule {rule_id!r}: check the id, or use add() for a new rule."
            )
