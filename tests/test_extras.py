"""Commands that need the train extra say so in one line, with the install command."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from pluralism import cli


@pytest.fixture()
def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """An install without the train extra: torch cannot be found."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name.split(".")[0] == "torch" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize(
    "argv",
    [
        ["community", "train", "--out", "OUT", "--corpus", "corpus.txt"],
        ["policies", "tune", "--out", "OUT"],
    ],
)
def test_training_without_the_train_extra_is_one_line(
    argv: list[str],
    no_torch: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "corpus.txt").write_text("We plant rice in spring.\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pluralism", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "needs the train extra" in lines[0] and "pip install 'pluralism[train]'" in lines[0]
    assert not (tmp_path / "OUT").exists()
