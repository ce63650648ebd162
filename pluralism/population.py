"""Population text (a country, a survey group) → weights over communities.

A country maps through the continents that list it; a survey group (``POLPARTY:Republican``,
``POLPARTY_Republican`` or just ``Republican``) through the perspectives that list it. The weights
come from the community files, so policy authors tune them without code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pluralism.errors import PopulationNotFoundError
from pluralism.types import Community

_PAREN = re.compile(r"\s*\(.*?\)\s*")


def normalise(name: str) -> str:
    """Case, punctuation and survey annotations such as '(Non-national sample)' do not matter."""
    base = _PAREN.sub(" ", name)
    return re.sub(r"[^0-9a-z$]+", " ", base.casefold()).strip()


def group_forms(key: str) -> set[str]:
    """A group key answers to 'ATTR:Group', 'ATTR_Group' and 'Group'."""
    attr, _, group = key.partition(":")
    forms = {normalise(key), normalise(f"{attr}_{group}")}
    if group:
        forms.add(normalise(group))
    return forms


@dataclass
class PopulationMatch:
    weights: dict[str, float]
    matched: list[str] = field(default_factory=list)
    uniform: bool = False
    note: str = ""


def known_populations(communities: Sequence[Community]) -> list[str]:
    names: set[str] = set()
    for c in communities:
        names.update(c.population.countries)
        names.update(c.population.groups)
    return sorted(names)


def population_weights(
    population: str | None, communities: Sequence[Community], *, strict: bool = True
) -> PopulationMatch:
    """Weights over community ids for a population; uniform (and said so) when none is given.

    With `strict`, a population that maps to no community is an error listing what is known;
    without it the answer falls back to uniform weights and the note says so.
    """
    ids = [c.id for c in communities]
    if population is None or not population.strip():
        return PopulationMatch(
            {i: 1 / len(ids) for i in ids}, uniform=True, note="no population given: uniform"
        )
    wanted = normalise(population)
    raw: dict[str, float] = {}
    matched: set[str] = set()
    for c in communities:
        for country, w in c.population.countries.items():
            if normalise(country) == wanted:
                raw[c.id] = raw.get(c.id, 0.0) + w
                matched.add(country)
        for group, w in c.population.groups.items():
            if wanted in group_forms(group):
                raw[c.id] = raw.get(c.id, 0.0) + w
                matched.add(group)
    total = sum(raw.values())
    if total > 0:
        return PopulationMatch({k: v / total for k, v in raw.items() if v > 0}, sorted(matched))
    if strict:
        known = known_populations(communities)
        sample = ", ".join(known[:12]) + (", …" if len(known) > 12 else "")
        raise PopulationNotFoundError(
            f"The population {population!r} maps to no community; use a country or survey "
            f"group listed in a community file (e.g. {sample}) or add it to one."
        )
    return PopulationMatch(
        {i: 1 / len(ids) for i in ids},
        uniform=True,
        note=f"population {population!r} matched no community: uniform",
    )


# A bare group name ("Asian", "West", "Hindu") may name a people, a place or a direction; named
# with its survey attribute ("RACE_Asian") it can only mean the survey group.
BARE_GROUP = 0.5


def mentions(text: str, communities: Sequence[Community]) -> dict[str, float]:
    """Communities whose countries or survey groups the text names, with the largest weight.

    "a devout Catholic farmer in Poland" names Poland, which the Europe community covers; the
    router adds this to the embedding similarity, since a short description embeds poorly. A
    survey group counts fully when named with its attribute (``RELIG_Hindu``), half when bare.
    """
    padded = f" {normalise(text)} "
    found: dict[str, float] = {}
    for c in communities:
        names = [(country, w) for country, w in c.population.countries.items()]
        for group, w in c.population.groups.items():
            attr, _, bare = group.partition(":")
            names += [(f"{attr} {bare}", w), (bare, w * BARE_GROUP)] if bare else [(group, w)]
        for name, w in names:
            key = normalise(name)
            if key and f" {key} " in padded:
                found[c.id] = max(found.get(c.id, 0.0), w)
    return found
