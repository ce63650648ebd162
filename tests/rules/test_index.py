"""Search semantics of a snapshot: scope, always-rules, threshold, ordering, large memories."""

from __future__ import annotations

import numpy as np
import pytest

from pluralism.rules import FusionWeights, RuleIndex, in_scope
from pluralism.types import Rule, RuleScope
from tests.rules.conftest import HashEmbedder

EMB = HashEmbedder()


def index_of(*rules: Rule, **kw: object) -> RuleIndex:
    return RuleIndex(list(rules), EMB.encode([r.text for r in rules]), **kw)  # type: ignore[arg-type]


def search(
    index: RuleIndex, q: str, k: int = 5, scope: RuleScope | None = None, threshold: float = 0.1
) -> list[str]:
    hits = index.search(
        q, EMB.encode([q])[0], k=k, scope=scope, threshold=threshold, weights=FusionWeights()
    )
    return [h.rule.id for h in hits]


@pytest.mark.parametrize(
    ("rule", "request_", "applies"),
    [
        (RuleScope(), RuleScope(communities=["asia"]), True),
        (RuleScope(communities=["asia"]), RuleScope(communities=["asia", "europe"]), True),
        (RuleScope(communities=["asia"]), RuleScope(communities=["europe"]), False),
        (RuleScope(communities=["asia"]), RuleScope(), False),
        (RuleScope(populations=["Japan"]), RuleScope(populations=["Japan"]), True),
        (RuleScope(tags=["medical"]), RuleScope(communities=["asia"]), False),
        (RuleScope(communities=["asia"]), None, True),
    ],
)
def test_scope_rule(rule: RuleScope, request_: RuleScope | None, applies: bool) -> None:
    assert in_scope(rule, request_) is applies


def test_always_rules_come_with_any_prompt_in_scope() -> None:
    idx = index_of(
        Rule(id="fair", text="present viewpoints fairly", always=True),
        Rule(id="asia-always", text="x y z", always=True, scope=RuleScope(communities=["asia"])),
        Rule(id="hands", text="wash hands before cooking"),
    )
    europe = RuleScope(communities=["europe"])
    assert set(search(idx, "wash hands", scope=europe)) == {"fair", "hands"}
    assert search(idx, "unrelated words entirely", scope=europe) == ["fair"]


def test_threshold_drops_weak_hits_and_k_caps_the_rest() -> None:
    idx = index_of(
        *(Rule(id=f"r{i}", text=f"wash hands rule {i}") for i in range(8)),
        Rule(id="tax", text="pay your taxes"),
    )
    assert len(search(idx, "wash hands", k=3)) == 3
    assert "tax" not in search(idx, "wash hands", k=20, threshold=0.3)


def test_hits_are_ordered_by_priority_then_score() -> None:
    idx = index_of(
        Rule(id="low", text="wash hands before cooking food", priority=10),
        Rule(id="high", text="hands", priority=90),
    )
    assert search(idx, "wash hands before cooking food", threshold=0) == ["high", "low"]


def test_hits_say_why() -> None:
    idx = index_of(Rule(id="hands", text="wash hands before cooking"))
    q = "should I wash my hands"
    (hit,) = idx.search(
        q, EMB.encode([q])[0], k=1, scope=None, threshold=0, weights=FusionWeights()
    )
    assert "shared words: hand, wash" in hit.why
    assert hit.dense is not None and hit.lexical is not None and hit.score > 0


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique id"):
        index_of(Rule(id="a", text="x"), Rule(id="a", text="y"))


def test_quantised_index_finds_the_same_rules() -> None:
    rules = [Rule(id=f"r{i}", text=f"topic {i % 50} rule {i} words w{i}") for i in range(3000)]
    vecs = EMB.encode([r.text for r in rules])
    exact = RuleIndex(rules, vecs)
    quant = RuleIndex(rules, vecs, ivf_min_rows=1000)
    assert quant.dense.quantised and not exact.dense.quantised
    assert quant.dense.nbytes < exact.dense.nbytes / 3
    agree = 0
    for i in range(0, 3000, 150):
        q = rules[i].text
        a = set(search(exact, q, k=5, threshold=0))
        b = set(search(quant, q, k=5, threshold=0))
        agree += rules[i].id in b
        assert len(a & b) >= 3
    assert agree == 20


def test_dense_ivf_recall_against_brute_force() -> None:
    from pluralism.rules._dense import DenseIndex

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((50, 32)).astype(np.float32)
    x = centers[rng.integers(0, 50, 5000)] + 0.5 * rng.standard_normal((5000, 32)).astype(
        np.float32
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ivf = DenseIndex(x, ivf_min_rows=0, nprobe=16)
    found = 0
    for q in x[:100]:
        truth = set(np.argsort(-(x @ q))[:10].tolist())
        found += len(truth & set(ivf.candidates(q, 10)[0].tolist()))
    assert found / 1000 >= 0.9


def test_large_memories_build_the_lexical_index_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pluralism.rules._index as index_module

    monkeypatch.setattr(index_module, "LAZY_LEXICAL_ROWS", 2)
    idx = index_of(
        Rule(id="hands", text="wash hands before cooking"), Rule(id="tax", text="pay tax")
    )
    assert idx.wait_lexical(timeout=10)
    (hit,) = [
        h
        for h in idx.search(
            "wash hands",
            EMB.encode(["wash hands"])[0],
            k=1,
            scope=None,
            threshold=0,
            weights=FusionWeights(),
        )
    ]
    assert hit.rule.id == "hands" and (hit.lexical or 0) > 0


def test_fusion_weights_follow_the_query_script() -> None:
    w = FusionWeights()
    assert w.for_query("how much ibuprofen can my kid take?") == (1.0, 0.2)
    # The default embedder reads no Chinese: its cosine gets no vote on a Chinese prompt.
    assert w.for_query("儿童可以服用多少布洛芬？") == (0.0, 10.0)
    dense, lexical = w.for_query("ERM公司的员工应该如何报告")
    assert 0 < dense < 1 and 0.2 < lexical < 10
    assert FusionWeights(dense=0, lexical=0, lexical_cjk=0).for_query("你好") == (1.0, 0.0)


def test_a_chinese_prompt_is_ranked_by_characters_alone() -> None:
    idx = index_of(
        Rule(id="land", text="土地使用者转让土地使用权必须付清地价款"),
        Rule(id="report", text="员工必须向法务部报告"),
    )
    q = "转让土地使用权需要什么条件？"
    hits = idx.search(q, EMB.encode([q])[0], k=2, scope=None, threshold=-1, weights=FusionWeights())
    assert max(hits, key=lambda h: h.score).rule.id == "land"
    assert all(h.score == h.lexical for h in hits)
