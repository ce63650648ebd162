"""One behaviour suite for every `RuleStore`; a store's test module subclasses it.

A subclass provides a `store` fixture (dim 4, empty) and, if its store shares state between
instances, a `peer` fixture.
"""

from __future__ import annotations

import numpy as np
import pytest

from pluralism.errors import InputError
from pluralism.rules import RuleIndex, RuleStore
from pluralism.types import Rule, RuleScope

DIM = 4


def vec(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def rule(rid: str, text: str = "", **kw: object) -> Rule:
    return Rule(id=rid, text=text or f"rule {rid}", **kw)  # type: ignore[arg-type]


class StoreConformance:
    def test_is_a_rule_store(self, store: RuleStore) -> None:
        assert isinstance(store, RuleStore)
        assert len(store.snapshot()) == 0
        assert store.healthy

    def test_add_then_search_finds_nearest(self, store: RuleStore) -> None:
        store.add(rule("a"), vec(1, 0, 0, 0))
        store.add(rule("b"), vec(0, 1, 0, 0))
        hits = store.search(vec(0.1, 1, 0, 0), k=1)
        assert [h.rule.id for h in hits] == ["b"]
        assert hits[0].score == pytest.approx(float(vec(0.1, 1, 0, 0)[1]), abs=1e-4)

    def test_every_edit_changes_version(self, store: RuleStore) -> None:
        seen = {store.version}
        store.add(rule("a"), vec(1, 0, 0, 0))
        seen.add(store.version)
        store.replace(rule("a", "changed text"), vec(1, 0, 0, 0))
        seen.add(store.version)
        store.add(rule("b"), vec(0, 1, 0, 0))
        seen.add(store.version)
        store.remove("b")
        assert len(seen) == 4

    def test_version_is_a_content_hash(self, store: RuleStore) -> None:
        empty = store.version
        store.add(rule("a"), vec(1, 0, 0, 0))
        with_a = store.version
        store.remove("a")
        assert store.version == empty
        store.add(rule("a"), vec(1, 0, 0, 0))
        assert store.version == with_a

    def test_replace_changes_text_and_vector(self, store: RuleStore) -> None:
        store.add(rule("a", "old"), vec(1, 0, 0, 0))
        store.add(rule("b"), vec(0, 1, 0, 0))
        store.replace(rule("a", "new"), vec(0, 0, 1, 0))
        (hit,) = store.search(vec(0, 0, 1, 0), k=1)
        assert (hit.rule.id, hit.rule.text) == ("a", "new")

    def test_remove_drops_rule(self, store: RuleStore) -> None:
        store.add(rule("a"), vec(1, 0, 0, 0))
        store.add(rule("b"), vec(0, 1, 0, 0))
        store.remove("a")
        assert [r.id for r in store.snapshot().rules] == ["b"]

    def test_duplicate_add_is_refused(self, store: RuleStore) -> None:
        store.add(rule("a"), vec(1, 0, 0, 0))
        with pytest.raises(InputError, match="already exists"):
            store.add(rule("a"), vec(0, 1, 0, 0))

    def test_unknown_ids_are_refused(self, store: RuleStore) -> None:
        with pytest.raises(InputError, match="no rule 'x'"):
            store.replace(rule("x"), vec(1, 0, 0, 0))
        with pytest.raises(InputError, match="no rule 'x'"):
            store.remove("x")

    def test_wrong_vector_size_is_refused(self, store: RuleStore) -> None:
        with pytest.raises(InputError, match="dimensions"):
            store.add(rule("a"), np.ones(DIM + 1, dtype=np.float32))

    def test_replace_all_swaps_everything(self, store: RuleStore) -> None:
        store.add(rule("old"), vec(1, 0, 0, 0))
        rules = [rule("x"), rule("y")]
        store.replace_all(rules, np.stack([vec(1, 0, 0, 0), vec(0, 1, 0, 0)]))
        assert sorted(r.id for r in store.snapshot().rules) == ["x", "y"]

    def test_search_filters_by_scope(self, store: RuleStore) -> None:
        store.add(rule("asia-only", scope=RuleScope(communities=["asia"])), vec(1, 0, 0, 0))
        store.add(rule("everywhere"), vec(0.9, 0.1, 0, 0))
        europe = RuleScope(communities=["europe"])
        assert [h.rule.id for h in store.search(vec(1, 0, 0, 0), 5, europe)] == ["everywhere"]
        asia = RuleScope(communities=["asia"])
        assert store.search(vec(1, 0, 0, 0), 5, asia)[0].rule.id == "asia-only"

    def test_listeners_get_each_new_snapshot(self, store: RuleStore) -> None:
        seen: list[RuleIndex] = []
        store.subscribe(seen.append)
        store.add(rule("a"), vec(1, 0, 0, 0))
        store.remove("a")
        assert [len(s) for s in seen] == [1, 0]

    def test_a_failing_listener_does_not_block_the_edit(self, store: RuleStore) -> None:
        def boom(_: RuleIndex) -> None:
            raise RuntimeError("listener bug")

        store.subscribe(boom)
        store.add(rule("a"), vec(1, 0, 0, 0))
        assert [r.id for r in store.snapshot().rules] == ["a"]

    def test_status_reports_rules_and_version(self, store: RuleStore) -> None:
        store.add(rule("a"), vec(1, 0, 0, 0))
        status = store.status()
        assert status["rules"] == 1
        assert status["version"] == store.version
        assert status["healthy"] is True
