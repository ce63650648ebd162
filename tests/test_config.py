from __future__ import annotations

from pathlib import Path

import pytest

from pluralism.config import default_dir, load_communities
from pluralism.errors import ConfigError

GOOD = """\
id: farmers
kind: occupation
name: Farmers
description: Rural farming communities.
exemplars: [The weather decides our year.]
persona: You speak as a farmer.
population:
  groups: {"CREGION:Midwest": 0.5}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_default_pool_is_five_continents_three_perspectives_and_the_us_public() -> None:
    pool = load_communities(default_dir("communities"))
    by_kind: dict[str, set[str]] = {}
    for c in pool:
        by_kind.setdefault(c.kind, set()).add(c.id)
    assert by_kind["continent"] == {"africa", "americas", "asia", "europe", "oceania"}
    assert by_kind["perspective"] == {"progressive", "moderate", "conservative"}
    assert by_kind["country"] == {"united-states"}
    for c in pool:
        assert c.exemplars and c.persona and c.model.backend == "local"


def test_adding_a_file_adds_a_community(tmp_path: Path) -> None:
    pool = load_communities(write(tmp_path, "farmers.yaml", GOOD))
    assert [c.id for c in pool] == ["farmers"]
    assert pool[0].population.groups == {"CREGION:Midwest": 0.5}


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", GOOD.replace("kind: occupation", "kind: [occupation"))
    with pytest.raises(ConfigError) as info:
        load_communities(tmp_path)
    assert "bad.yaml:" in str(info.value)
    assert "YAML syntax error" in str(info.value)


def test_missing_field_names_file_and_field(tmp_path: Path) -> None:
    write(tmp_path, "nopersona.yaml", GOOD.replace("persona: You speak as a farmer.\n", ""))
    with pytest.raises(ConfigError, match=r"nopersona\.yaml: field `persona` is required"):
        load_communities(tmp_path)


def test_wrong_field_names_line(tmp_path: Path) -> None:
    write(tmp_path, "typo.yaml", GOOD.replace("exemplars:", "exemplers:"))
    with pytest.raises(ConfigError, match=r"typo\.yaml:5: field `exemplers` is not a known field"):
        load_communities(tmp_path)


def test_negative_weight_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "neg.yaml", GOOD.replace("0.5", "-1"))
    with pytest.raises(ConfigError, match=r"neg\.yaml:8: field `population.groups`"):
        load_communities(tmp_path)


def test_duplicate_ids_name_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(ConfigError, match=r"b\.yaml:1: community id `farmers` is also used by"):
        load_communities(tmp_path)


def test_not_a_mapping(tmp_path: Path) -> None:
    write(tmp_path, "list.yaml", "- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_communities(tmp_path)


def test_missing_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_communities(tmp_path / "nope")
    with pytest.raises(ConfigError, match="holds no community files"):
        load_communities(tmp_path)


def test_lora_on_the_embedded_model_points_to_the_adapter_field(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", GOOD + "model:\n  backend: local\n  lora: europe\n")
    with pytest.raises(ConfigError, match=r"f\.yaml:9: .*`lora` names an adapter on a llama\.cpp"):
        load_communities(tmp_path)
    with pytest.raises(ConfigError, match=r"put the adapter folder in the community's `adapter:`"):
        load_communities(tmp_path)
