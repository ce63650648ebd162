from __future__ import annotations

import pytest

from pluralism.modes.distributional import mixture, render_options, render_perspectives
from pluralism.types import Perspective


def test_mixture_is_the_population_weighted_average() -> None:
    per = {"a": [0.8, 0.2], "b": [0.2, 0.8], "c": [0.5, 0.5]}
    assert mixture(per, {"a": 0.75, "b": 0.25}) == pytest.approx([0.65, 0.35])
    # Weights need not be normalised; communities without a weight do not count.
    assert mixture(per, {"a": 3, "b": 1, "z": 5}) == pytest.approx([0.65, 0.35])


def test_mixture_without_overlap_is_an_error() -> None:
    with pytest.raises(ValueError, match="no community"):
        mixture({"a": [0.5, 0.5]}, {"b": 1.0})


def test_render_lists_most_likely_first() -> None:
    text = render_options(["yes", "no"], [0.3, 0.7], "Japan")
    assert text.splitlines() == [
        "Estimated answer distribution for Japan:",
        "- no: 70%",
        "- yes: 30%",
    ]
    views = render_perspectives(
        [
            Perspective(community="a", name="A", weight=0.25, text="x"),
            Perspective(community="b", name="B", weight=0.75, text="y"),
        ],
        None,
    )
    assert views.splitlines()[1] == "- B (75%): y"
