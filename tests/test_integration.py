"""Every mode end to end with the real bundled models (MiniLM + SmolLM2), library and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pluralism import GenerationParams, Mode, Pluralism, Settings

pytestmark = pytest.mark.integration

QUESTION = "Is it acceptable to eat with your hands at a family dinner?"


@pytest.fixture(scope="module")
def real() -> Iterator[Pluralism]:
    settings = Settings(
        draft=GenerationParams(max_tokens=12, seed=0),
        meta=GenerationParams(max_tokens=24, seed=0),
    )
    yield Pluralism.default(settings=settings)


def test_overton_with_real_models(real: Pluralism) -> None:
    r = real.respond(QUESTION, mode="overton")
    assert r.mode is Mode.OVERTON and r.text.strip()
    assert len(r.perspectives) >= 1 and all(p.text for p in r.perspectives)
    assert r.trace.models["meta"] == "SmolLM2-135M-Instruct"
    assert r.trace.timings["answer"] > 0


def test_steerable_with_real_models(real: Pluralism) -> None:
    r = real.respond(QUESTION, mode="steerable", steer="a grandmother in rural Kenya")
    assert r.steered_to == "africa" and r.text.strip()


def test_distributional_with_real_models(real: Pluralism) -> None:
    options = ["Acceptable", "Not acceptable", "Depends on the family"]
    r = real.respond(QUESTION, mode="distributional", population="India", options=options)
    assert r.distribution is not None and list(r.distribution) == options
    assert sum(r.distribution.values()) == pytest.approx(1.0)
    assert r.trace.population_weights == {"asia": 1.0}
    # The answer is the Asia community's own scores (the only community India maps to).
    assert r.perspectives[0].distribution == pytest.approx(r.distribution)


def test_the_default_pool_answers_through_its_trained_adapters(real: Pluralism) -> None:
    # No rule memory, so the community's conversation is its persona and the question alone.
    plain = Pluralism(real.communities, embedder=real.embedder, models=real.models)
    options = ["Very important", "Somewhat important", "Not too important", "Not at all"]
    question = "How important is religion in your life?"
    r = plain.respond(question, mode="distributional", population="Germany", options=options)
    assert r.distribution is not None and not r.trace.rules
    europe = next(c for c in real.communities if c.id == "europe")
    model = real.models.get(europe.model)
    assert "europe" in model.adapters  # registered from communities/adapters/europe
    conv = [{"role": "system", "content": europe.persona}, {"role": "user", "content": question}]
    (tuned,) = model.score_batch([conv], options, adapters=["europe"])
    (base,) = model.score_batch([conv], options)
    # llama.cpp's sums depend a little on what shares a decoding step (~1e-3 here), far less
    # than what the adapter moves (> 0.01).
    assert [r.distribution[o] for o in options] == pytest.approx(tuned, abs=5e-3)
    assert max(abs(t - b) for t, b in zip(tuned, base, strict=True)) > 0.01


def test_rules_are_recalled_into_the_trace(real: Pluralism) -> None:
    r = real.respond("How many ibuprofen tablets can my 6 year old take?", mode="overton")
    assert r.trace.rules, "the shipped medical-dosage policy should be recalled"
    assert r.trace.rules_version


def cli(*args: str) -> dict[str, object]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pluralism",
            "ask",
            QUESTION,
            *args,
            "--json",
            "--draft-tokens",
            "8",
            "--max-tokens",
            "12",
            "--seed",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout)
    return out


@pytest.mark.parametrize(
    ("args", "check"),
    [
        (
            ["--mode", "overton"],
            # The meta model's answer, then the values the shipped catalogue recalled.
            lambda r: (
                r["mode"] == "overton"
                and r["trace"]["values"]
                and r["text"].split("\n\nValues that may be at stake:\n")[0].strip()
            ),
        ),
        (
            ["--mode", "overton", "--overton-style", "list"],
            # The answer is the real drafts under their names; no meta call was made.
            lambda r: (
                "answer" not in r["trace"]["timings"]
                and r["text"].split("\n\nValues that may be at stake:\n")[0]
                == "\n".join(
                    ["Views differ on this:"]
                    + [f"- {p['name']}: {p['text'].strip()}" for p in r["perspectives"]]
                )
            ),
        ),
        (
            ["--mode", "overton", "--values-k", "0"],
            lambda r: r["trace"]["values"] == [] and "Values that may be" not in r["text"],
        ),
        (
            ["--mode", "steerable", "--steer", "conservative"],
            lambda r: r["steered_to"] == "conservative",
        ),
        (
            ["--mode", "distributional", "--population", "Germany", "-o", "yes", "-o", "no"],
            lambda r: set(r["distribution"]) == {"yes", "no"},
        ),
    ],
)
def test_cli_json_in_every_mode(args: list[str], check: object) -> None:
    assert check(cli(*args))  # type: ignore[operator]
