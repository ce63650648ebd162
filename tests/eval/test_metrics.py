"""Metric maths against hand-computed values, and the coverage judge's behaviour."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from pluralism.eval._metrics import (
    CALIBRATION,
    EmbeddingJudge,
    coverage,
    js_distance,
    mean,
    real_pairs,
    top_match,
    units,
    windows,
)


def test_js_distance_matches_hand_computation() -> None:
    # Disjoint supports: JS divergence is ln 2 with natural logs, so the distance is sqrt(ln 2).
    assert js_distance([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)))
    # p=(.5,.5), q=(1,0): m=(.75,.25); KL(p||m)=.143841, KL(q||m)=.287682 → sqrt(mean)=.464502.
    assert js_distance([0.5, 0.5], [1, 0]) == pytest.approx(0.464502, abs=1e-6)
    assert js_distance([0.2, 0.8], [0.2, 0.8]) == pytest.approx(0.0, abs=1e-7)
    assert js_distance([2, 2], [1, 0]) == pytest.approx(0.464502, abs=1e-6)  # unnormalised input


def test_top_match_and_mean() -> None:
    assert top_match([0.1, 0.7, 0.2], [0.2, 0.5, 0.3])
    assert not top_match([0.6, 0.4], [0.4, 0.6])
    assert mean([1.0, 0.0, 0.5]) == 0.5
    assert math.isnan(mean([]))


class KeywordJudge:
    """A judge users could plug in: covered when the value's first word appears."""

    def covers(self, answer: str, values: Sequence[str]) -> list[bool]:
        return [v.split(":")[0].casefold() in answer.casefold() for v in values]


def test_coverage_uses_any_pluggable_judge() -> None:
    judge = KeywordJudge()
    values = ["Honesty: be truthful", "Loyalty: stand by friends", "Safety: avoid harm"]
    assert coverage(judge, "Honesty and loyalty both matter.", values) == pytest.approx(2 / 3)
    assert coverage(judge, "anything", []) == 0.0


@pytest.fixture(scope="module")
def judge(embedder: object) -> EmbeddingJudge:
    return EmbeddingJudge(embedder)


def test_embedding_judge_threshold_matches_its_calibration(judge: EmbeddingJudge) -> None:
    calibrated = EmbeddingJudge(judge.embedder)
    threshold = calibrated.calibrate()
    assert threshold == pytest.approx(judge.threshold, abs=0.02)
    written = sum(calibrated.covers(a, [v])[0] == ok for v, a, ok in CALIBRATION)
    assert written >= 25  # of 30
    real = real_pairs()
    assert len(real) == 120
    assert sum(calibrated.covers(a, [v])[0] == ok for v, a, ok in real) >= 80


def test_the_judge_is_about_as_lenient_as_the_hand_labels_on_real_answers(
    judge: EmbeddingJudge,
) -> None:
    # Under the written pairs alone (0.26) the judge called 84% of these values covered; by hand
    # 39% are. A judge that lenient scores any rambling answer near the top.
    real = real_pairs()
    labelled = sum(ok for _, _, ok in real) / len(real)
    judged = sum(judge.covers(a, [v])[0] for v, a, _ in real) / len(real)
    assert labelled == pytest.approx(0.39, abs=0.01)
    assert abs(judged - labelled) < 0.1
    assert sum(
        EmbeddingJudge(judge.embedder, 0.26).covers(a, [v])[0] for v, a, _ in real
    ) > 0.8 * len(real)


def test_embedding_judge_is_monotone_in_what_the_answer_says(judge: EmbeddingJudge) -> None:
    values = [
        "Honesty: telling the truth matters",
        "Loyalty: standing by your friends",
        "Safety: protecting people from harm",
    ]
    answers = [
        "",
        "You should tell the truth.",
        "You should tell the truth. Stand by your friends too.",
        "You should tell the truth. Stand by your friends too. Make sure nobody gets hurt.",
    ]
    scores = [coverage(judge, a, values) for a in answers]
    assert scores == sorted(scores)
    assert scores[0] == 0.0 and scores[-1] == 1.0


def test_windows_cover_every_word_in_runs_of_at_most_twenty() -> None:
    words = [f"w{i}" for i in range(47)]
    got = windows(" ".join(words))
    assert all(len(w.split()) <= 20 for w in got)
    assert {x for w in got for x in w.split()} == set(words)
    assert got[-1].split()[-1] == "w46"
    assert windows("a short one") == ["a short one"]


def test_a_run_on_sentence_is_judged_like_the_same_words_on_short_lines(
    judge: EmbeddingJudge,
) -> None:
    # The sentence judge scored layout: one 60-word run-on blurred into a single embedding,
    # while the same words on short lines each embedded sharply.
    points = [
        "people should always tell the truth to each other even when it is hard to hear",
        "friends deserve loyalty and support from one another through good times and bad",
        "nobody should be put in danger or harmed by what someone else decides to do",
    ]
    run_on = " and ".join(points) + "."
    lines = "\n".join(points)
    assert all(len(u.split()) <= 20 for u in units(run_on))
    values = ["Honesty", "Loyalty", "Safety from harm"]
    assert judge.covers(run_on, values) == judge.covers(lines, values) == [True] * 3
