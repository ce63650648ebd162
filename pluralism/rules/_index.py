"""One immutable snapshot of the rules: dense + lexical indexes, scope filter and fusion.

A snapshot is built whole and swapped in with one reference assignment, so a reader never sees
half an edit and no lock is held while searching.

Fusion is a weighted mix of the cosine and the normalised BM25 score, both weights set by the
query's script. Measured on the bench (bench/bench_rules.py): reciprocal-rank fusion with equal
weights *lost* to bigram BM25 alone on OPO (recall@10 0.70-0.92 vs 0.976) because an English
embedder ranks Chinese rules almost at random and RRF gives that noise half the vote; a fixed
score mix that suits English (Overton: dense wins) drowns the lexical signal on Chinese. So the
lexical weight rises and the dense weight falls with the query's share of CJK characters: the
bundled MiniLM recalls OPO's gold rule in its top 10 for 25% of questions, and any dense weight
for a Chinese question (tried 0.02-0.1 of the lexical one, and max-over-chunk rule vectors)
only costs recall. Fused recall@1/@10: OPO 0.851/0.991 (lexical alone 0.849/0.991), Overton
0.916/0.714 (dense alone 0.904/0.698).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pluralism.errors import InputError
from pluralism.rules._dense import DenseIndex, Ids, Vectors
from pluralism.rules._lexical import LexicalIndex, cjk_share, word_tokens
from pluralism.types import Rule, RuleHit, RuleScope

Scores = npt.NDArray[np.float32]

# From this many rules on, the lexical index is built in a background thread.
LAZY_LEXICAL_ROWS = 100_000
# How many rows each side proposes when the memory is too large to score every row.
_CANDIDATES = 256


@dataclass(frozen=True)
class FusionWeights:
    """Weights of the fused score; the `_cjk` ones apply to queries written in CJK scripts.

    A query mixing scripts gets weights in between, by its share of CJK characters. The default
    embedder reads English only, so `dense_cjk` is 0; with a multilingual embedder raise it to
    `dense` and lower `lexical_cjk`.
    """

    dense: float = 1.0
    lexical: float = 0.2
    lexical_cjk: float = 10.0
    dense_cjk: float = 0.0

    def lexical_for(self, query: str) -> float:
        share = cjk_share(query)
        return self.lexical + share * (self.lexical_cjk - self.lexical)

    def for_query(self, query: str) -> tuple[float, float]:
        """(dense, lexical) weights for this query; never both zero."""
        share = cjk_share(query)
        dense = self.dense + share * (self.dense_cjk - self.dense)
        lexical = self.lexical + share * (self.lexical_cjk - self.lexical)
        if dense + lexical <= 0:
            return 1.0, 0.0
        return dense, lexical


def json_digest(raw: bytes) -> int:
    """Digest of a rule's canonical JSON (what `Rule.model_dump_json()` writes)."""
    return int.from_bytes(hashlib.blake2b(raw, digest_size=16).digest())


def rule_digest(rule: Rule) -> int:
    return json_digest(rule.model_dump_json().encode())


def combine_digests(digests: Sequence[int] | npt.NDArray[np.object_]) -> str:
    """Order-free content hash of a set of rules: XOR of each rule's digest."""
    acc = 0
    for d in digests:
        acc ^= int(d)
    return f"{acc:032x}"


def in_scope(rule: RuleScope, request: RuleScope | None) -> bool:
    """A rule applies unless it names values on an axis and the request shares none of them.

    A request with no scope at all (None) sees every rule: authoring tools use that.
    """
    if request is None:
        return True
    return (
        (not rule.communities or bool(set(rule.communities) & set(request.communities)))
        and (not rule.populations or bool(set(rule.populations) & set(request.populations)))
        and (not rule.tags or bool(set(rule.tags) & set(request.tags)))
    )


