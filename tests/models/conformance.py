"""What every `ChatModel` backend must do, whatever runs behind it.

A backend's test module subclasses `ChatModelConformance` and provides a `model` fixture, the
way LangGraph's checkpoint-conformance suite is reused by every saver. Generations stay short
so the suite is cheap against a real model.
"""

from __future__ import annotations

import math

import pytest

from pluralism.errors import InputError
from pluralism.models import ChatModel
from pluralism.types import GenerationParams, Message

SHORT = GenerationParams(max_tokens=8)
PERSONAS = [
    "You are a rice farmer in rural Vietnam.",
    "You are a software engineer in Berlin.",
    "You are a retired teacher in Nairobi.",
]


def conv(system: str | None, user: str) -> list[Message]:
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": user}]


class ChatModelConformance:
    # Whether a conversation gets the same greedy text inside a batch as alone. llama.cpp's
    # kernels depend on how many tokens a step decodes, so a near tie can break differently
    # in a batch; such a backend sets this False and the order is checked by content instead.
    batch_invariant = True

    @pytest.fixture
    def model(self) -> ChatModel:
        raise NotImplementedError("a backend's test class provides the model fixture")

    def test_satisfies_protocol(self, model: ChatModel) -> None:
        assert isinstance(model, ChatModel)
        assert model.model_id

    def test_generate_one_text_per_conversation_in_order(self, model: ChatModel) -> None:
        batch = [
            conv(None, "Name one fruit."),
            conv(None, "Name one colour."),
            conv(None, "Say hello."),
        ]
        out = model.generate(batch, SHORT)
        assert len(out) == len(batch)
        assert all(isinstance(t, str) and t.strip() for t in out)
        if self.batch_invariant:
            # Order: each row of the batch is what that conversation gets on its own.
            assert [model.generate([c], SHORT)[0] for c in batch] == out
        else:
            # Order: the greeting comes back in the greeting's row, alone or batched.
            assert "hello" in out[2].lower() and "hello" not in out[0].lower()
            assert "hello" in model.generate([batch[2]], SHORT)[0].lower()

    def test_generate_empty_batch(self, model: ChatModel) -> None:
        assert model.generate([], SHORT) == []

    def test_batch_keeps_each_system_prompt(self, model: ChatModel) -> None:
        batch = [conv(p, "What matters most in a good life?") for p in PERSONAS]
        out = model.generate(batch, SHORT)
        assert len(out) == 3 and all(t.strip() for t in out)
        assert len(set(out)) > 1, "different personas should not all get the same answer"

    def test_same_seed_same_sample(self, model: ChatModel) -> None:
        p = GenerationParams(max_tokens=12, temperature=0.9, top_p=0.95, seed=1234)
        batch = [conv(PERSONAS[0], "Describe your morning.")]
        assert model.generate(batch, p) == model.generate(batch, p)

    def test_max_tokens_is_respected(self, model: ChatModel) -> None:
        c = [conv(None, "Tell me a long story about a dragon and a village.")]
        short = model.generate(c, GenerationParams(max_tokens=4))[0]
        longer = model.generate(c, GenerationParams(max_tokens=16))[0]
        # A word is at least one token, so words can only undercount tokens.
        assert 0 < len(short.split()) <= 5
        assert len(short) <= len(longer)

    def test_score_is_a_distribution_over_the_options(self, model: ChatModel) -> None:
        options = ["yes", "no", "it depends"]
        probs = model.score("Should cities ban cars from their centres?", options)
        assert len(probs) == len(options)
        assert all(p >= 0 for p in probs)
        assert math.isclose(sum(probs), 1.0, abs_tol=1e-6)

    def test_score_batch_one_row_per_prompt(self, model: ChatModel) -> None:
        options = ["strongly agree", "agree", "disagree", "strongly disagree"]
        prompts = [
            "Family is the most important thing in life.",
            conv(PERSONAS[1], "Family is the most important thing in life."),
        ]
        rows = model.score_batch(prompts, options)
        assert len(rows) == 2
        for row in rows:
            assert len(row) == 4
            assert math.isclose(sum(row), 1.0, abs_tol=1e-6)

    @pytest.mark.parametrize("options", [[], ["only one"]])
    def test_score_needs_two_options(self, model: ChatModel, options: list[str]) -> None:
        with pytest.raises(InputError, match="at least 2 options"):
            model.score("Pick one.", options)

    async def test_astream_yields_the_answer_in_pieces(self, model: ChatModel) -> None:
        pieces = [p async for p in model.astream(conv(PERSONAS[2], "Say something kind."), SHORT)]
        assert pieces and all(isinstance(p, str) for p in pieces)
        assert "".join(pieces).strip()

    async def test_async_twins_agree_with_sync(self, model: ChatModel) -> None:
        batch = [conv(p, "Name one virtue.") for p in PERSONAS[:2]]
        if self.batch_invariant:
            assert await model.agenerate(batch, SHORT) == model.generate(batch, SHORT)
        else:
            # Two requests may or may not share a decoding step (timing decides), which moves
            # near ties; each alone is deterministic.
            for c in batch:
                assert await model.agenerate([c], SHORT) == model.generate([c], SHORT)
        tol = 1e-5 if self.batch_invariant else 5e-3
        options = ["yes", "no"]
        sync = model.score("Is honesty always right?", options)
        got = await model.ascore("Is honesty always right?", options)
        assert got == pytest.approx(sync, abs=tol)
        rows = await model.ascore_batch(["Is honesty always right?"], options)
        assert rows[0] == pytest.approx(sync, abs=tol)
