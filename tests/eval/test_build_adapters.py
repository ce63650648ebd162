"""The generated evaluation pool names each trained adapter and loads as a community pool."""

from __future__ import annotations

from pathlib import Path

from pluralism.config import load_communities
from pluralism.eval.build_adapters import PERSPECTIVES, write_pool


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


def test_every_perspective_learns_from_political_groups() -> None:
    assert set(PERSPECTIVES) == {"conservative", "moderate", "progressive"}
    assert all(set(groups) == {"POLPARTY", "POLIDEOLOGY"} for groups in PERSPECTIVES.values())
