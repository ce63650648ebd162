"""SPRI with scripted models: parsing, critic fallback, refinement rounds, cache."""

from __future__ import annotations

from collections.abc import Sequence

from pluralism.models._protocol import Conversation
from pluralism.models.scripted import ScriptedChatModel
from pluralism.rules import PrincipleCache, format_principles, situate_principles
from pluralism.rules.situate import parse_principles, parse_score
from pluralism.types import GenerationParams, Rule, RuleHit

HITS = [
    RuleHit(
        rule=Rule(id="dose", text="Do not give medication doses. Refer to a pharmacist."), score=0.5
    ),
    RuleHit(rule=Rule(id="care", text="Respond with care to worried parents."), score=0.3),
]


def user(conv: Conversation) -> str:
    return next(m["content"] for m in reversed(conv) if m["role"] == "user")


class Critic(ScriptedChatModel):
    """Writes principles, rates them by a table, rewrites weak ones with 'specific'."""

    def __init__(
        self, ratings: dict[str, list[float]], *, can_score: bool = True, draft: str | None = None
    ) -> None:
        super().__init__(responder=self._respond)
        self.ratings = ratings
        self.can_score = can_score
        self.draft = draft

    def _respond(self, batch: Sequence[Conversation], _: GenerationParams) -> list[str]:
        out = []
        for conv in batch:
            u = user(conv)
            if u.startswith("Rules:") and "Write at most" in u:
                out.append(
                    self.draft
                    if self.draft is not None
                    else "1. Be vague about things\n"
                    "- Ask the child's weight and refer to a pharmacist"
                )
            elif "Rewrite it" in u:
                out.append("Refer the parent to a pharmacist for the exact ibuprofen dose")
            else:  # critic as text
                text = u.split("Principle: ", 1)[1].split("\n", 1)[0]
                out.append(f"I rate it {int(self._level(text))} out of 5")
        return out

    def _level(self, text: str) -> float:
        for key, levels in self.ratings.items():
            if key in text:
                return levels.pop(0) if len(levels) > 1 else levels[0]
        return 3.0

    def score_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str]
    ) -> list[list[float]]:
        if not self.can_score:
            raise NotImplementedError
        self.calls.append(("score", len(prompts)))
        rows = []
        for p in prompts:
            text = user(p).split("Principle: ", 1)[1].split("\n", 1)[0]  # type: ignore[arg-type]
            level = int(self._level(text))
            rows.append([1.0 if i + 1 == level else 0.0 for i in range(len(options))])
        return rows


def test_parsing_is_forgiving() -> None:
    assert parse_principles(
        "Sure! Here they are:\n1) Be kind to the user\n- Be kind to the user\n* short\n"
        "• Refer to a doctor when needed",
        5,
    ) == [
        "Sure! Here they are:",
        "Be kind to the user",
        "Refer to a doctor when needed",
    ]
    assert parse_score("I'd say 4.") == 4.0
    assert parse_score("ten out of ten") is None
    assert parse_score("7") is None


def test_good_principles_take_one_round() -> None:
    model = Critic({"vague": [5], "pharmacist": [5]})
    principles, rounds = situate_principles("How much ibuprofen for my kid?", HITS, model)
    assert rounds == 1
    assert [p.score for p in principles] == [5.0, 5.0]
    assert principles[1].text == "Ask the child's weight and refer to a pharmacist"


def test_weak_principles_are_refined_until_good() -> None:
    model = Critic({"vague": [2], "exact ibuprofen": [5], "weight": [5]})
    principles, rounds = situate_principles("How much ibuprofen for my kid?", HITS, model)
    assert rounds == 2
    assert principles[0].text == "Refer the parent to a pharmacist for the exact ibuprofen dose"
    assert all(p.score is not None and p.score >= 4 for p in principles)
    # The critic scored both principles in one batch, not one call each.
    assert ("score", 2) in model.calls


def test_rounds_are_capped_and_worse_rewrites_are_dropped() -> None:
    model = Critic({"vague": [2], "exact ibuprofen": [1], "weight": [5]})
    principles, rounds = situate_principles("q?", HITS, model, max_rounds=3)
    assert rounds == 3
    assert principles[0].text == "Be vague about things" and principles[0].score == 2.0


def test_text_critic_when_the_backend_cannot_score() -> None:
    model = Critic({"vague": [4], "weight": [5]}, can_score=False)
    principles, rounds = situate_principles("q?", HITS, model)
    assert (rounds, [p.score for p in principles]) == (1, [4.0, 5.0])


def test_unparseable_answer_falls_back_to_the_rules() -> None:
    model = Critic({}, draft="ok")
    principles, _ = situate_principles("q?", HITS, model, max_principles=2, max_rounds=1)
    assert [p.text for p in principles] == [
        "Do not give medication doses.",
        "Respond with care to worried parents.",
    ]


def test_default_scripted_model_does_not_crash() -> None:
    principles, rounds = situate_principles("q?", HITS, ScriptedChatModel(), max_principles=3)
    assert 1 <= rounds <= 3 and 1 <= len(principles) <= 3
    assert all(p.score is None or 1 <= p.score <= 5 for p in principles)


def test_cache_by_prompt_and_rules_version() -> None:
    cache = PrincipleCache()
    model = Critic({"vague": [5], "weight": [5]})
    first = situate_principles("q?", HITS, model, cache=cache, rules_version="v1")
    n = len(model.calls)
    assert situate_principles("q?", HITS, model, cache=cache, rules_version="v1") == first
    assert len(model.calls) == n
    situate_principles("q?", HITS, model, cache=cache, rules_version="v2")
    assert len(model.calls) > n


def test_format_principles() -> None:
    principles, _ = situate_principles("q?", HITS, Critic({"vague": [5], "weight": [5]}))
    text = format_principles(principles)
    assert text.splitlines()[0] == "Principles for this answer:"
    assert text.splitlines()[1] == "1. Be vague about things"
    assert format_principles([]) == ""


def test_a_critic_without_a_view_does_not_trigger_refinement() -> None:
    class Flat(Critic):
        def score_batch(
            self, prompts: Sequence[str | Conversation], options: Sequence[str]
        ) -> list[list[float]]:
            return [[0.2] * len(options) for _ in prompts]

    model = Flat({})
    principles, rounds = situate_principles("q?", HITS, model)
    assert rounds == 1
    assert [p.score for p in principles] == [None, None]


def test_one_paragraph_is_split_into_sentences() -> None:
    assert parse_principles(
        "Check the child's weight first. Then ask a pharmacist for help.", 3
    ) == [
        "Check the child's weight first.",
        "Then ask a pharmacist for help.",
    ]
