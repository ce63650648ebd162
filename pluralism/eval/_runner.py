"""Running one task with one method: item selection, resumable JSONL results, the summary.

Each finished item is appended to `<out>/<task>-<data>-<method>.jsonl` and flushed at once, so an
interrupted run (Ctrl-C, a killed job) loses at most the item in flight; rerunning the same
command skips what is already there, scoring it again in case the metric or judge changed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pluralism.errors import InputError
from pluralism.eval._data import Item, Task, is_heldout, load_items
from pluralism.eval._methods import (
    DEFAULT_TOP_K,
    DEFAULT_VALUES_K,
    Answerer,
    Method,
    method_label,
)
from pluralism.eval._metrics import CoverageJudge, coverage, js_distance, mean, top_match
from pluralism.types import OvertonStyle

Split = Literal["all", "heldout", "train"]
METRICS: dict[Task, str] = {
    "overton": "coverage",
    "steerable": "accuracy",
    "distributional": "js_distance",
}


@dataclass
class Summary:
    task: Task
    method: Method
    metric: str
    value: float
    n: int
    skipped: int
    results: Path
    overton_style: OvertonStyle = "synthesize"
    top_k: int = DEFAULT_TOP_K
    values_k: int = DEFAULT_VALUES_K

    @property
    def label(self) -> str:
        return method_label(self.method, self.overton_style, self.top_k, self.values_k)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "method": self.method,
            "metric": self.metric,
            "value": round(self.value, 4),
            "n": self.n,
        }
        if self.task == "overton" and self.method == "pluralism":
            out["style"] = self.overton_style
            out["top_k"] = self.top_k
            out["values_k"] = self.values_k
        return out


def results_path(out: Path, task: Task, data: Path, label: str) -> Path:
    """`label` is the method's (`Answerer.label`): it names the settings a run used."""
    return out / f"{task}-{data.stem}-{label}.jsonl"


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """Results already written; a line cut short by an interruption is ignored (redone)."""
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "key" in row:
            done[str(row["key"])] = row
    return done


def select(
    items: Sequence[Item],
    *,
    split: Split = "all",
    attributes: Sequence[str] = (),
    limit: int | None = None,
    seed: int = 0,
    keep: Callable[[Item], bool] | None = None,
) -> tuple[list[Item], int]:
    """The items a run covers, in a seeded order so a `--limit` sample spans many attributes;
    returns them and how many were dropped for a population the pool cannot weigh."""
    chosen = [
        it for it in items if split == "all" or is_heldout(it.question) == (split == "heldout")
    ]
    if attributes:
        prefixes = tuple(a.casefold() for a in attributes)
        chosen = [it for it in chosen if it.attribute.casefold().startswith(prefixes)]
    skipped = 0
    if keep is not None:
        before = len(chosen)
        chosen = [it for it in chosen if keep(it)]
        skipped = before - len(chosen)
    random.Random(seed).shuffle(chosen)
    if limit is not None:
        chosen = chosen[:limit]
    if not chosen:
        raise InputError(
            "No rows left to evaluate after --split/--attribute filtering; widen the filters."
        )
    return chosen, skipped


def score_row(task: Task, item: Item, row: dict[str, Any], judge: CoverageJudge | None) -> float:
    if task == "distributional":
        return js_distance(row["pred"], item.gold)
    if task == "steerable":
        if item.label:
            letters = "ABC"
            pred = row["pred"]
            return float(letters[max(range(len(pred)), key=pred.__getitem__)] == item.label)
        return float(top_match(row["pred"], item.gold))
    assert judge is not None
    return coverage(judge, row["answer"], item.values)


def run(
    task: Task,
    data: str | Path,
    method: Method,
    *,
    out: str | Path,
    limit: int | None = None,
    seed: int = 0,
    split: Split = "all",
    attributes: Sequence[str] = (),
    communities: str | Path | None = None,
    judge: CoverageJudge | None = None,
    answerer: Answerer | None = None,
    progress: bool = True,
    overton_style: OvertonStyle = "synthesize",
    top_k: int = DEFAULT_TOP_K,
    values_k: int = DEFAULT_VALUES_K,
) -> Summary:
    """Evaluate `method` on `task` rows of `data`, resuming from earlier results in `out`."""
    data_path = Path(data)
    items = load_items(data_path, task)
    ans = answerer or Answerer(
        method,
        communities=communities,
        seed=seed,
        overton_style=overton_style,
        top_k=top_k,
        values_k=values_k,
    )
    keep = None
    if task == "distributional":
        # Only rows whose population the pool can weigh; the same rows for every method.
        known: dict[str, bool] = {}

        def keep(it: Item) -> bool:
            if it.attribute not in known:
                known[it.attribute] = ans.knows(it.attribute)
            return known[it.attribute]

    chosen, skipped = select(
        items, split=split, attributes=attributes, limit=limit, seed=seed, keep=keep
    )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = results_path(out_dir, task, data_path, ans.label)
    done = read_results(path)
    todo = [it for it in chosen if it.key not in done]
    if task == "overton" and judge is None:
        from pluralism.eval._metrics import EmbeddingJudge

        judge = EmbeddingJudge()
    _rescore(path, done, {it.key: it for it in items}, task, judge)
    with path.open("a", encoding="utf-8") as fh, _progress(progress) as bar:
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            fh.write("\n")  # a line cut short by a kill must not swallow the next result
        tid = bar.add_task(
            f"{task} · {ans.label}", total=len(chosen), completed=len(chosen) - len(todo)
        )
        for it in todo:
            row: dict[str, Any] = {"key": it.key, "attribute": it.attribute}
            if task == "overton":
                row["answer"], row["info"] = ans.answer(it)
            else:
                row["pred"], row["info"] = ans.distribution(it, task)
                row["gold"] = it.gold or None
                row["options"] = it.options
            row["score"] = score_row(task, it, row, judge)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            done[it.key] = row
            bar.advance(tid)
    scores = [float(done[it.key]["score"]) for it in chosen]
    return Summary(
        task,
        method,
        METRICS[task],
        mean(scores),
        len(scores),
        skipped,
        path,
        ans.overton_style,
        ans.top_k,
        ans.values_k,
    )


def _rescore(
    path: Path,
    done: dict[str, dict[str, Any]],
    items: dict[str, Item],
    task: Task,
    judge: CoverageJudge | None,
) -> None:
    """Stored rows are scored again from their answers, and the file rewritten if a score
    moved: results from before a metric or judge changed then never mix two judges' scores in
    one summary or report."""
    changed = False
    for key, row in done.items():
        if key in items:
            score = score_row(task, items[key], row, judge)
            changed |= score != row.get("score")
            row["score"] = score
    if changed:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in done.values()), encoding="utf-8")
        tmp.replace(path)


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
