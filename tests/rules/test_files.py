"""Loading and linting policy files: every problem names file:line and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from pluralism.errors import ConfigError
from pluralism.rules import lint_policies, load_policies
from pluralism.rules._files import ParseCache

GOOD = """\
rules:
  - id: no-dosage-advice
    text: Do not give medication doses; refer to a pharmacist.
    priority: 80
    examples: ["how many ibuprofen can my kid take?"]
  - id: respect-religion
    text: Treat religious practice with respect.
    scope: {communities: [asia]}
    examples: ["why do people fast?"]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def only_error(tmp_path: Path, **kw: object) -> str:
    errors = [p for p in lint_policies(tmp_path, **kw) if p.severity == "error"]  # type: ignore[arg-type]
    assert len(errors) == 1, errors
    return str(errors[0])


def test_good_file_loads_every_rule(tmp_path: Path) -> None:
    loaded = load_policies(write(tmp_path, "a.yaml", GOOD))
    assert [r.id for r in loaded.rules] == ["no-dosage-advice", "respect-religion"]
    assert loaded.rules[0].priority == 80
    assert loaded.rules[1].scope.communities == ["asia"]
    assert loaded.errors == []
    assert loaded.where["respect-religion"][1] == 6


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", "rules:\n  - id: a\n    text: [unclosed\n  - id: b\n")
    msg = only_error(tmp_path)
    assert msg.startswith(f"{tmp_path / 'bad.yaml'}:")
    assert "YAML syntax error" in msg and "check indentation" in msg


def test_duplicate_ids_across_files_point_at_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - id: same\n    text: one\n")
    write(tmp_path, "b.yaml", "rules:\n  - id: other\n    text: x\n  - id: same\n    text: two\n")
    msg = only_error(tmp_path)
    assert f"{tmp_path / 'b.yaml'}:4" in msg
    assert f"first defined at {tmp_path / 'a.yaml'}:2" in msg and "rename" in msg


def test_unknown_community_is_reported_with_the_known_ones(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "rules:\n  - id: r\n    text: t\n    scope:\n      communities: [europe, asai]\n",
    )
    msg = only_error(tmp_path)
    assert "a.yaml:5" in msg and "'asai'" in msg and "asia" in msg


def test_unknown_population_only_when_populations_are_known(tmp_path: Path) -> None:
    write(
        tmp_path, "a.yaml", "rules:\n  - id: r\n    text: t\n    scope: {populations: [Narnia]}\n"
    )
    assert not [p for p in lint_policies(tmp_path) if p.severity == "error"]
    msg = only_error(tmp_path, known_populations=["Japan", "Brazil"])
    assert "unknown population 'Narnia'" in msg


def test_empty_text_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - id: r\n    text: '   '\n")
    assert "text is empty" in only_error(tmp_path)


def test_missing_field_and_unknown_field(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - id: r\n    txet: typo\n")
    problems = [str(p) for p in lint_policies(tmp_path)]
    assert any("missing `text`" in p for p in problems)
    assert any("unknown field `txet`" in p and "a.yaml:3" in p for p in problems)


def test_several_mb_rule_text_is_refused_with_its_size(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - id: big\n    text: " + "x" * 1_500_000 + "\n")
    msg = only_error(tmp_path)
    assert "1,500,000 characters" in msg and "split it" in msg


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "# " + "x" * 3_000_000 + "\nrules: []\n")
    assert "MB" in only_error(tmp_path) and "split" in only_error(tmp_path)


def test_missing_directory(tmp_path: Path) -> None:
    msg = only_error(tmp_path / "nope")
    assert "does not exist" in msg and "create it" in msg


def test_wrong_shape_and_bad_priority(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "- id: r\n  text: t\n")
    assert "mapping with a `rules:` list" in only_error(tmp_path)
    write(tmp_path, "a.yaml", "rules:\n  - id: r\n    text: t\n    priority: 900\n")
    assert "a.yaml:4" in only_error(tmp_path) and "0 to 100" in only_error(tmp_path)


def test_rule_without_examples_is_a_warning_only(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - id: r\n    text: t\n")
    (problem,) = lint_policies(tmp_path)
    assert problem.severity == "warning" and "no examples" in problem.message


def test_a_broken_rule_does_not_hide_the_good_ones(tmp_path: Path) -> None:
    write(
        tmp_path, "a.yaml", "rules:\n  - id: good\n    text: fine\n  - id: 'bad id!'\n    text: t\n"
    )
    loaded = load_policies(tmp_path)
    assert [r.id for r in loaded.rules] == ["good"]
    assert "is not valid" in str(loaded.errors[0])


def test_raise_for_errors_is_one_config_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - id: r\n    text: ''\n  - id: r\n    text: t\n")
    with pytest.raises(ConfigError) as info:
        load_policies(tmp_path).raise_for_errors()
    assert "a.yaml:3" in str(info.value) and "pluralism policies lint" in str(info.value)


def test_with_a_cache_only_edited_files_are_read_again(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", "rules:\n  - id: other\n    text: x\n")
    cache: ParseCache = {}
    first = load_policies(tmp_path, cache=cache)
    kept = cache[str(tmp_path / "a.yaml")]
    write(tmp_path, "b.yaml", "rules:\n  - id: other\n    text: y\n")
    second = load_policies(tmp_path, cache=cache)
    assert cache[str(tmp_path / "a.yaml")] is kept  # not parsed again
    assert [r.text for r in second.rules if r.id == "other"] == ["y"]
    assert [r.id for r in second.rules] == [r.id for r in first.rules]
    # A duplicate across files is still found when one side comes from the cache...
    write(tmp_path, "b.yaml", "rules:\n  - id: respect-religion\n    text: z\n")
    dup = load_policies(tmp_path, cache=cache)
    assert any("duplicate id 'respect-religion'" in p.message for p in dup.errors)
    assert [r.id for r in dup.rules].count("respect-religion") == 1
    # ...and a deleted file leaves the cache.
    (tmp_path / "b.yaml").unlink()
    load_policies(tmp_path, cache=cache)
    assert str(tmp_path / "b.yaml") not in cache