class RuleIndex:
    """Rules, their dense and lexical indexes, and the content version, frozen together."""

    def __init__(
        self,
        rules: Sequence[Rule],
        vectors: Vectors,
        *,
        digests: Sequence[int] | None = None,
        ivf_min_rows: int | None = None,
        dense: DenseIndex | None = None,
    ) -> None:
        if len(rules) != len(vectors):
            raise ValueError(f"{len(rules)} rules but {len(vectors)} vectors")
        if len({r.id for r in rules}) != len(rules):
            raise InputError("Two rules share an id: give every rule a unique id.")
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.position = {r.id: i for i, r in enumerate(self.rules)}
        kwargs = {} if ivf_min_rows is None else {"ivf_min_rows": ivf_min_rows}
        vecs = np.asarray(vectors, dtype=np.float32)
        if vecs.ndim != 2:
            raise ValueError(f"vectors must be a 2-D array, not shape {vecs.shape}")
        self.dense = dense if dense is not None else DenseIndex(vecs, **kwargs)
        self._lexical: LexicalIndex | None = None
        if len(self.rules) < LAZY_LEXICAL_ROWS:
            self._lexical = LexicalIndex([r.text for r in self.rules])
        else:
            # Tokenising a million rules takes minutes on two cores: serve dense-only recall at
            # once and add the lexical side when its index is ready (`lexical_ready`).
            self._lexical_thread = threading.Thread(
                target=self._build_lexical, name="rules-lexical", daemon=True
            )
            self._lexical_thread.start()
        self.digests = list(digests) if digests is not None else [rule_digest(r) for r in rules]
        self.version = combine_digests(self.digests)
        self._always = [i for i, r in enumerate(self.rules) if r.always]
        self._scoped = any(
            r.scope.communities or r.scope.populations or r.scope.tags for r in self.rules
        )

    def _build_lexical(self) -> None:
        self._lexical = LexicalIndex([r.text for r in self.rules])

    @property
    def lexical_ready(self) -> bool:
        return self._lexical is not None

    def wait_lexical(self, timeout: float | None = None) -> bool:
        """Block until the lexical index exists (large memories build it in the background)."""
        thread = getattr(self, "_lexical_thread", None)
        if thread is not None:
            thread.join(timeout)
        return self.lexical_ready

    @classmethod
    def empty(cls, dim: int) -> RuleIndex:
        return cls([], np.zeros((0, dim), dtype=np.float32))

    def vectors(self) -> Vectors:
        return self.dense.rows(np.arange(len(self.rules), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.rules)

    def _allowed(self, ids: Ids, scope: RuleScope | None) -> Ids:
        if scope is None or not self._scoped:
            return ids
        keep = [i for i in ids if in_scope(self.rules[int(i)].scope, scope)]
        return np.asarray(keep, dtype=np.int64)

    def dense_search(self, vector: Vectors, k: int, scope: RuleScope | None) -> list[RuleHit]:
        """Top-k rules by cosine alone, in scope (the `RuleStore.search` seam)."""
        ids, scores = self.dense.candidates(vector, max(k * 4, _CANDIDATES))
        by_id = dict(zip(ids.tolist(), scores.tolist(), strict=True))
        kept = self._allowed(ids, scope)[:k]
        return [
            RuleHit(rule=self.rules[int(i)], score=by_id[int(i)], dense=by_id[int(i)], why="dense")
            for i in kept
        ]

    def search(
        self,
        query: str,
        vector: Vectors,
        *,
        k: int,
        scope: RuleScope | None,
        threshold: float,
        weights: FusionWeights,
    ) -> list[RuleHit]:
        """`always` rules in scope plus the top-k fused hits above `threshold`, by priority."""
        if not self.rules:
            return []
        lexical = self._lexical
        if lexical is None:
            lex = np.zeros(len(self.rules), dtype=np.float32)
        else:
            lex = lexical.normalised(query)
        if not self.dense.quantised:
            ids = np.arange(len(self.rules), dtype=np.int64)
            dense = self.dense.all_scores(vector)
        else:
            dense_ids, _ = self.dense.candidates(vector, _CANDIDATES)
            lex_ids = np.argpartition(-lex, min(_CANDIDATES, len(lex) - 1))[:_CANDIDATES]
            ids = np.union1d(dense_ids, lex_ids).astype(np.int64)
            dense = np.zeros(len(self.rules), dtype=np.float32)
            dense[ids] = self.dense.scores_for(vector, ids)
        wd, wl = weights.for_query(query)
        fused = (wd * dense + wl * lex) / (wd + wl)

        always = self._allowed(np.asarray(self._always, dtype=np.int64), scope)
        ranked = ids[np.argsort(-fused[ids], kind="stable")]
        ranked = ranked[fused[ranked] >= threshold]
        chosen = [int(i) for i in always]
        pinned = set(chosen)
        allowed = self._allowed(ranked[: k * 4 + len(pinned)], scope)
        if len(allowed) < k + len(pinned) and len(ranked) > k * 4 + len(pinned):
            allowed = self._allowed(ranked, scope)
        picked = 0
        for i in allowed.tolist():
            if picked >= k:
                break
            if i not in pinned:
                chosen.append(i)
                picked += 1
        q_words = set(word_tokens(query))
        hits = []
        for i in chosen:
            rule = self.rules[i]
            hits.append(
                RuleHit(
                    rule=rule,
                    score=round(float(fused[i]), 4),
                    dense=round(float(dense[i]), 4),
                    lexical=round(float(lex[i]), 4),
                    why=_why(rule, float(dense[i]), float(lex[i]), q_words),
                )
            )
        hits.sort(key=lambda h: (-h.rule.priority, -h.score))
        return hits


def _why(rule: Rule, dense: float, lexical: float, q_words: set[str]) -> str:
    parts = ["always applies"] if rule.always else []
    parts.append(f"meaning {dense:.2f}")
    shared = sorted(q_words & set(word_tokens(rule.text)))
    if shared:
        parts.append("shared words: " + ", ".join(shared[:6]))
    elif lexical > 0:
        parts.append(f"characters match {lexical:.2f}")
    return "; ".join(parts)
