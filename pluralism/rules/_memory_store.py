"""The embedded default store: the snapshot lives in this process only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pluralism.embedding import Vectors
from pluralism.rules._index import RuleIndex
from pluralism.rules._store import SnapshotStore, apply_edits
from pluralism.types import Rule


class InMemoryRuleStore(SnapshotStore):
    """Rules and vectors in this process; edits rebuild the snapshot and swap it in."""

    kind = "memory"

    def add(self, rule: Rule, vector: Vectors) -> str:
        with self._write_lock:
            self._check_new(rule)
            v = self._check_vector(vector)
            self._swap(
                apply_edits(self._index, {rule.id: (rule, v)}, ivf_min_rows=self._ivf_min_rows)
            )
            return self.version

    def replace(self, rule: Rule, vector: Vectors) -> str:
        with self._write_lock:
            self._check_known(rule.id)
            v = self._check_vector(vector)
            self._swap(
                apply_edits(self._index, {rule.id: (rule, v)}, ivf_min_rows=self._ivf_min_rows)
            )
            return self.version

    def remove(self, rule_id: str) -> str:
        with self._write_lock:
            self._check_known(rule_id)
            self._swap(apply_edits(self._index, {}, [rule_id], ivf_min_rows=self._ivf_min_rows))
            return self.version

    def replace_all(self, rules: Sequence[Rule], vectors: Vectors) -> str:
        vecs = np.asarray(vectors, dtype=np.float32).reshape(len(rules), self.dim)
        index = RuleIndex(rules, vecs, ivf_min_rows=self._ivf_min_rows)
        with self._write_lock:
            self._swap(index)
            return self.version

    def status(self) -> dict[str, Any]:
        return {
            "store": self.kind,
            "healthy": True,
            "rules": len(self._index),
            "version": self.version,
            "lexical_ready": self._index.lexical_ready,
        }

    def close(self) -> None:
        self._listeners.clear()
