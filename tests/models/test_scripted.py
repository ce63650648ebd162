from __future__ import annotations

import pytest

from pluralism.models import ScriptedChatModel

from .conformance import ChatModelConformance


class TestScriptedConformance(ChatModelConformance):
    @pytest.fixture
    def model(self) -> ScriptedChatModel:
        return ScriptedChatModel()


def test_fixed_scores_are_normalised() -> None:
    model = ScriptedChatModel(scores={"yes": 3.0, "no": 1.0})
    assert model.score("q", ["yes", "no"]) == pytest.approx([0.75, 0.25])


def test_calls_record_batches() -> None:
    model = ScriptedChatModel()
    model.generate([[{"role": "user", "content": "a"}]] * 3)
    assert model.calls == [("generate", 3)]
