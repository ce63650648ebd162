from __future__ import annotations

from pluralism.embedding import CachedEmbedder
from pluralism.modes.overton import (
    merge_near_duplicates,
    meta_messages,
    render_list,
    render_values,
    with_values,
)
from pluralism.types import Perspective, Rule, RuleHit


def p(cid: str, weight: float, text: str) -> Perspective:
    return Perspective(community=cid, name=cid.title(), weight=weight, text=text)


def test_near_duplicate_drafts_merge_into_the_heaviest(embedder: CachedEmbedder) -> None:
    drafts = [
        p("asia", 0.2, "Family elders should be consulted before any big decision."),
        p("africa", 0.5, "Elders in the family should be consulted before big decisions."),
        p("europe", 0.3, "Individual privacy is a right that the law must protect."),
    ]
    kept, merged = merge_near_duplicates(drafts, embedder, threshold=0.85)
    assert [k.community for k in kept] == ["africa", "europe"]
    assert kept[0].weight == 0.7
    assert merged == [["africa", "asia"]]


def test_distinct_drafts_are_all_kept(embedder: CachedEmbedder) -> None:
    drafts = [p("a", 0.6, "Guns should be banned."), p("b", 0.4, "Taxes should be lower.")]
    kept, merged = merge_near_duplicates(drafts, embedder, threshold=0.9)
    assert [k.community for k in kept] == ["a", "b"] and merged == []


def test_meta_prompt_presents_every_perspective_and_keeps_the_operator_system() -> None:
    msgs = meta_messages(
        "Is tipping required?",
        [p("europe", 0.5, "Service is included."), p("americas", 0.5, "Tip 20 percent.")],
        context="Rules that apply here:\n- be polite",
        system="You are ShopBot.",
        history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    )
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("You are ShopBot.")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    last = msgs[-1]["content"]
    for needle in ("Service is included.", "Tip 20 percent.", "Europe", "be polite"):
        assert needle in last


def test_list_style_names_each_view_heaviest_first() -> None:
    text = render_list([p("americas", 0.4, "Tip."), p("europe", 0.6, " Service is included. ")])
    assert text.splitlines() == [
        "Views differ on this:",
        "- Europe: Service is included.",
        "- Americas: Tip.",
    ]


def test_values_close_the_answer_as_a_list_and_reach_the_meta_prompt() -> None:
    hits = [
        RuleHit(rule=Rule(id="honesty", text="Honesty: telling the truth."), score=0.4),
        RuleHit(rule=Rule(id="trust", text=" Trust: being reliable. "), score=0.3),
    ]
    values = render_values(hits)
    assert values.splitlines() == [
        "Values that may be at stake:",
        "- Honesty: telling the truth.",
        "- Trust: being reliable.",
    ]
    assert with_values("An answer.  ", values) == f"An answer.\n\n{values}"
    assert render_values([]) == "" and with_values("An answer.", "") == "An answer."
    last = meta_messages("Is lying wrong?", [p("europe", 1.0, "No.")], values=values)[-1]
    assert "- Trust: being reliable." in last["content"]
    assert last["content"].endswith("says how each value above bears on it.")
