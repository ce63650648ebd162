"""The library end to end with the scripted model: every mode, every bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pluralism import (
    InputError,
    Mode,
    Pluralism,
    PluralResponse,
    PopulationNotFoundError,
    RuleMemory,
    Settings,
    SteerNotFoundError,
    UnknownModeError,
)
from pluralism.embedding import CachedEmbedder
from pluralism.models import ModelPool, ScriptedChatModel
from pluralism.types import Community, GenerationParams


@pytest.fixture()
def plural(
    default_pool: list[Community], embedder: CachedEmbedder, scripted_pool: ModelPool
) -> Pluralism:
    return Pluralism(default_pool, embedder=embedder, models=scripted_pool)


def test_overton_drafts_activated_communities_in_one_batch(
    plural: Pluralism, scripted: ScriptedChatModel
) -> None:
    r = plural.respond("Should the government provide free healthcare?", mode="overton")
    assert r.mode is Mode.OVERTON
    # One batch for every draft, then one meta call.
    assert scripted.calls == [("generate", len(r.trace.routing)), ("generate", 1)]
    assert r.perspectives and r.perspectives[0].community == "progressive"
    assert sum(p.weight for p in r.perspectives) == pytest.approx(1.0)
    # The meta-agent saw each kept perspective.
    for p in r.perspectives:
        assert p.name in r.text
    assert {"route", "recall", "aggregate", "answer", "total", "overhead"} <= set(r.trace.timings)
    assert r.trace.models["meta"] == "scripted"


@pytest.fixture()
def listing(
    default_pool: list[Community], embedder: CachedEmbedder, scripted_pool: ModelPool
) -> Pluralism:
    return Pluralism(
        default_pool,
        embedder=embedder,
        models=scripted_pool,
        settings=Settings(overton_style="list"),
    )


def test_overton_list_style_answers_with_the_drafts_and_no_meta_call(
    listing: Pluralism, scripted: ScriptedChatModel
) -> None:
    r = listing.respond("Should the government provide free healthcare?", mode="overton")
    assert scripted.calls == [("generate", len(r.trace.routing))]  # the drafts, nothing more
    assert "answer" not in r.trace.timings
    lines = r.text.splitlines()
    assert len(lines) == 1 + len(r.perspectives)
    for line, p in zip(lines[1:], r.perspectives, strict=True):
        assert line == f"- {p.name}: {p.text.strip()}"


def test_drafts_that_are_the_answer_share_the_requests_token_budget(
    listing: Pluralism,
) -> None:
    """A client's max_tokens bounds the whole answer, so list-style drafts split it."""
    prompt = "Should the government provide free healthcare?"
    free = listing.respond(prompt, mode="overton")
    assert max(len(p.text.split()) for p in free.perspectives) > 4  # the pool's own budget
    r = listing.respond(prompt, mode="overton", params=GenerationParams(max_tokens=12))
    n = len(r.trace.routing)
    assert n > 1 and all(len(p.text.split()) <= 12 // n for p in r.perspectives)
    shares = listing.respond(prompt, mode="distributional", params=GenerationParams(max_tokens=12))
    assert all(len(p.text.split()) <= 12 // len(shares.perspectives) for p in shares.perspectives)


async def test_overton_list_style_streams_no_tokens_only_the_response(
    listing: Pluralism,
) -> None:
    items = [x async for x in listing.astream("Is tipping required?", mode="overton")]
    assert len(items) == 1 and isinstance(items[0], PluralResponse)
    assert items[0].text.startswith("Views differ on this:")


def test_steerable_answers_as_the_matched_community(
    plural: Pluralism, scripted: ScriptedChatModel
) -> None:
    r = plural.respond("Should I tip at restaurants?", mode="steerable", steer="a farmer in Poland")
    assert r.steered_to == "europe"
    assert r.trace.steer_score is not None and r.trace.steer_score > 0.25
    assert [p.community for p in r.perspectives] == ["europe"]
    assert "Europe" in r.text  # the meta prompt names the community it answers as
    assert "European" in r.perspectives[0].text  # the draft came from Europe's persona


def test_steerable_with_options_returns_the_community_distribution(plural: Pluralism) -> None:
    r = plural.respond(
        "Is divorce acceptable?", mode="steerable", steer="conservative", options=["yes", "no"]
    )
    assert r.steered_to == "conservative"
    assert r.distribution is not None and sum(r.distribution.values()) == pytest.approx(1.0)
    assert r.text.startswith("As Conservative:")


def test_distributional_mixes_community_scores_by_population_weights(
    default_pool: list[Community], embedder: CachedEmbedder
) -> None:
    # Each community prefers a different option, so the mixture shows the population weights.
    def prefers(conv_text: str) -> dict[str, float]:
        if "conservative" in conv_text:
            return {"yes": 0.9, "no": 0.1}
        return {"yes": 0.2, "no": 0.8}

    class ByPersona(ScriptedChatModel):
        def score_batch(self, prompts, options):  # type: ignore[no-untyped-def]
            self.calls.append(("score", len(prompts)))
            return [[prefers(p[0]["content"])[o] for o in options] for p in prompts]

    pool = ModelPool()
    pool.register(Settings().meta_model, ByPersona())
    plural = Pluralism(default_pool, embedder=embedder, models=pool)
    r = plural.respond(
        "Should taxes be cut?",
        mode="distributional",
        population="POLPARTY_Republican",
        options=["yes", "no"],
    )
    w = r.trace.population_weights
    assert set(w) == {"progressive", "moderate", "conservative"}
    expected_yes = w["conservative"] * 0.9 + (1 - w["conservative"]) * 0.2
    assert r.distribution == pytest.approx({"yes": expected_yes, "no": 1 - expected_yes})
    assert r.text.startswith("Estimated answer distribution for POLPARTY_Republican")
    # All three communities were scored in one call.
    assert ("score", 3) in plural.models.get(Settings().meta_model).calls  # type: ignore[attr-defined]


def test_distributional_country_maps_to_its_continent(plural: Pluralism) -> None:
    r = plural.respond(
        "Is it fine to eat dog?",
        mode="distributional",
        population="Japan",
        options=["yes", "no", "depends"],
    )
    assert r.trace.population_weights == {"asia": 1.0}
    assert r.distribution == r.perspectives[0].distribution


def test_distributional_without_population_is_uniform_and_traced(plural: Pluralism) -> None:
    r = plural.respond("Is it fine to eat dog?", mode="distributional", options=["yes", "no"])
    assert len(r.trace.population_weights) == len(plural.communities)
    assert any("uniform" in n for n in r.trace.notes)


def test_distributional_without_options_gives_shares_of_perspectives(plural: Pluralism) -> None:
    r = plural.respond("What about gun control?", mode="distributional", population="Democrat")
    assert r.distribution is None
    assert r.perspectives[0].community == "progressive"
    assert sum(p.weight for p in r.perspectives) == pytest.approx(1.0)
    assert "Progressive (" in r.text


def test_unknown_population_can_fall_back_to_uniform(
    default_pool: list[Community], embedder: CachedEmbedder, scripted_pool: ModelPool
) -> None:
    lenient = Pluralism(
        default_pool,
        embedder=embedder,
        models=scripted_pool,
        settings=Settings(strict_population=False),
    )
    r = lenient.respond("q?", mode="distributional", population="Atlantis", options=["a", "b"])
    assert any("Atlantis" in n for n in r.trace.notes)


def recording(scripted: ScriptedChatModel) -> list[list[dict[str, str]]]:
    """Every conversation the scripted model is sent from now on, in order."""
    seen: list[list[dict[str, str]]] = []

    def record(batch, params):  # type: ignore[no-untyped-def]
        seen.extend([list(c) for c in batch])
        return ["ok"] * len(batch)

    scripted._responder = record
    return seen


def test_system_prompt_and_history_reach_the_meta_agent(
    plural: Pluralism, scripted: ScriptedChatModel
) -> None:
    seen = recording(scripted)
    plural.respond(
        "And in Japan?",
        mode="overton",
        system="You are TravelBot.",
        history=[
            {"role": "user", "content": "Tipping in the US?"},
            {"role": "assistant", "content": "Usually 20%."},
        ],
    )
    meta = seen[-1]
    assert meta[0]["content"].startswith("You are TravelBot.")
    assert [m["content"] for m in meta[1:3]] == ["Tipping in the US?", "Usually 20%."]
    drafts = seen[:-1]
    assert all(d[1]["content"] == "Tipping in the US?" for d in drafts)
    # The meta model applies the operator's instructions; the drafts are only its notes.
    assert not any("TravelBot" in d[0]["content"] for d in drafts)


def test_overton_style_can_be_chosen_per_request(
    plural: Pluralism, scripted: ScriptedChatModel
) -> None:
    r = plural.respond("Is tipping required?", mode="overton", overton_style="list")
    assert r.text.startswith("Views differ on this:")
    assert scripted.calls == [("generate", len(r.trace.routing))]  # no meta call
    with pytest.raises(InputError, match="Unknown Overton style 'essay'; use one of"):
        plural.respond("Is tipping required?", mode="overton", overton_style="essay")


@pytest.mark.parametrize("mode", ["overton", "distributional"])
def test_system_prompt_reaches_drafts_that_are_the_answer(
    listing: Pluralism, scripted: ScriptedChatModel, mode: str
) -> None:
    # Overton in the list style and distributional without options answer with the drafts.
    seen = recording(scripted)
    population = "Democrat" if mode == "distributional" else None
    r = listing.respond("Tipping?", mode=mode, system="Answer in French.", population=population)
    assert len(seen) == len(r.trace.routing) >= 1  # drafts only, no meta call
    for conv in seen:
        assert conv[0]["content"].startswith("Answer in French.\n\n")
        assert len(conv[0]["content"]) > len("Answer in French.\n\n")  # the persona follows


async def test_astream_yields_text_then_the_response(plural: Pluralism) -> None:
    items = [x async for x in plural.astream("Is tipping required?", mode="overton")]
    *tokens, final = items
    assert tokens and all(isinstance(t, str) for t in tokens)
    assert isinstance(final, PluralResponse)
    assert final.text == "".join(tokens).strip()
    assert "first_token" in final.trace.timings


async def test_arespond_runs_concurrently(plural: Pluralism) -> None:
    rs = await asyncio.gather(
        *[plural.arespond(f"question {i}?", mode="overton") for i in range(4)]
    )
    assert [r.mode for r in rs] == [Mode.OVERTON] * 4


def test_respond_works_inside_a_running_loop(plural: Pluralism) -> None:
    async def inside() -> PluralResponse:
        return plural.respond("Is tipping required?", mode="overton")

    assert asyncio.run(inside()).text


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"mode": "consensus"}, UnknownModeError, "use one of: overton, steerable, distributional"),
        ({"mode": "overton", "prompt": "   "}, InputError, "The prompt is empty"),
        ({"mode": "distributional", "options": ["only"]}, InputError, "at least two"),
        ({"mode": "distributional", "options": ["a", ""]}, InputError, "at least two non-empty"),
        ({"mode": "distributional", "options": ["a", "a"]}, InputError, "repeat"),
        ({"mode": "steerable"}, InputError, "needs a steer target"),
        ({"mode": "steerable", "steer": "lattice QCD"}, SteerNotFoundError, "No community matches"),
        ({"mode": "distributional", "population": "Atlantis"}, PopulationNotFoundError, "Atlantis"),
    ],
)
def test_bad_input_raises_a_typed_error_with_advice(
    plural: Pluralism, kwargs: dict[str, object], error: type[Exception], needle: str
) -> None:
    prompt = str(kwargs.pop("prompt", "Is tipping required?"))
    with pytest.raises(error, match=needle):
        plural.respond(prompt, **kwargs)


