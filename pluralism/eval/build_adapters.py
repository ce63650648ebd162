"""Rebuild the shipped adapters of the default pool: `python -m pluralism.eval.build_adapters`.

Perspectives learn from the OpinionQA political groups they stand for, continents from the
GlobalOpinionQA rows of the countries they cover. Questions held out for evaluation (the shared
`is_heldout` split, plus any other wording of them found in the benchmark files) never train.
Each adapter lands in `communities/adapters/<id>/`; the community files name it with `adapter:`.
With `--out` elsewhere, each community also gets `answers.jsonl` (the questions it may learn
from, with their answer shares: an answer memory, `pluralism.answers`) and `<out>/pool/` names
both. `--answers-only --out DIR` builds just those, in seconds. Answers files are not shipped:
they would copy the benchmark's questions and shares into the project.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pluralism.eval._data import (
    Target,
    group_targets,
    is_heldout,
    load_items,
    load_survey,
    merge_targets,
    row_targets,
)
from pluralism.eval._train import TrainConfig, train_choice_adapter, usable_targets

# Which OpinionQA survey groups each shipped community learns from (the others learn from
# GlobalOpinionQA countries).
SURVEY_GROUPS: dict[str, dict[str, list[str]]] = {
    "conservative": {
        "POLPARTY": ["Republican"],
        "POLIDEOLOGY": ["Conservative", "Very conservative"],
    },
    "moderate": {"POLPARTY": ["Independent"], "POLIDEOLOGY": ["Moderate"]},
    "progressive": {"POLPARTY": ["Democrat"], "POLIDEOLOGY": ["Liberal", "Very liberal"]},
    # The whole sample: the mean of men and women is every respondent who gave a sex, which is
    # nearly all of them.
    "united-states": {"SEX": ["Male", "Female"]},
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

    if community_id in SURVEY_GROUPS:
        parts = []
        for attribute, groups in SURVEY_GROUPS[community_id].items():
            survey = load_survey(data / "opinions_qa", attribute)
            parts.append(group_targets(survey, groups, attribute))
        return merge_targets(parts)
    community = load_community(default_dir("communities") / f"{community_id}.yaml")
    accept = {normalise(c) for c in community.population.countries}
    return row_targets(load_items(data / GLOBAL, "distributional"), accept)


def write_answers_for(cid: str, data: Path, out: Path, exclude: Sequence[str]) -> Path:
    """`<out>/<cid>/answers.jsonl`: every question the community may learn from (training and
    validation alike; never a held-out one), with its answer shares."""
    from pluralism.answers import write_answers

    return write_answers(
        out / cid / "answers.jsonl", usable_targets(targets_for(cid, data), exclude)
    )


def build(ids: Sequence[str], data: Path, out: Path, cfg: TrainConfig) -> dict[str, object]:
    from rich.console import Console
    from rich.progress import Progress

    from pluralism.config import default_dir, load_community
    from pluralism.models import TransformersChatModel

    console = Console()
    exclude = heldout_texts(data)
    lm = TransformersChatModel()
    record = out / "training.json"
    # `--only` rebuilds some adapters; the others keep their recorded figures.
    summary: dict[str, object] = json.loads(record.read_text("utf-8")) if record.is_file() else {}
    for cid in ids:
        community = load_community(default_dir("communities") / f"{cid}.yaml")
        targets = targets_for(cid, data)
        with Progress(console=console) as bar:
            task = bar.add_task(f"training {cid}", total=None)

            def step(
                i: int, n: int, loss: float, task: Any = task, bar: Progress = bar, cid: str = cid
            ) -> None:
                bar.update(task, completed=i, total=n, description=f"{cid} loss {loss:.3f}")

            report = train_choice_adapter(
                community, targets, out / cid, cfg=cfg, exclude=exclude, on_step=step, lm=lm
            )
        if not _shipped(out):  # answers are built from the benchmark data, never shipped
            write_answers_for(cid, data, out, exclude)
        summary[cid] = {
            "train_questions": report.train,
            "val_questions": report.val,
            "val_js_before": round(report.val_js_before, 4),
            "val_js_after": round(report.val_js_after, 4),
            "val_js_per_epoch": [round(v, 4) for v in report.val_curve],
            "best_epoch": report.best_epoch,
            "seconds": round(report.seconds, 1),
        }
        console.print(f"{cid}: {summary[cid]}")
        record.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def write_pool(out: Path) -> Path:
    """`<out>/pool/`: the shipped community files, each naming what `<out>` holds for it (its
    adapter, its `answers.jsonl`), so adapters trained elsewhere and answer memories are
    evaluated (`pluralism eval … --communities <out>/pool`) without touching the shipped pool.
    A community with answers but no adapter in `<out>` keeps the shipped adapter. Generated, so
    it never drifts from `communities/`."""
    from pluralism.config import default_dir, load_community

    pool = out / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    for source in sorted(default_dir("communities").glob("*.yaml")):
        cid = source.stem
        trained = (out / cid / "adapter_model.safetensors").is_file()
        answers = (out / cid / "answers.jsonl").is_file()
        if not (trained or answers):
            continue
        shipped = load_community(source).adapter
        if trained:
            adapter: str | None = f"../{cid}"
        else:
            adapter = str((source.parent / shipped).resolve()) if shipped else None
        header = f"# Generated by `python -m pluralism.eval.build_adapters` from {source.name}.\n"
        lines = source.read_text(encoding="utf-8").rstrip("\n").splitlines()
        text = "\n".join(line for line in lines if not line.startswith(("adapter:", "answers:")))
        extra = (f"adapter: {adapter}\n" if adapter else "") + (
            f"answers: ../{cid}/answers.jsonl\n" if answers else ""
        )
        (pool / source.name).write_text(f"{header}{text}\n{extra}", encoding="utf-8")
    return pool


def _shipped(out: Path) -> bool:
    from pluralism.config import default_dir

    return out.resolve() == (default_dir("communities") / "adapters").resolve()


def main(argv: Sequence[str] | None = None) -> None:
    from pluralism.config import default_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=default_dir("communities") / "adapters")
    ap.add_argument("--only", nargs="*", default=None, help="community ids (default: all)")
    ap.add_argument("--questions", type=int, default=800, help="cap per community (default 800)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--layers", type=int, default=3, help="LoRA on the last N decoder layers")
    ap.add_argument(
        "--modules",
        nargs="+",
        default=["q_proj", "k_proj", "v_proj", "o_proj"],
        help="LoRA targets",
    )
    ap.add_argument("--shifts", type=int, default=1, help="option orders per question")
    ap.add_argument("--val", type=int, default=8, help="validation questions (default 8)")
    ap.add_argument(
        "--keep-best", action="store_true", help="save the epoch with the best validation JS"
    )
    ap.add_argument(
        "--pool-only", action="store_true", help="only (re)generate <out>/pool/ for evaluation"
    )
    ap.add_argument(
        "--answers-only",
        action="store_true",
        help="only (re)write each community's answers.jsonl (seconds; no training)",
    )
    args = ap.parse_args(argv)
    if args.pool_only:
        write_pool(args.out)
        return
    ids = args.only or ["europe", "asia", "americas", "africa", *SURVEY_GROUPS, "oceania"]
    if args.answers_only:
        if _shipped(args.out):
            raise SystemExit(
                "answers files hold the benchmark's questions and answer shares, so they are "
                "built where you evaluate, not shipped: pass --out DIR (e.g. --out /tmp/answers)"
            )
        exclude = heldout_texts(args.data)
        for cid in ids:
            print(write_answers_for(cid, args.data, args.out, exclude))
        print(write_pool(args.out))
        return
    cfg = TrainConfig(
        max_questions=args.questions,
        epochs=args.epochs,
        lr=args.lr,
        rank=args.rank,
        layers=args.layers,
        modules=tuple(args.modules),
        shifts_per_question=args.shifts,
        val_limit=args.val,
        keep_best=args.keep_best,
    )
    build(ids, args.data, args.out, cfg)
    if not _shipped(args.out):  # the shipped pool already names the shipped adapters
        write_pool(args.out)


if __name__ == "__main__":
    main()
