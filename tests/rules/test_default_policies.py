"""The default policy set (policies/ at the repository root, shipped in the wheel) is clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from pluralism.config import default_dir
from pluralism.rules import default_policies_dir, load_policies

PACKAGED = default_dir("policies")


def test_the_cli_default_is_the_shipped_set_outside_a_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_policies_dir() == PACKAGED


def test_default_policies_load_without_problems() -> None:
    loaded = load_policies(PACKAGED)
    assert loaded.problems == []
    assert 15 <= len(loaded.rules) <= 30
    assert all(len(r.examples) >= 1 for r in loaded.rules)