def test_settings_reject_unknown_fields() -> None:
    with pytest.raises(ValueError, match="temprature"):
        Settings(temprature=1)  # type: ignore[call-arg]


def test_tag_scoped_rules_apply_only_to_requests_with_the_tag(
    default_pool: list[Community],
    embedder: CachedEmbedder,
    scripted_pool: ModelPool,
    tmp_path: Path,
) -> None:
    from pluralism.rules import RuleMemory

    (tmp_path / "care.yaml").write_text(
        "rules:\n"
        "  - id: dosage-clinic\n"
        "    text: Give no medication doses; refer to the clinic's pharmacist.\n"
        "    scope: {tags: [medical]}\n"
        "  - id: dosage-general\n"
        "    text: Do not give specific medication doses; suggest a licensed professional.\n",
        encoding="utf-8",
    )
    rules = RuleMemory.from_path(tmp_path, embedder=embedder)
    plural = Pluralism(default_pool, embedder=embedder, models=scripted_pool, rules=rules)
    prompt = "How much ibuprofen can I take for a headache?"
    plain = plural.respond(prompt, mode="overton")
    tagged = plural.respond(prompt, mode="overton", tags=["medical", " "])
    assert "dosage-general" in plain.trace.rules and "dosage-clinic" not in plain.trace.rules
    assert "dosage-clinic" in tagged.trace.rules
    with pytest.raises(InputError, match="list of names"):
        plural.request(prompt, tags="medical")


