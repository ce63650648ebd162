"""The runner: item selection, resumable JSONL results, the summary and the report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pluralism.errors import InputError
from pluralism.eval._data import is_heldout, load_items
from pluralism.eval._methods import Answerer
from pluralism.eval._report import write_report
from pluralism.eval._runner import read_results, results_path, run, select
from pluralism.models import ScriptedChatModel
from tests.eval import fixtures as fx


class Interrupting(ScriptedChatModel):
    """Scores `budget` prompts, then fails as a Ctrl-C would."""

    def __init__(self, budget: int) -> None:
        super().__init__(scores={"Yes": 0.8, "No": 0.2, "Maybe": 0.1})
        self.budget = budget

    def score_batch(self, prompts: Sequence[Any], options: Sequence[str]) -> list[list[float]]:
        if self.budget <= 0:
            raise KeyboardInterrupt
        self.budget -= 1
        return super().score_batch(prompts, options)


def answerer(model: ScriptedChatModel, method: str = "vanilla") -> Answerer:
    ans = Answerer(method)  # type: ignore[arg-type]
    ans._model = model
    return ans


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    data = fx.write(tmp_path / "d.json", fx.distributional_rows())
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(
            "distributional",
            data,
            "vanilla",
            out=out,
            limit=10,
            answerer=answerer(Interrupting(4)),
            progress=False,
        )
    path = results_path(out, "distributional", data, "vanilla")
    assert len(read_results(path)) == 4
    with path.open("a") as fh:
        fh.write('{"key": "half a line')  # what a kill mid-write leaves
    second = Interrupting(100)
    summary = run(
        "distributional",
        data,
        "vanilla",
        out=out,
        limit=10,
        answerer=answerer(second),
        progress=False,
    )
    assert 100 - second.budget == 6  # only the rows not already done
    assert summary.n == 10 and summary.metric == "js_distance"
    rows = list(read_results(path).values())
    assert len(rows) == 10
    # Yes/No = .8/.2 is exact for Japan (gold .8/.2) and far for France (gold .3/.7).
    for r in rows:
        assert (r["score"] < 1e-6) == (r["attribute"] == "Japan")


def test_json_summary_has_the_contract_fields(tmp_path: Path) -> None:
    data = fx.write(tmp_path / "s.json", fx.steerable_oqa_rows())
    summary = run(
        "steerable",
        data,
        "vanilla",
        out=tmp_path,
        limit=4,
        answerer=answerer(Interrupting(100)),
        progress=False,
    )
    got = summary.as_json()
    assert set(got) == {"task", "method", "metric", "value", "n"}
    assert got["metric"] == "accuracy" and got["n"] == 4
    assert got["value"] == 0.0  # "Yes" is top, gold top is "No"


def test_selection_filters_split_attribute_and_population(tmp_path: Path) -> None:
    items = load_items(fx.write(tmp_path / "s.json", fx.steerable_oqa_rows()), "steerable")
    held, _ = select(items, split="heldout")
    assert all(is_heldout(it.question) for it in held)
    train, _ = select(items, split="train")
    assert len(held) + len(train) == len(items)
    rep, _ = select(items, attributes=["POLPARTY"])
    assert {it.attribute for it in rep} == {"POLPARTY_Republican"}
    kept, skipped = select(items, keep=lambda it: it.attribute.startswith("POLIDEOLOGY"))
    assert skipped == 6 and len(kept) == 6
    assert select(items, limit=3, seed=1)[0] == select(items, limit=3, seed=1)[0]
    with pytest.raises(InputError, match="widen"):
        select(items, attributes=["RELIG"])


def test_unknown_populations_are_skipped_for_every_method(tmp_path: Path) -> None:
    data = fx.write(tmp_path / "d.json", fx.distributional_rows(("Japan", "Atlantis")))
    summary = run(
        "distributional",
        data,
        "vanilla",
        out=tmp_path,
        answerer=answerer(Interrupting(100)),
        progress=False,
    )
    assert summary.n == 12 and summary.skipped == 12


def test_pluralism_method_uses_the_system(
    tmp_path: Path, default_pool: Any, embedder: Any, scripted_pool: Any
) -> None:
    from pluralism.core import Pluralism
    from pluralism.settings import Settings

    system = Pluralism(
        default_pool,
        embedder=embedder,
        models=scripted_pool,
        settings=Settings(rules_k=0, steer_threshold=-1.0),
    )
    ans = Answerer("pluralism", pluralism=system)
    data = fx.write(tmp_path / "s.json", fx.steerable_oqa_rows())
    summary = run(
        "steerable", data, "pluralism", out=tmp_path, limit=4, answerer=ans, progress=False
    )
    rows = read_results(summary.results).values()
    assert {r["info"]["steered_to"] for r in rows} <= {"conservative", "progressive", "moderate"}
    over = fx.write(tmp_path / "o.json", fx.overton_rows())

    class Everything:
        def covers(self, answer: str, values: Sequence[str]) -> list[bool]:
            return [True] * len(values)

    result = run(
        "overton", over, "pluralism", out=tmp_path, answerer=ans, judge=Everything(), progress=False
    )
    assert result.value == 1.0 and result.n == 2


class AllCovered:
    def covers(self, answer: str, values: Sequence[str]) -> list[bool]:
        return [bool(answer)] * len(values)


def test_resumed_rows_are_scored_by_the_current_judge(tmp_path: Path) -> None:
    data = fx.write(tmp_path / "o.json", fx.overton_rows())

    class NothingCovered:
        def covers(self, answer: str, values: Sequence[str]) -> list[bool]:
            return [False] * len(values)

    def judged_by(judge: Any, budget: int) -> Any:
        model = answerer(Interrupting(budget))
        return run(
            "overton", data, "vanilla", out=tmp_path, answerer=model, judge=judge, progress=False
        )

    assert judged_by(AllCovered(), 100).value == 1.0
    # Nothing left to answer: the stored answers are judged again, file and summary alike.
    again = judged_by(NothingCovered(), 0)
    assert again.value == 0.0
    assert {r["score"] for r in read_results(again.results).values()} == {0.0}


def test_list_style_is_a_run_of_its_own(
    tmp_path: Path, default_pool: Any, embedder: Any, scripted_pool: Any
) -> None:
    from pluralism.core import Pluralism
    from pluralism.settings import Settings

    over = fx.write(tmp_path / "o.json", fx.overton_rows())
    summaries = {}
    for name, style, top_k, values_k in (
        ("synthesize", "synthesize", 3, 5),
        ("list", "list", 3, 5),
        ("k5", "list", 5, 5),
        ("v0", "synthesize", 3, 0),
    ):
        system = Pluralism(
            default_pool,
            embedder=embedder,
            models=scripted_pool,
            settings=Settings(rules_k=0, overton_style=style, top_k=top_k, values_k=values_k),
        )
        summaries[name] = run(
            "overton",
            over,
            "pluralism",
            out=tmp_path,
            answerer=Answerer("pluralism", pluralism=system),
            judge=AllCovered(),
            progress=False,
        )
    listed = summaries["list"]
    # Not resumed from the synthesized answers: its own file, its own answers.
    assert listed.results.name == "overton-o-pluralism_list.jsonl"
    assert summaries["synthesize"].results.name == "overton-o-pluralism.jsonl"
    rows = read_results(listed.results).values()
    assert rows and all(r["answer"].startswith("Views differ on this:") for r in rows)
    assert listed.as_json()["style"] == "list"
    assert summaries["k5"].results.name == "overton-o-pluralism_list_k5.jsonl"
    assert summaries["k5"].as_json()["top_k"] == 5
    # Without the values list: a run of its own too.
    assert summaries["v0"].results.name == "overton-o-pluralism_v0.jsonl"
    assert summaries["v0"].as_json()["values_k"] == 0
    assert summaries["synthesize"].as_json()["style"] == "synthesize"
    assert "| pluralism_list |" in write_report(tmp_path).read_text()


def test_report_plots_every_method_side_by_side(tmp_path: Path) -> None:
    data = fx.write(tmp_path / "d.json", fx.distributional_rows())
    for method in ("vanilla", "prompting"):
        ans = answerer(Interrupting(100), method)
        run("distributional", data, method, out=tmp_path, limit=6, answerer=ans, progress=False)
    report = write_report(tmp_path)
    text = report.read_text()
    assert "| vanilla |" in text and "| prompting |" in text
    assert (tmp_path / "distributional-d-per-attribute.png").stat().st_size > 1000
    assert (tmp_path / "distributional-d-examples.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {s["method"] for s in summary} == {"vanilla", "prompting"}
