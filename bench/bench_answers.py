"""Answer memory settings (`answers_k`, the temperature, `answers_weight`) on unseen questions.

The shipped defaults must not be chosen on the benchmark's held-out rows. This chooses them on
other questions: every shipped community's usable survey questions (never a held-out one nor
another wording of one) that fall in the adapters' validation bucket, so no shipped adapter
trained on them. For each such question:

- the community's model (its shipped adapter) scores the options, as the system does;
- its answer memory, built from its other usable questions (5 folds: the fold's questions and
  their other wordings are left out, as held-out rows are), recalls a distribution;
- the two are blended at each weight, and the Jensen–Shannon distance to the community's
  answers is averaged.

It prints the model alone, the answers alone, the shipped defaults and the best setting of the
grid side by side, with each one's ratio to the model alone.

    python bench/bench_answers.py [--data ../shared/data] [--out DIR] [--only ID ...]

The model's scores are cached in `--out` (about 6 min on 2 cores the first time, for ~440
questions); later runs take seconds. Last run (2 shared cores; mean JS over the 444 questions
that have answered questions with as many options, the four US communities' 188 in brackets):

    model alone                       0.2298  (0.2284)   1.00x
    answers alone  k=10 T=0.2         0.1786  (0.1895)   0.78x
    shipped        k=10 T=0.2 w=0.9   0.1803  (0.1899)   0.78x
    before         k=20 T=0.2 w=0.6   0.1939  (0.1995)   0.84x
    best           k=10 T=0.3 w=1.0   0.1783  (0.1883)   0.78x

The shipped weight is 0.9, not the best 1.0: within 0.002 of it, and it keeps the community's
own model in every answer (a memory that recalls far-off questions still gets corrected).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pluralism.answers import TEMPERATURE, Answered, AnswerMemory, Recalled, blend  # noqa: E402
from pluralism.config import default_dir, load_community  # noqa: E402
from pluralism.core import Pluralism  # noqa: E402
from pluralism.embedding import CachedEmbedder, SentenceTransformerEmbedder  # noqa: E402
from pluralism.eval._data import Target  # noqa: E402
from pluralism.eval._metrics import js_distance, mean  # noqa: E402
from pluralism.eval._train import TrainConfig, in_validation_bucket, usable_targets  # noqa: E402
from pluralism.eval.build_adapters import SURVEY_GROUPS, heldout_texts, targets_for  # noqa: E402
from pluralism.settings import Settings  # noqa: E402

FOLDS = 5
KS = (5, 10, 20, 40)
TEMPERATURES = (0.05, 0.1, 0.2, 0.3, 0.5)
WEIGHTS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
US = set(SURVEY_GROUPS)


def unseen(targets: Sequence[Target], exclude: Sequence[str]) -> list[Target]:
    """Usable questions in the validation bucket: build_adapters trains on none of them."""
    cfg = TrainConfig()
    return [t for t in usable_targets(targets, exclude) if in_validation_bucket(t[0], cfg)]


def _fold(question: str) -> int:
    return int(hashlib.sha1(question.encode()).hexdigest(), 16) % FOLDS


def _id(question: str, options: Sequence[str]) -> str:
    return json.dumps([question, list(options)])


def model_scores(cid: str, questions: Sequence[Target], cache: Path) -> list[list[float]]:
    """The community's model alone (the shipped pool names no answers), cached per question."""
    done: dict[str, list[float]] = {}
    if cache.is_file():
        for line in cache.read_text("utf-8").splitlines():
            row = json.loads(line)
            done[_id(row["question"], row["options"])] = row["distribution"]
    todo = [t for t in questions if _id(t[0], t[1]) not in done]
    if todo:
        community = load_community(default_dir("communities") / f"{cid}.yaml")
        system = Pluralism([community], rules=None, settings=Settings(rules_k=0, top_k=1))
        with cache.open("a", encoding="utf-8") as fh:
            for n, (q, options, _) in enumerate(todo, 1):
                reply = system.respond(q, mode="distributional", options=list(options))
                (draft,) = [p for p in reply.perspectives if p.community == cid]
                dist = list((draft.distribution or {}).values())
                done[_id(q, options)] = dist
                fh.write(json.dumps({"question": q, "options": options, "distribution": dist}))
                fh.write("\n")
                fh.flush()
                print(f"\r  {cid}: model {n}/{len(todo)}", end="", flush=True)
        print()
    return [done[_id(t[0], t[1])] for t in questions]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-answers")
    ap.add_argument("--only", nargs="*", default=None, help="community ids (default: all)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    exclude = heldout_texts(args.data)
    # Every fold rebuilds a memory from nearly the same texts: cache them all, not the default 4k.
    embedder = CachedEmbedder(SentenceTransformerEmbedder(), maxsize=200_000)
    ids = args.only or ["europe", "asia", "americas", "africa", *SURVEY_GROUPS, "oceania"]
    # (community, model distribution, gold, {(k, T): recalled distribution})
    rows: list[tuple[str, list[float], list[float], dict[tuple[int, float], list[float]]]] = []
    for cid in ids:
        targets = targets_for(cid, args.data)
        questions = unseen(targets, exclude)
        print(f"{cid}: {len(questions)} unseen questions", flush=True)
        scores = model_scores(cid, questions, args.out / f"{cid}.jsonl")
        for fold in range(FOLDS):
            held = [(t, s) for t, s in zip(questions, scores, strict=True) if _fold(t[0]) == fold]
            if not held:
                continue
            kept = usable_targets(targets, [*exclude, *(t[0] for t, _ in held)])
            memory = AnswerMemory(
                [Answered(question=q, options=list(o), distribution=list(d)) for q, o, d in kept],
                embedder,
            )
            for (q, options, gold), model in held:
                if memory.recall(q, options) is None:  # no answered question has as many options
                    continue
                recalled = {}
                for k, temp in itertools.product(KS, TEMPERATURES):
                    r = memory.recall(q, options, k, temperature=temp)
                    assert r is not None  # the option count, checked above, is all that decides
                    recalled[(k, temp)] = r.distribution
                rows.append((cid, model, list(gold), recalled))

    def score(k: int, temp: float, weight: float, only_us: bool = False) -> float:
        out = []
        for cid, model, gold, recalled in rows:
            if only_us and cid not in US:
                continue
            r = Recalled(distribution=recalled[(k, temp)], neighbours=[])
            out.append(js_distance(blend(model, r, weight), gold))
        return mean(out)

    grid = {(k, t, w): score(k, t, w) for k, t, w in itertools.product(KS, TEMPERATURES, WEIGHTS)}
    shipped = Settings()
    base_k, base_t = shipped.answers_k, TEMPERATURE
    alone = score(base_k, base_t, 0.0)
    us_rows = sum(r[0] in US for r in rows)
    print(f"\nmean JS over {len(rows)} unseen questions ({us_rows} of the US communities)")

    def line(name: str, k: int, t: float, w: float, label: str) -> None:
        s, s_us = grid[(k, t, w)], score(k, t, w, only_us=True)
        print(f"  {name:<14} {label:<18} {s:.4f}  ({s_us:.4f})   {s / alone:.2f}x")

    line("model alone", base_k, base_t, 0.0, "")
    line("answers alone", base_k, base_t, 1.0, f"k={base_k} T={base_t}")
    w = shipped.answers_weight
    line("shipped", base_k, base_t, w, f"k={base_k} T={base_t} w={w}")
    line("before", 20, 0.2, 0.6, "k=20 T=0.2 w=0.6")
    best = min(grid, key=grid.__getitem__)
    line("best", *best, f"k={best[0]} T={best[1]} w={best[2]}")
    print("\n  the ten best settings:")
    for k, t, w in sorted(grid, key=grid.__getitem__)[:10]:
        print(f"    k={k:<3} T={t:<5} w={w:<4} {grid[(k, t, w)]:.4f}")


if __name__ == "__main__":
    main()
