"""Rebuild the shipped adapters of the default pool: `python -m pluralism.eval.build_adapters`.

Perspectives learn from the OpinionQA political groups they stand for, continents from the
GlobalOpinionQA rows of the countries they cover. Questions held out for evaluation (the shared
`is_heldout` split, plus any other wording of them found in the benchmark files) never train.
Each adapter lands in `communities/adapters/<id>/`; the community files name it with `adapter:`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from pluralism.eval._data import (
    Target,
    group_targets,
    is_heldout,
    load_items,
    load_survey,
    merge_targets,
    row_targets,
)
from pluralism.eval._train import TrainConfig, train_choice_adapter

# Which survey groups each shipped perspective learns from.
PERSPECTIVES: dict[str, dict[str, list[str]]] = {
    "conservative": {"POLPARTY": ["Republican"], "POLIDEOLOGY": ["Conservative", "Very conservative"]},
    "moderate": {"POLPARTY": ["Independent"], "POLIDEOLOGY": ["Moderate"]},
    "progressive": {"POLPARTY": ["Democrat"], "POLIDEOLOGY": ["Liberal", "Very liberal"]},
}
GLOBAL = "modular_pluralism/distributional_test_globalopinionqa_small.json"
STEER_OQA = "modular_pluralism/steerable_test_opinionqa_small.json"


def heldout_texts(data: Path) -> list[str]:
    """Every held-out question of the benchmark files, to keep other wordings out of training."""
    texts: list[str] = []
    for name, task in ((GLOBAL, "distributional"), (STEER_OQA, "distributional")):
        path = data / name
        if path.is_file():
            texts += [it.question for it in load_items(path, task) if is_heldout(it.question)]  # type: ignore[arg-type]
    return sorted(set(texts))


def targets_for(community_id: str, data: Path) -> list[Target]:
    from pluralism.config import default_dir, load_community
    from pluralism.population import normalise

    if community_id in PERSPECTIVES:
        parts = []
        for attribute, groups in PERSPECTIVES[community_id].items():
            survey = load_survey(data / "opinions_qa", attribute)
            parts.append(group_targets(survey, groups, attribute))
        return merge_targets(parts)
    community = load_community(default_dir("communities") / f"{community_id}.yaml")
    accept = {normalise(c) for c in community.population.countries}
    return row_targets(load_items(data / GLOBAL, "distributional"), accept)


def build(ids: Sequence[str], data: Path, out: Path, cfg: TrainConfig) -> dict[str, object]:
    from rich.console import Console
    from rich.progress import Progress

    from pluralism.config import default_dir, load_community
    from pluralism.models import LocalChatModel

    console = Console()
    exclude = heldout_texts(data)
    lm = LocalChatModel()
    summary: dict[str, object] = {}
    for cid in ids:
        community = load_community(default_dir("communities") / f"{cid}.yaml")
        targets = targets_for(cid, data)
        with Progress(console=console) as bar:
            task = bar.add_task(f"training {cid}", total=None)

            def step(i: int, n: int, loss: float, task: object = task, bar: Progress = bar) -> None:
                bar.update(task, completed=i, total=n, description=f"{cid} loss {loss:.3f}")  # type: ignore[arg-type]

            report = train_choice_adapter(
                community, targets, out / cid, cfg=cfg, exclude=exclude, on_step=step, lm=lm
            )
        summary[cid] = {
            "train_questions": report.train,
            "val_questions": report.val,
            "val_js_before": round(report.val_js_before, 4),
            "val_js_after": round(report.val_js_after, 4),
            "seconds": round(report.seconds, 1),
        }
        console.print(f"{cid}: {summary[cid]}")
        (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    from pluralism.config import default_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=default_dir("communities") / "adapters")
    ap.add_argument("--only", nargs="*", default=None, help="community ids (default: all eight)")
    ap.add_argument("--questions", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-3)
    args = ap.parse_args(argv)
    ids = args.only or [*PERSPECTIVES, "africa", "americas", "asia", "europe", "oceania"]
    cfg = TrainConfig(max_questions=args.questions, epochs=args.epochs, lr=args.lr, val_limit=6)
    build(ids, args.data, args.out, cfg)


if __name__ == "__main__":
    main()
