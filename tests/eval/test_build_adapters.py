"""Rebuilding the shipped adapters: which data each learns from, and the evaluation pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from pluralism.config import default_dir, load_communities
from pluralism.embedding import CachedEmbedder
from pluralism.eval.build_adapters import SURVEY_GROUPS, main, write_pool


def test_pool_names_only_the_adapters_that_exist(tmp_path: Path) -> None:
    for cid in ("europe", "conservative"):
        (tmp_path / cid).mkdir()
        (tmp_path / cid / "adapter_model.safetensors").write_bytes(b"")
    (tmp_path / "europe" / "answers.jsonl").write_text("{}\n", encoding="utf-8")
    pool = load_communities(write_pool(tmp_path))
    assert {c.id: c.adapter for c in pool} == {
        "conservative": "../conservative",
        "europe": "../europe",
    }
    # Only a community whose answers were written names them.
    assert {c.id: c.answers for c in pool} == {
        "conservative": None,
        "europe": "../europe/answers.jsonl",
    }
    assert pool[1].population.countries  # the shipped file's content, not a stub
    # Answers alone keep the shipped adapter, by a path that works from the pool.
    (tmp_path / "asia").mkdir()
    (tmp_path / "asia" / "answers.jsonl").write_text("{}\n", encoding="utf-8")
    (asia,) = [c for c in load_communities(write_pool(tmp_path)) if c.id == "asia"]
    assert asia.answers == "../asia/answers.jsonl"
    assert asia.adapter is not None
    assert (tmp_path / "pool" / asia.adapter / "adapter_model.safetensors").is_file()
    # The shipped file's own `adapter:` line is replaced, not left above the new one.
    text = (tmp_path / "pool" / "europe.yaml").read_text(encoding="utf-8")
    assert text.count("adapter:") == 1


def test_every_perspective_learns_from_political_groups_and_the_us_public_from_all() -> None:
    perspectives = {"conservative", "moderate", "progressive"}
    assert set(SURVEY_GROUPS) == perspectives | {"united-states"}
    assert all(set(SURVEY_GROUPS[p]) == {"POLPARTY", "POLIDEOLOGY"} for p in perspectives)
    assert SURVEY_GROUPS["united-states"] == {"SEX": ["Male", "Female"]}


def test_every_shipped_community_names_its_shipped_adapter() -> None:
    communities = default_dir("communities")
    for c in load_communities(communities):
        assert c.adapter == f"adapters/{c.id}"
        assert (communities / c.adapter / "adapter_model.safetensors").is_file()
        # Answers files would copy the benchmark data into the project: built locally only.
        assert c.answers is None
        assert not (communities / c.adapter / "answers.jsonl").exists()


DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.integration
@pytest.mark.skipif(not (DATA / "opinions_qa").is_dir(), reason="the shared data is not here")
def test_answers_only_builds_answer_memories_without_held_out_questions(
    tmp_path: Path, embedder: CachedEmbedder
) -> None:
    from pluralism._calls import answer_memory
    from pluralism.eval._data import is_heldout

    main(["--data", str(DATA), "--out", str(tmp_path), "--answers-only", "--only", "moderate"])
    (moderate,) = load_communities(tmp_path / "pool")
    memory = answer_memory(moderate, embedder)
    assert memory is not None and len(memory) > 300  # every usable OpinionQA question
    assert not any(is_heldout(a.question) for a in memory.answers)
    first = memory.answers[0]
    recalled = memory.recall(first.question, first.options, k=1)
    assert recalled is not None and recalled.neighbours[0][0] == first.question


def test_answers_only_refuses_the_shipped_folder() -> None:
    with pytest.raises(SystemExit, match="not shipped: pass --out DIR"):
        main(["--answers-only"])
