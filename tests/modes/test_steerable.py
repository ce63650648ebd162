from __future__ import annotations

from pluralism.modes.steerable import meta_messages
from pluralism.types import Community


def test_meta_prompt_is_conditioned_on_the_community_and_its_draft(
    default_pool: list[Community],
) -> None:
    europe = next(c for c in default_pool if c.id == "europe")
    msgs = meta_messages("Should I tip?", europe, "Service is usually included.")
    assert "Europe" in msgs[0]["content"]
    assert "Service is usually included." in msgs[-1]["content"]
    assert msgs[-1]["content"].startswith("Question: Should I tip?")
