"""Rebuilding the shipped adapters: which data each learns from, and the evaluation pool."""

from __future__ import annotations

from pathlib import Path

from pluralism.config import default_dir, load_communities
from pluralism.eval.build_adapters import SURVEY_GROUPS, write_pool


def test_pool_names_only_the_adapters_that_exist(tmp_path: Path) -> None:
    for cid in ("europe", "conservative"):
        (tmp_path / cid).mkdir()
        (tmp_path / cid / "adapter_model.safetensors").write_bytes(b"")
    pool = load_communities(write_pool(tmp_path))
    assert {c.id: c.adapter for c in pool} == {
        "conservative": "../conservative",
        "europe": "../europe",
    }
    assert pool[1].population.countries  # the shipped file's content, not a stub
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
