"""Answer memories: the file format and its errors, recall on the real MiniLM, and the blend
in distributional and steerable scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pluralism.answers import Answered, AnswerMemory, Recalled, blend, load_answers, write_answers
from pluralism.config import load_communities
from pluralism.core import Pluralism
from pluralism.embedding import CachedEmbedder
from pluralism.errors import ConfigError
from pluralism.models import ModelPool, ScriptedChatModel
from pluralism.settings import Settings

IMPORTANCE = ["Very important", "Somewhat important", "Not too important", "Not at all important"]
ANSWERED = [
    ("How important is religion in your life?", IMPORTANCE, [0.6, 0.2, 0.1, 0.1]),
    ("How important is it to you to live near family?", IMPORTANCE, [0.1, 0.2, 0.3, 0.4]),
    ("Do you or does anyone in your household own a gun?", ["Yes", "No"], [0.7, 0.3]),
    ("Should the death penalty be abolished?", ["No", "Yes"], [0.8, 0.2]),
]


@pytest.fixture()
def answers_file(tmp_path: Path) -> Path:
    return write_answers(tmp_path / "answers.jsonl", ANSWERED)


@pytest.fixture()
def memory(answers_file: Path, embedder: CachedEmbedder) -> AnswerMemory:
    return AnswerMemory.from_path(answers_file, embedder)


def test_a_written_file_reads_back_with_shares_normalised(tmp_path: Path) -> None:
    path = write_answers(tmp_path / "a.jsonl", [("Q?", ["a", "b"], [3, 1])])
    (answered,) = load_answers(path)
    assert answered.question == "Q?" and answered.options == ["a", "b"]
    assert answered.distribution == pytest.approx([0.75, 0.25])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "not a JSON object; write one"),
        ('{"question": "Q?", "options": ["a", "b"], "distribution": [1.0]}', "1 shares for 2"),
        ('{"question": "Q?", "options": ["a", "b"], "distribution": [1, -1]}', "non-negative"),
        ('{"question": "Q?", "options": ["a", "b"], "distribution": [0, 0]}', "sum to 0"),
        ('{"question": "", "options": ["a", "b"], "distribution": [1, 1]}', "question"),
        ('{"options": ["a", "b"], "distribution": [1, 1]}', "question"),
    ],
)
def test_a_broken_line_names_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps({"question": "Fine?", "options": ["a", "b"], "distribution": [1, 1]})
    path = tmp_path / "answers.jsonl"
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as err:
        load_answers(path)
    assert str(err.value).startswith(f"{path}:3: ")


def test_a_missing_or_empty_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; fix the community's `answers:`"):
        load_answers(tmp_path / "nope.jsonl")
    with (tmp_path / "huge.jsonl").open("wb") as fh:
        fh.truncate(50_000_001)  # sparse: the size is what is checked, before any read
    with pytest.raises(ConfigError, match="larger than 50 MB; keep the questions"):
        load_answers(tmp_path / "huge.jsonl")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_answers(tmp_path / "binary.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no answered questions"):
        load_answers(tmp_path / "empty.jsonl")


def test_recall_leans_on_the_most_similar_answered_question(memory: AnswerMemory) -> None:
    recalled = memory.recall("How important is faith in God in your life?", IMPORTANCE, k=2)
    assert recalled is not None
    assert recalled.neighbours[0][0] == "How important is religion in your life?"
    # Both answered questions share the scale; the religious one weighs more.
    assert recalled.distribution[0] > recalled.distribution[3]
    assert sum(recalled.distribution) == pytest.approx(1.0)


def test_a_sharper_temperature_leans_harder_on_the_nearest(memory: AnswerMemory) -> None:
    question = "How important is faith in God in your life?"
    shares = {
        t: memory.recall(question, IMPORTANCE, k=2, temperature=t) for t in (0.01, 0.2, 100.0)
    }
    assert all(r is not None for r in shares.values())
    sharp, default, flat = (shares[t].distribution[0] for t in (0.01, 0.2, 100.0))  # type: ignore[union-attr]
    # The nearest (religion) says 0.6 "very important", the other 0.1; the mean of both 0.35.
    assert sharp == pytest.approx(0.6, abs=1e-3)
    assert flat == pytest.approx(0.35, abs=1e-2)
    assert flat < default < sharp


def test_options_in_another_order_lend_their_shares_reordered(memory: AnswerMemory) -> None:
    # Answered as "No / Yes" (No 0.8); asked as "Yes / No": Yes must get 0.2, not 0.8.
    recalled = memory.recall("Should the death penalty be abolished?", ["Yes", "No"], k=1)
    assert recalled is not None
    assert recalled.neighbours[0] == ("Should the death penalty be abolished?", 1.0)
    assert recalled.distribution == pytest.approx([0.2, 0.8])


def test_options_count_position_by_position(embedder: CachedEmbedder) -> None:
    agree = ["Strongly agree", "Agree", "Disagree", "Strongly disagree"]
    rows = [(agree, [0.1, 0.2, 0.3, 0.4]), (IMPORTANCE, [0.4, 0.3, 0.2, 0.1])]
    memory = AnswerMemory(
        [
            Answered(question="Is the economy doing well?", options=o, distribution=d)
            for o, d in rows
        ],
        embedder,
    )
    recalled = memory.recall("Is the economy doing well?", agree, k=1)
    assert recalled is not None and recalled.distribution == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_recall_keeps_nothing_of_what_it_was_asked(memory: AnswerMemory) -> None:
    # A server asks about endless distinct questions; the memory must not grow with them.
    held = len(memory._vec)
    for i in range(5):
        memory.recall(f"Is question {i} new?", ["Sure", "Nope"])
    assert len(memory._vec) == held


def test_no_answered_question_with_as_many_options_recalls_nothing(memory: AnswerMemory) -> None:
    assert memory.recall("Pick one", ["a", "b", "c"]) is None


def test_blend_weighs_the_recalled_answers() -> None:
    recalled = Recalled(distribution=[1.0, 0.0], neighbours=[("q", 0.9)])
    assert blend([0.2, 0.8], recalled, 0.6) == pytest.approx([0.68, 0.32])
    assert blend([0.2, 0.8], recalled, 0.0) == pytest.approx([0.2, 0.8])


def _pool_with_answers(tmp_path: Path, answers: str | None) -> Path:
    line = f"answers: {answers}\n" if answers else ""
    (tmp_path / "faithful.yaml").write_text(
        "id: faithful\nkind: test\nname: Faithful\ndescription: Religious believers\n"
        f"persona: You speak as a believer.\n{line}",
        encoding="utf-8",
    )
    return tmp_path


def _plural(directory: Path, embedder: CachedEmbedder, **settings: object) -> Pluralism:
    models = ModelPool()
    models.register(Settings().meta_model, ScriptedChatModel(scores={o: 1.0 for o in IMPORTANCE}))
    return Pluralism(
        load_communities(directory),
        embedder=embedder,
        models=models,
        settings=Settings(**settings),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("mode", ["distributional", "steerable"])
def test_scoring_blends_the_communitys_answers_and_traces_them(
    tmp_path: Path, answers_file: Path, embedder: CachedEmbedder, mode: str
) -> None:
    directory = _pool_with_answers(tmp_path, answers_file.name)
    question = "How important is faith in God in your life?"
    kwargs = {"steer": "faithful"} if mode == "steerable" else {}
    plural = _plural(directory, embedder, answers_weight=0.5, answers_k=2)
    r = plural.respond(question, mode=mode, options=IMPORTANCE, **kwargs)  # type: ignore[arg-type]
    recalled = AnswerMemory.from_path(answers_file, embedder).recall(question, IMPORTANCE, k=2)
    assert recalled is not None
    expected = blend([0.25] * 4, recalled, 0.5)  # the scripted model scores options evenly
    assert r.distribution is not None
    assert list(r.distribution.values()) == pytest.approx(expected)
    assert any(
        n.startswith("answers: faithful blended 2 answered questions at weight 0.5")
        and "How important is religion" in n
        for n in r.trace.notes
    )
    assert any(k.startswith("answers[") for k in r.trace.timings)  # its own timing
    # At weight 0 the model's scores stand alone, and nothing is recalled.
    plain = _plural(directory, embedder, answers_weight=0.0)
    r0 = plain.respond(question, mode=mode, options=IMPORTANCE, **kwargs)  # type: ignore[arg-type]
    assert r0.distribution is not None
    assert list(r0.distribution.values()) == pytest.approx([0.25] * 4)
    assert not any(n.startswith("answers:") for n in r0.trace.notes)


def test_a_missing_answers_file_fails_the_request_with_its_path(
    tmp_path: Path, embedder: CachedEmbedder
) -> None:
    plural = _plural(_pool_with_answers(tmp_path, "gone.jsonl"), embedder)
    with pytest.raises(ConfigError, match=r"gone\.jsonl: answers file does not exist"):
        plural.respond("How important is faith?", mode="distributional", options=IMPORTANCE)


def test_an_edited_file_is_read_again_and_a_broken_edit_keeps_the_last_good(
    tmp_path: Path, embedder: CachedEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    from pluralism.answers import memory_for

    path = write_answers(tmp_path / "answers.jsonl", ANSWERED[:2])
    assert len(memory_for(path, embedder)) == 2
    assert memory_for(path, embedder) is memory_for(path, embedder)  # not re-read unchanged
    write_answers(path, ANSWERED)
    os.utime(path, ns=(1, 1))  # a new stamp even on a coarse-clocked file system
    assert len(memory_for(path, embedder)) == 4
    path.write_text("{broken\n", encoding="utf-8")
    with caplog.at_level("ERROR", logger="pluralism.answers"):
        kept = memory_for(path, embedder)
    assert len(kept) == 4
    assert "not a JSON object" in caplog.text and "last good answers" in caplog.text
