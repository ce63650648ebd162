from __future__ import annotations

import pytest

from pluralism.errors import PopulationNotFoundError
from pluralism.population import mentions, normalise, population_weights
from pluralism.types import Community


def test_normalise_ignores_case_punctuation_and_sample_notes() -> None:
    assert normalise("Japan (Non-national sample)") == normalise("JAPAN")
    assert normalise("POLPARTY_Republican") == "polparty republican"


@pytest.mark.parametrize("name", ["Japan", "japan", "Vietnam (Non-national sample)"])
def test_country_maps_through_its_continent(default_pool: list[Community], name: str) -> None:
    match = population_weights(name, default_pool)
    assert match.weights == {"asia": 1.0}
    assert not match.uniform


@pytest.mark.parametrize("name", ["POLPARTY:Republican", "POLPARTY_Republican", "Republican"])
def test_survey_group_maps_through_perspectives(default_pool: list[Community], name: str) -> None:
    match = population_weights(name, default_pool)
    assert set(match.weights) == {"progressive", "moderate", "conservative"}
    assert sum(match.weights.values()) == pytest.approx(1.0)
    assert max(match.weights, key=match.weights.__getitem__) == "conservative"
    assert match.matched == ["POLPARTY:Republican"]


def test_no_population_is_uniform_and_says_so(default_pool: list[Community]) -> None:
    match = population_weights(None, default_pool)
    assert match.uniform and "uniform" in match.note
    assert list(match.weights.values()) == [pytest.approx(1 / len(default_pool))] * len(
        default_pool
    )


def test_unknown_population_is_an_error_or_uniform(default_pool: list[Community]) -> None:
    with pytest.raises(PopulationNotFoundError, match="maps to no community"):
        population_weights("Atlantis", default_pool)
    match = population_weights("Atlantis", default_pool, strict=False)
    assert match.uniform and "Atlantis" in match.note


def test_mentions_find_named_countries_and_groups(default_pool: list[Community]) -> None:
    assert mentions("a farmer in Poland", default_pool) == {"europe": 1.0}
    found = mentions("a Republican from Ohio", default_pool)
    assert max(found, key=found.__getitem__) == "conservative"
    assert mentions("nobody in particular", default_pool) == {}


def test_a_group_named_with_its_attribute_counts_more_than_a_bare_word(
    default_pool: list[Community],
) -> None:
    # "Asian" alone may mean Asia's peoples; "RACE_Asian" is the US survey group.
    assert mentions("RACE_Asian", default_pool)["united-states"] == 1.0
    assert mentions("Asian Americans", default_pool)["united-states"] == 0.5
