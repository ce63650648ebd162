"""Routing speed: embed + weights for new and repeated prompts, next to an uncached baseline.

    python bench/bench_router.py [--n 200]

Baseline: the same router maths with no caches, i.e. every request re-embeds the prompt and
every community's description and exemplars (what routing costs without the community-vector
cache and the prompt LRU). Figures of issue 2: p50 ≤ 20 ms new, ≤ 1 ms repeated.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.table import Table

from pluralism.config import default_dir, load_communities
from pluralism.embedding import CachedEmbedder, SentenceTransformerEmbedder
from pluralism.router import Router


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    pool = load_communities(default_dir("communities"))
    inner = SentenceTransformerEmbedder()
    router = Router(pool, CachedEmbedder(inner))
    prompts = [
        f"Question number {i}: is it fair to expect {i} hours of unpaid overtime?"
        for i in range(args.n)
    ]
    router.route("warm-up")

    def timed(fn: object, items: list[str]) -> list[float]:
        out = []
        for p in items:
            t0 = time.perf_counter()
            fn(p)  # type: ignore[operator]
            out.append((time.perf_counter() - t0) * 1000)
        return out

    new = timed(router.route, prompts)
    repeated = timed(router.route, prompts)

    def uncached(p: str) -> None:
        Router(pool, inner).route(p)

    base = timed(uncached, prompts[: max(10, args.n // 10)])
    table = Table("case", "p50 ms", "p99 ms", "p50 vs uncached", "target")
    b50 = statistics.median(base)
    for name, xs, target in (
        ("new prompt", new, "≤ 20 ms"),
        ("repeated prompt", repeated, "≤ 1 ms"),
        ("baseline: no caches", base, ""),
    ):
        p50 = statistics.median(xs)
        table.add_row(
            name, f"{p50:.2f}", f"{pct(xs, 0.99):.2f}", f"{b50 / p50:.1f}× faster", target
        )
    Console().print(table)


if __name__ == "__main__":
    main()
