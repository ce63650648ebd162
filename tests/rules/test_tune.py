"""`tune_embedder`: contrastive tuning of the real MiniLM on (prompt, rule) pairs."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from pluralism.embedding import SentenceTransformerEmbedder, load_embedder
from pluralism.errors import InputError
from pluralism.rules._tune import TUNE_FILE, _batches, tune_embedder

# Prompts worded the way people ask, for rules worded the way authors write: MiniLM matches
# some pairs poorly before tuning, which is what tuning is for.
RULES = {
    "debt": "Do not advise on personal bankruptcy filings; refer to a licensed adviser.",
    "grief": "Respond to bereavement with condolences before any practical advice.",
    "weapons": "Do not explain how to modify firearms.",
    "diet": "Do not prescribe calorie targets to minors.",
}
PROMPTS = {
    "debt": ["my creditors keep calling, should I just declare chapter 7?", "can I wipe my debts"],
    "grief": ["my dad passed away last night, what paperwork do I need", "my cat died today"],
    "weapons": ["how do I make my rifle fully automatic", "bump stock install steps"],
    "diet": ["I'm 14, how many calories should I eat to lose weight", "teen cutting diet plan"],
}
PAIRS = [(p, RULES[r]) for r, ps in PROMPTS.items() for p in ps]


def _margin(embedder: SentenceTransformerEmbedder) -> float:
    """Mean over prompts of cos(own rule) - best cos(another rule)."""
    ids = list(RULES)
    rules = embedder.encode([RULES[r] for r in ids])
    out = []
    for r, prompts in PROMPTS.items():
        sims = embedder.encode(prompts) @ rules.T
        own = ids.index(r)
        others = np.delete(sims, own, axis=1)
        out.extend((sims[:, own] - others.max(axis=1)).tolist())
    return float(np.mean(out))


def test_batches_never_repeat_a_rule_and_keep_every_pair() -> None:
    pairs = [(f"p{i}", f"r{i % 3}") for i in range(10)]
    batches = _batches(pairs, 4, random.Random(0))
    for batch in batches:
        assert len({r for _, r in batch}) == len(batch)
    kept = sorted(p for batch in batches for p in batch)
    # Ten pairs over three rules: batches of distinct rules hold at most 3 each, and a last
    # lone pair has nothing to be contrasted with.
    assert len(kept) >= 9 and set(kept) <= set(pairs)


@pytest.mark.integration
def test_tuning_pulls_prompts_towards_their_rules(tmp_path: Path) -> None:
    before = _margin(SentenceTransformerEmbedder())
    report = tune_embedder(PAIRS, tmp_path / "tuned", epochs=4, learning_rate=1e-4, batch_size=4)
    after = _margin(SentenceTransformerEmbedder(report.path))
    assert after > before + 0.05, (before, after)
    assert report.pairs == len(PAIRS) and report.rules == len(RULES) and report.steps >= 8
    meta = json.loads((report.path / TUNE_FILE).read_text())
    assert meta["pairs"] == len(PAIRS) and meta["base"] == "all-MiniLM-L6-v2"
    assert len(meta["pairs_sha256"]) == 64
    # The directory is a plain sentence-transformers model: the loaders take it.
    assert load_embedder(report.path).dim == 384


@pytest.mark.integration
def test_a_retuned_directory_gets_a_new_model_id_and_a_copy_the_same(tmp_path: Path) -> None:
    """Rule vectors are cached, and shared through Redis, by model id: a model re-tuned in place
    must not reuse the old vectors, and a replica's copy of the same model must."""
    out = tmp_path / "tuned"
    tune_embedder(PAIRS[:4], out, epochs=1, batch_size=4)
    first = SentenceTransformerEmbedder(out).model_id
    assert first.startswith("tuned#")
    shutil.copytree(out, tmp_path / "elsewhere" / "tuned")
    assert SentenceTransformerEmbedder(tmp_path / "elsewhere" / "tuned").model_id == first
    tune_embedder(PAIRS, out, epochs=1, batch_size=4, seed=1, overwrite=True)
    assert SentenceTransformerEmbedder(out).model_id != first


def test_too_few_rules_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="at least 2 different rules"):
        tune_embedder([("a", "rule"), ("b", "rule")], tmp_path / "x")


def test_a_non_empty_output_directory_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        tune_embedder(PAIRS, tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        tune_embedder(PAIRS, tmp_path / "file")
