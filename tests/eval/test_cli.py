"""`pluralism eval` and `pluralism community train` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.eval import fixtures as fx

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "modular_pluralism"


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pluralism", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_modules_import_without_torch() -> None:
    code = (
        "import sys, pluralism.eval._cli, pluralism.eval._train_cli, pluralism.eval;"
        "print('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_data_file(tmp_path: Path) -> None:
    proc = run("eval", "distributional", "--data", str(tmp_path / "nope.json"))
    assert_clean_failure(proc, "does not exist")


def test_file_of_the_wrong_task(tmp_path: Path) -> None:
    data = fx.write(tmp_path / "o.json", fx.overton_rows())
    assert_clean_failure(run("eval", "steerable", "--data", str(data)), "not a steerable file")


def test_unknown_method_and_split(tmp_path: Path) -> None:
    data = fx.write(tmp_path / "d.json", fx.distributional_rows())
    assert_clean_failure(
        run("eval", "distributional", "--data", str(data), "--method", "magic"), "Unknown method"
    )
    assert_clean_failure(
        run("eval", "distributional", "--data", str(data), "--split", "dev"), "Unknown split"
    )
    over = fx.write(tmp_path / "o.json", fx.overton_rows())
    assert_clean_failure(
        run("eval", "overton", "--data", str(over), "--style", "essay"), "Unknown Overton style"
    )
    proc = run("eval", "overton", "--data", str(over), "--top-k", "0")
    assert proc.returncode == 2 and "Invalid value for '--top-k'" in proc.stderr  # a usage error
    proc = run("eval", "overton", "--data", str(over), "--values-k", "21")
    assert proc.returncode == 2 and "Invalid value for '--values-k'" in proc.stderr


def test_empty_data_and_filters(tmp_path: Path) -> None:
    empty = fx.write(tmp_path / "e.json", [])
    assert_clean_failure(run("eval", "overton", "--data", str(empty)), "holds no rows")
    data = fx.write(tmp_path / "d.json", fx.distributional_rows())
    proc = run("eval", "distributional", "--data", str(data), "--attribute", "Narnia")
    assert_clean_failure(proc, "widen")


def test_train_bad_inputs(tmp_path: Path) -> None:
    survey = fx.survey_dir(tmp_path / "survey")
    out = str(tmp_path / "out")
    assert_clean_failure(run("community", "train", "--out", out), "exactly one of")
    assert_clean_failure(
        run(
            "community",
            "train",
            "--out",
            out,
            "--survey",
            str(survey),
            "--attribute",
            "POLPARTY",
            "--group",
            "Martian",
        ),
        "Unknown POLPARTY group",
    )
    assert_clean_failure(
        run(
            "community",
            "train",
            "--out",
            out,
            "--survey",
            str(survey),
            "--attribute",
            "RELIG",
            "--group",
            "Atheist",
        ),
        "No RELIG_data.json",
    )
    rows = fx.write(tmp_path / "d.json", fx.distributional_rows())
    assert_clean_failure(
        run("community", "train", "--out", out, "--rows", str(rows), "--country", "Atlantis"),
        "No rows for Atlantis",
    )
    assert_clean_failure(
        run("community", "train", "--out", out, "--corpus", str(tmp_path / "none.txt")),
        "does not exist",
    )


@pytest.mark.integration
@pytest.mark.skipif(not DATA.is_dir(), reason="the shared benchmark data is not here")
@pytest.mark.parametrize(
    ("task", "file", "method"),
    [
        ("distributional", "distributional_test_globalopinionqa_small.json", "pluralism"),
        ("steerable", "steerable_test_opinionqa_small.json", "pluralism"),
        ("overton", "overton_test_valuekaleidoscope_small.json", "vanilla"),
    ],
)
def test_short_real_run(tmp_path: Path, task: str, file: str, method: str) -> None:
    args = ["eval", task, "--data", str(DATA / file), "--limit", "2", "--method", method]
    proc = run(*args, "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["task"] == task and got["method"] == method and got["n"] == 2
    assert 0.0 <= got["value"] <= 1.0
    assert (tmp_path / "report.md").is_file()