def test_a_model_that_cannot_load_adapters_answers_without_them_and_says_so_once(
    default_pool: list[Community],
    embedder: CachedEmbedder,
    scripted_pool: ModelPool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The shipped communities name adapters trained for the bundled model; pointed at another
    # model (here the scripted one, for users an OpenAI-compatible server) they still answer.
    assert all(c.adapter for c in default_pool)
    plural = Pluralism(default_pool, embedder=embedder, models=scripted_pool)
    with caplog.at_level("WARNING", logger="pluralism._calls"):
        for _ in range(2):
            r = plural.respond("Is it rude to be late?", mode="steerable", steer="europe")
            assert r.steered_to == "europe" and r.text
    warned = [m for m in caplog.messages if "cannot load adapters" in m and "'europe'" in m]
    assert len(warned) == 1


@pytest.fixture()
def values_dir(tmp_path: Path) -> Path:
    (tmp_path / "values.yaml").write_text(
        "rules:\n"
        "  - id: honesty\n"
        "    text: 'Honesty: telling the truth and not deceiving people.'\n"
        "  - id: animal-welfare\n"
        "    text: 'Animal welfare: animals should not suffer needlessly.'\n"
        "  - id: property\n"
        "    text: 'Property: owning things and having that ownership respected.'\n",
        encoding="utf-8",
    )
    return tmp_path


@pytest.fixture()
def values(values_dir: Path, embedder: CachedEmbedder) -> RuleMemory:
    return RuleMemory.from_path(values_dir, embedder=embedder)


def test_overton_answers_end_with_the_values_the_prompt_recalls(
    default_pool: list[Community],
    embedder: CachedEmbedder,
    scripted_pool: ModelPool,
    values: RuleMemory,
) -> None:
    for style in ("synthesize", "list"):
        plural = Pluralism(
            default_pool,
            embedder=embedder,
            models=scripted_pool,
            values=values,
            settings=Settings(overton_style=style, values_k=1),  # type: ignore[arg-type]
        )
        r = plural.respond("Is it dishonest to lie to a friend?", mode="overton")
        assert r.trace.values == ["honesty"]
        assert r.trace.values_version == values.version
        body, listed = r.text.split("\n\nValues that may be at stake:\n")
        assert body.strip() and listed == "- Honesty: telling the truth and not deceiving people."

    # The meta model is told the values too, so a capable one can say how each bears.
    plural = Pluralism(default_pool, embedder=embedder, models=scripted_pool, values=values)
    r = plural.respond("Should I adopt a stray cat?", mode="overton")
    assert "animal-welfare" in r.trace.values


def test_values_are_named_only_in_overton_and_can_be_turned_off(
    default_pool: list[Community],
    embedder: CachedEmbedder,
    scripted_pool: ModelPool,
    values: RuleMemory,
) -> None:
    on = Pluralism(default_pool, embedder=embedder, models=scripted_pool, values=values)
    steered = on.respond("Is lying ever right?", mode="steerable", steer="europe")
    assert steered.trace.values == [] and "Values that may be at stake" not in steered.text
    off = Pluralism(
        default_pool,
        embedder=embedder,
        models=scripted_pool,
        values=values,
        settings=Settings(values_k=0),
    )
    r = off.respond("Is it dishonest to lie to a friend?", mode="overton")
    assert r.trace.values == [] and r.trace.values_version is None
    assert "Values that may be at stake" not in r.text


async def test_astream_sends_the_values_after_the_meta_models_text(
    default_pool: list[Community],
    embedder: CachedEmbedder,
    scripted_pool: ModelPool,
    values: RuleMemory,
) -> None:
    plural = Pluralism(default_pool, embedder=embedder, models=scripted_pool, values=values)
    *tokens, final = [x async for x in plural.astream("Is lying dishonest?", mode="overton")]
    assert isinstance(final, PluralResponse) and final.trace.values
    assert tokens[-1].startswith("\n\nValues that may be at stake:\n- ")
    assert final.text == "".join(tokens).strip()


def test_the_shipped_values_catalogue_names_what_is_at_stake(
    default_pool: list[Community], embedder: CachedEmbedder, scripted_pool: ModelPool
) -> None:
    """The default catalogue, with the real MiniLM, recalls values a reader would name."""
    plural = Pluralism.default(models=scripted_pool, embedder=embedder)
    cases = {
        "Is it okay to lie to my boss to cover for a coworker?": {
            "honesty",
            "duty-to-tell-the-truth",
        },
        "Is it okay to read my partner's private messages without asking?": {
            "privacy",
            "right-to-privacy",
        },
        "Should adult children look after their elderly parents?": {"duty-to-care-for-parents"},
        "Is it wrong to keep a dog chained in the yard all day?": {
            "animal-welfare",
            "duty-to-treat-animals-humanely",
        },
    }
    for prompt, expected in cases.items():
        r = plural.respond(prompt, mode="overton")
        assert 1 <= len(r.trace.values) <= Settings().values_k
        assert expected & set(r.trace.values), (prompt, r.trace.values)
