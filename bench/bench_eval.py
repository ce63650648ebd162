"""Distributional throughput: pluralism against Modular Pluralism's way, side by side in one run.

Modular Pluralism answers a distributional item by asking every community LM in turn and
averaging with equal weights: one call per community per item, done sequentially (with
`--with-messages`, each community first writes a message the base model then reads, as in their
code: two calls per community). pluralism weighs only the communities the population maps to and
scores their option orderings in one batched forward pass (with their adapters, if any).

    python bench/bench_eval.py [--data FILE] [--limit N] [--communities DIR] [--with-messages]

Both run on the same loaded model, on the same GlobalOpinionQA rows. Not a test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pluralism.eval._data import Item, load_items
from pluralism.eval._methods import Answerer
from pluralism.eval._metrics import js_distance, mean
from pluralism.eval._runner import select
from pluralism.modes._prompts import draft_messages
from pluralism.types import GenerationParams

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2]
    / "shared/data/modular_pluralism"
    / ("distributional_test_globalopinionqa_small.json")
)


def modular_pluralism(system: Any, item: Item, with_messages: bool) -> list[float]:
    """One call per community, one after another, then the equal-weight mean."""
    from pluralism._calls import adapter_names

    model = system.meta
    dists = []
    for community in system.communities:
        names = adapter_names(model, [community])
        kw = {"adapters": names} if names is not None else {}
        conv = draft_messages(community, item.question)
        if with_messages:
            (msg,) = model.generate([conv], GenerationParams(max_tokens=48), **kw)
            conv = [
                {"role": "system", "content": f"A community's view: {msg}"},
                {"role": "user", "content": item.question},
            ]
            kw = {}
        (dist,) = model.score_batch([conv], item.options, **kw)
        dists.append(dist)
    return [sum(col) / len(dists) for col in zip(*dists, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=5)
    ap.add_argument("--with-messages", action="store_true")
    ap.add_argument("--communities", type=Path, default=None, help="pool (default: shipped)")
    args = ap.parse_args()
    ans = Answerer("pluralism", communities=args.communities)
    system = ans.system()
    items, _ = select(
        load_items(args.data, "distributional"),
        split="heldout",
        limit=args.limit,
        keep=lambda it: ans.knows(it.attribute),
    )
    # Warm up: load the model, every adapter and every answers file before either side is timed.
    from pluralism._calls import answer_memory

    for community in system.communities:
        answer_memory(community, system.embedder)
    ans.distribution(items[0], "distributional")
    modular_pluralism(system, items[0], with_messages=False)

    t0 = time.perf_counter()
    ours = [ans.distribution(it, "distributional")[0] for it in items]
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = [modular_pluralism(system, it, args.with_messages) for it in items]
    t_mp = time.perf_counter() - t0

    n = len(items)
    mp = "MP (message + score per community)" if args.with_messages else "MP (score per community)"
    print(f"{n} GlobalOpinionQA held-out items, {len(system.communities)} communities")
    for label, preds, secs in (("pluralism", ours, t_ours), (mp, theirs, t_mp)):
        js = mean([js_distance(p, it.gold) for p, it in zip(preds, items, strict=True)])
        print(f"{label:<36} {n / secs:7.3f} items/s  JS {js:.4f}")
    print(f"speed-up: {t_mp / t_ours:.1f}x")


if __name__ == "__main__":
    main()
