"""The CLI as a user runs it: a real subprocess, real exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pluralism", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_communities_lists_the_pool() -> None:
    proc = run("communities")
    assert proc.returncode == 0, proc.stderr
    continents = ("africa", "americas", "asia", "europe", "oceania")
    for cid in (*continents, "progressive", "moderate", "conservative", "united-states"):
        assert cid in proc.stdout


def test_graph_prints_mermaid_with_every_step() -> None:
    proc = run("graph")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lstrip().startswith("---") and "graph TD;" in proc.stdout
    for node in ("route", "recall", "situate", "draft", "score", "aggregate", "answer"):
        assert f"\t{node}(" in proc.stdout


def test_unknown_mode_fails_before_loading_models() -> None:
    proc = run("ask", "hello?", "--mode", "consensus", timeout=60)
    assert_clean_failure(proc, "Unknown mode 'consensus'; use one of")


def test_unknown_overton_style_fails_before_loading_models() -> None:
    proc = run("ask", "Is tipping required?", "--overton-style", "essay", timeout=60)
    assert_clean_failure(proc, "Unknown Overton style 'essay'; use one of: synthesize, list")


def test_broken_community_file_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("id: x\nkind: k\nname: X\ndescription: d\n", encoding="utf-8")
    proc = run("communities", "--communities", str(tmp_path))
    assert_clean_failure(proc, "x.yaml: field `persona` is required")


def test_communities_counts_and_checks_answers_files(tmp_path: Path) -> None:
    line = json.dumps({"question": "Q?", "options": ["Yes", "No"], "distribution": [3, 1]})
    (tmp_path / "answers.jsonl").write_text(f"{line}\n{line}\n", encoding="utf-8")
    (tmp_path / "x.yaml").write_text(
        "id: x\nkind: k\nname: X\ndescription: d\npersona: p\nanswers: answers.jsonl\n",
        encoding="utf-8",
    )
    proc = run("communities", "--communities", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "2 questions" in proc.stdout
    (tmp_path / "answers.jsonl").write_text(f"{line}\n[1, 2]\n", encoding="utf-8")
    proc = run("communities", "--communities", str(tmp_path))
    assert_clean_failure(proc, "answers.jsonl:2: not a JSON object")


@pytest.mark.parametrize("flag", ["--policies", "--values"])
def test_a_rule_directory_that_does_not_exist_is_refused(flag: str) -> None:
    proc = run("ask", "Is tipping required?", flag, "no-such-dir", timeout=120)
    assert_clean_failure(proc, f"{flag} no-such-dir is not a directory")


def test_a_rules_embedder_that_does_not_exist_is_refused() -> None:
    proc = run("ask", "Is tipping required?", "--rules-embedder", "no-such-dir", timeout=120)
    assert_clean_failure(proc, "embedder no-such-dir is not a directory")


def test_values_k_out_of_range_is_a_usage_error() -> None:
    proc = run("ask", "Is tipping required?", "--values-k", "-1", timeout=60)
    assert proc.returncode == 2 and "Invalid value for '--values-k'" in proc.stderr


@pytest.mark.parametrize("flag", ["--max-tokens", "--draft-tokens"])
def test_a_token_count_below_one_is_a_usage_error(flag: str) -> None:
    proc = run("ask", "Is tipping required?", flag, "-5", timeout=60)
    assert proc.returncode == 2 and f"Invalid value for '{flag}'" in proc.stderr
    assert "ValidationError" not in proc.stderr and "pydantic" not in proc.stderr


def test_missing_prompt_is_a_usage_error() -> None:
    proc = run("ask")
    assert proc.returncode == 2
    assert "Missing argument" in proc.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mode", "distributional", "--option", "yes"], "at least two"),
        (["--mode", "steerable", "--steer", "lattice QCD"], "No community matches"),
        (
            ["--mode", "distributional", "--population", "Atlantis", "-o", "a", "-o", "b"],
            "maps to no community",
        ),
        (["--mode", "steerable"], "needs a steer target"),
    ],
)
def test_bad_requests_exit_non_zero_with_one_sentence(args: list[str], needle: str) -> None:
    proc = run("ask", "Is tipping required?", *args, "--draft-tokens", "4", "--max-tokens", "4")
    assert_clean_failure(proc, needle)


@pytest.mark.integration
def test_ask_with_a_tag_recalls_rules_scoped_to_it(tmp_path: Path) -> None:
    (tmp_path / "care.yaml").write_text(
        "rules:\n"
        "  - id: clinic-doses\n"
        "    text: Give no medication doses; refer to the clinic's pharmacist.\n"
        "    scope: {tags: [medical]}\n",
        encoding="utf-8",
    )
    args = ["How much ibuprofen can I take?", "--mode", "distributional", "-o", "a", "-o", "b"]
    common = [*args, "--policies", str(tmp_path), "--json"]
    plain = json.loads(run("ask", *common).stdout)
    tagged = json.loads(run("ask", *common, "--tag", "medical").stdout)
    assert plain["trace"]["rules"] == []
    assert tagged["trace"]["rules"] == ["clinic-doses"]
