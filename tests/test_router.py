from __future__ import annotations

import math

import pytest

from pluralism.embedding import CachedEmbedder
from pluralism.errors import InputError, SteerNotFoundError
from pluralism.models import ScriptedChatModel
from pluralism.router import Router, RouterSettings, softmax_gate
from pluralism.types import Community


def test_softmax_gate_matches_softmax_when_nothing_is_cut() -> None:
    sims = [0.1, 0.3, 0.2]
    w = softmax_gate(sims, temperature=0.1, top_k=3, min_weight=0.0)
    exp = [math.exp(s / 0.1) for s in sims]
    assert w == pytest.approx([e / sum(exp) for e in exp])


def test_softmax_gate_keeps_top_k_above_min_weight_and_renormalises() -> None:
    w = softmax_gate([0.5, 0.49, 0.1, 0.48], temperature=0.05, top_k=2, min_weight=0.0)
    assert w[2] == 0 and w[3] == 0
    assert sum(w) == pytest.approx(1.0)
    w = softmax_gate([0.9, 0.1, 0.1], temperature=0.05, top_k=3, min_weight=0.05)
    assert w == [1.0, 0.0, 0.0]


def test_softmax_gate_never_routes_to_nobody() -> None:
    w = softmax_gate([0.2, 0.2], temperature=1.0, top_k=1, min_weight=0.99)
    assert sorted(w) == [0.0, 1.0]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InputError, match="temperature"):
        RouterSettings(temperature=0)
    with pytest.raises(InputError, match="top_k"):
        RouterSettings(top_k=0)


@pytest.fixture(scope="module")
def router(embedder: CachedEmbedder, default_pool: list[Community]) -> Router:
    return Router(default_pool, embedder)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Is it rude to eat with your left hand at a dinner in Nigeria?", "africa"),
        ("Should the government provide free healthcare for everyone?", "progressive"),
        ("What do Maori elders say about land and sea guardianship?", "oceania"),
    ],
)
def test_route_activates_the_relevant_community_first(
    router: Router, prompt: str, expected: str
) -> None:
    weights = router.route(prompt)
    assert next(iter(weights)) == expected
    assert sum(weights.values()) == pytest.approx(1.0)
    assert len(weights) <= router.settings.top_k


def test_repeated_prompt_is_served_from_cache(router: Router, embedder: CachedEmbedder) -> None:
    router.route("A prompt seen twice")
    before = len(embedder._cache)
    assert router.route("A prompt seen twice") == router.route("A prompt seen twice")
    assert len(embedder._cache) == before


@pytest.mark.parametrize(
    ("steer", "expected", "method"),
    [
        ("europe", "europe", "id"),
        ("Conservative", "conservative", "id"),
        ("a devout Catholic farmer in Poland", "europe", "embedding"),
        ("a Republican voter from Texas", "conservative", "embedding"),
        ("POLPARTY_Democrat", "progressive", "embedding"),
        ("a Kenyan schoolteacher", "africa", "embedding"),
    ],
)
def test_steer_matches_ids_and_descriptions(
    router: Router, steer: str, expected: str, method: str
) -> None:
    match = router.match(steer)
    assert (match.community.id, match.method) == (expected, method)
    assert 0 < match.score <= 1.5


def test_steer_that_matches_nothing_lists_the_communities(router: Router) -> None:
    with pytest.raises(SteerNotFoundError) as info:
        router.match("quantum chromodynamics lattice spacing")
    message = str(info.value)
    assert "No community matches" in message
    for cid in router.ids:
        assert cid in message


async def test_model_based_selection_and_its_fallback(router: Router) -> None:
    pick_second = ScriptedChatModel(responder=lambda batch, p: ["2"] * len(batch))
    match = await router.select_with_model("anyone", pick_second)
    assert (match.community.id, match.method) == (router.ids[1], "model")
    babble = ScriptedChatModel(responder=lambda batch, p: ["I am not sure"] * len(batch))
    match = await router.select_with_model("a farmer in Poland", babble)
    assert (match.community.id, match.method) == ("europe", "embedding")
