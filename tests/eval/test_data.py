"""Loaders for the Modular Pluralism and OpinionQA formats, on tiny fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from pluralism.errors import InputError
from pluralism.eval._data import (
    bare_question,
    group_targets,
    is_heldout,
    load_items,
    load_survey,
    merge_targets,
    norm_question,
    row_targets,
)
from tests.eval import fixtures as fx


def test_distributional_rows_strip_the_option_list(tmp_path: Path) -> None:
    items = load_items(fx.write(tmp_path / "d.json", fx.distributional_rows()), "distributional")
    assert len(items) == 24
    assert items[0].question == fx.QUESTIONS[0]
    assert items[0].options == ["Yes", "No"] and items[0].gold == [0.8, 0.2]
    assert items[0].attribute == "Japan"
    assert len({it.key for it in items}) == 24  # one key per (question, country)


def test_gold_is_renormalised_and_one_option_rows_dropped(tmp_path: Path) -> None:
    rows = fx.steerable_oqa_rows()[:2]
    rows[0]["gold_distribution"] = [2, 1, 1]
    rows[1]["options"], rows[1]["gold_distribution"] = ["Only"], [1]
    items = load_items(fx.write(tmp_path / "s.json", rows), "steerable")
    assert len(items) == 1 and items[0].gold == [0.5, 0.25, 0.25]


def test_value_kaleidoscope_steerable_has_labels(tmp_path: Path) -> None:
    items = load_items(fx.write(tmp_path / "vk.json", fx.steerable_vk_rows()), "steerable")
    assert [it.label for it in items] == ["C", "B"]
    assert items[0].options == ["Support", "Oppose", "Either"]
    assert items[0].attribute == "Right to a safe environment"


def test_overton_values_are_the_value_names(tmp_path: Path) -> None:
    items = load_items(fx.write(tmp_path / "o.json", fx.overton_rows()), "overton")
    assert items[0].values == ["Honesty", "Loyalty"]
    assert items[0].question == "Lying to protect a friend"


@pytest.mark.parametrize(
    ("content", "task", "needle"),
    [
        (None, "distributional", "does not exist"),
        ("{not json", "distributional", "not valid JSON"),
        ("[]", "distributional", "holds no rows"),
        ('{"a": 1}', "overton", "not a JSON list"),
    ],
)
def test_bad_files_are_input_errors(
    tmp_path: Path, content: str | None, task: str, needle: str
) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=needle):
        load_items(path, task)  # type: ignore[arg-type]


def test_a_file_of_another_task_is_refused(tmp_path: Path) -> None:
    path = fx.write(tmp_path / "o.json", fx.overton_rows())
    with pytest.raises(InputError, match="not a distributional file"):
        load_items(path, "distributional")
    vk = fx.write(tmp_path / "vk.json", fx.steerable_vk_rows())
    with pytest.raises(InputError, match="not a distributional file"):
        load_items(vk, "distributional")


def test_question_normalisation_and_split_ignore_wrapping() -> None:
    wrapped = "Question: Should we?\nOptions: A. Yes B. No\nAnswer:"
    assert bare_question(wrapped) == "Should we?"
    assert norm_question(wrapped) == norm_question("  should WE ") == "should we"
    assert is_heldout(wrapped) == is_heldout("Should we?")
    share = sum(is_heldout(f"question {i}") for i in range(2000)) / 2000
    assert 0.15 < share < 0.25


def test_survey_loader_drops_refused_and_normalises(tmp_path: Path) -> None:
    questions = load_survey(fx.survey_dir(tmp_path), "POLPARTY")
    assert len(questions) == 12
    q = questions[0]
    assert q.options == ["Yes", "No"]
    assert q.groups["Republican"] == pytest.approx([0.3, 0.7])
    targets = group_targets(questions, ["Republican", "Democrat"], "POLPARTY")
    assert targets[0][2] == pytest.approx([0.55, 0.45])


def test_survey_errors_name_what_exists(tmp_path: Path) -> None:
    root = fx.survey_dir(tmp_path)
    with pytest.raises(InputError, match="POLPARTY"):
        load_survey(root, "RELIG")
    with pytest.raises(InputError, match="Democrat, Republican"):
        group_targets(load_survey(root, "POLPARTY"), ["Martian"], "POLPARTY")
    with pytest.raises(InputError, match="does not exist"):
        load_survey(tmp_path / "nowhere", "POLPARTY")


def test_row_targets_average_the_accepted_countries(tmp_path: Path) -> None:
    items = load_items(fx.write(tmp_path / "d.json", fx.distributional_rows()), "distributional")
    targets = row_targets(items, {"japan", "france"})
    assert len(targets) == 12 and targets[0][2] == pytest.approx([0.55, 0.45])
    merged = merge_targets([row_targets(items, {"japan"}), row_targets(items, {"france"})])
    assert merged[0][2] == pytest.approx([0.55, 0.45])


def test_repeated_options_are_numbered(tmp_path: Path) -> None:
    rows = fx.steerable_oqa_rows()[:1]
    rows[0]["options"] = ["Ye", "Often", "Ye"]
    (item,) = load_items(fx.write(tmp_path / "s.json", rows), "steerable")
    assert item.options == ["Ye", "Often", "Ye (2)"]
