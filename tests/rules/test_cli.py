"""`pluralism policies lint|test|recall`, as a policy author runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pluralism.rules._cli import app

runner = CliRunner()


def test_lint_default_policies_is_clean() -> None:
    result = runner.invoke(app, ["lint"])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output and "0 warning" in result.output


def test_lint_reports_file_line_and_fails(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - id: r\n    text: t\n    scope: {communities: [mars]}\n"
    )
    result = runner.invoke(app, ["lint", str(tmp_path)])
    assert result.exit_code == 1
    assert "a.yaml:4" in result.output and "'mars'" in result.output
    assert "Traceback" not in result.output


def test_lint_missing_directory_is_one_sentence(tmp_path: Path) -> None:
    result = runner.invoke(app, ["lint", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_lint_reads_community_ids_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "mars.yaml").write_text("id: mars\n")
    (tmp_path / "p" / "a.yaml").write_text(
        "rules:\n  - id: r\n    text: t\n    scope: {communities: [mars]}\n    examples: [x]\n"
    )
    result = runner.invoke(app, ["lint", str(tmp_path / "p"), "--communities", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output


@pytest.mark.integration
def test_test_passes_on_the_default_policies() -> None:
    result = runner.invoke(app, ["test", "--k", "3"])
    assert result.exit_code == 0, result.output
    assert "recall their rule in the top 3" in result.output


@pytest.mark.integration
def test_test_fails_on_a_miss(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n"
        '  - id: tax\n    text: Pay your taxes on time.\n    examples: ["when are taxes due?"]\n'
        "  - id: dogs\n    text: Keep dogs on a leash.\n"
        '    examples: ["how do I bake sourdough bread?"]\n'
    )
    result = runner.invoke(app, ["test", str(tmp_path), "--k", "1"])
    assert result.exit_code == 1
    assert "MISS" in result.output and "1 of 2 example(s)" in result.output


@pytest.mark.integration
def test_recall_json_lists_hits_with_scores_and_why() -> None:
    result = runner.invoke(
        app, ["recall", "how many ibuprofen can my kid take?", "--k", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert len(body["version"]) == 32
    ids = [h["rule"]["id"] for h in body["hits"]]
    assert "no-dosage-advice" in ids
    assert all("score" in h and h["why"] for h in body["hits"])


@pytest.mark.integration
def test_recall_table_and_scope() -> None:
    prompt = "my parents want a say in who I marry"
    result = runner.invoke(app, ["recall", prompt, "--community", "europe", "--json"])
    assert result.exit_code == 0, result.output
    assert "collectivist-family-decisions" not in result.output
    result = runner.invoke(app, ["recall", prompt, "--community", "asia", "--json"])
    assert "collectivist-family-decisions" in result.output
    table = runner.invoke(app, ["recall", prompt, "--community", "asia"])
    assert table.exit_code == 0 and "Rules recalled from" in table.output


TUNE_POLICIES = (
    "rules:\n"
    "  - id: debt\n    text: Do not advise on bankruptcy filings; refer to a licensed adviser.\n"
    '    examples: ["should I declare chapter 7?", "can I wipe my debts"]\n'
    "  - id: grief\n    text: Respond to bereavement with condolences first.\n"
    '    examples: ["my dad passed away last night", "my cat died today"]\n'
)


@pytest.mark.integration
def test_tune_writes_a_model_that_test_and_recall_use(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.yaml").write_text(TUNE_POLICIES)
    (tmp_path / "pairs.jsonl").write_text(
        '{"prompt": "creditors keep calling me", "rule": "debt"}\n'
        '{"prompt": "my grandmother died", "rule": "Respond to bereavement with condolences '
        'first."}\n'
    )
    out = tmp_path / "tuned"
    args = ["tune", str(tmp_path / "p"), "--out", str(out), "--epochs", "1"]
    result = runner.invoke(app, [*args, "--pairs", str(tmp_path / "pairs.jsonl")])
    assert result.exit_code == 0, result.output
    assert "tuned on 6 pair(s) for 2 rule(s)" in result.output
    assert (out / "pluralism-tune.json").is_file()
    # A second run into the same directory does not silently replace the first.
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "not empty" in again.output
    recall = runner.invoke(
        app,
        ["recall", "my uncle passed away", "--dir", str(tmp_path / "p"), "--embedder", str(out)],
    )
    assert recall.exit_code == 0, recall.output
    assert "grief" in recall.output
    test = runner.invoke(app, ["test", str(tmp_path / "p"), "--k", "1", "--embedder", str(out)])
    assert test.exit_code == 0, test.output


def test_tune_names_a_broken_pairs_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(TUNE_POLICIES)
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "x", "rule": "debt"}\n{"prompt": 3}\n')
    result = runner.invoke(
        app,
        [
            "tune",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--pairs",
            str(tmp_path / "pairs.jsonl"),
        ],
    )
    assert result.exit_code == 1
    assert "pairs.jsonl:2" in result.output and '"prompt"' in result.output
    assert not (tmp_path / "o").exists()


def test_tune_without_examples_says_what_to_add(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("rules:\n  - id: r\n    text: Be kind.\n")
    result = runner.invoke(app, ["tune", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "add `examples:`" in result.output


def test_recall_with_a_missing_embedder_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["recall", "hi", "--embedder", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "is not a directory" in result.output and "Traceback" not in result.output
