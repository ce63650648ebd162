"""The torch-free embedder against sentence-transformers: same MiniLM, same texts, same threads.

    python bench/bench_embedding.py [--n 500] [--prompts 200] [--threads 1]

Per-prompt latency is one `encode([text])` per text (what a request costs the router on a
cache miss); bulk throughput is one `encode` of `--n` texts (what loading a policy's rules
costs). The texts are the repository's rules and values, whole and cut into clauses. The
cosines say how far the llama.cpp vectors (F16 weights) are from the torch ones.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from pluralism._llama_embed import LlamaEmbedder
from pluralism.embedding import Embedder, SentenceTransformerEmbedder

ROOT = Path(__file__).resolve().parent.parent


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node.strip()
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def corpus(n: int) -> list[str]:
    """`n` distinct texts: the rules and values whole, then cut at punctuation."""
    whole = [
        t
        for folder in ("policies", "values")
        for path in sorted((ROOT / folder).rglob("*.yaml"))
        for t in _strings(yaml.safe_load(path.read_text()))
    ]
    clauses = [c.strip() for t in whole for c in re.split(r"(?<=[.!?;:,])\s+", t)]
    texts = list(dict.fromkeys(t for t in whole + clauses if len(t) >= 3))
    return (texts * (n // max(1, len(texts)) + 1))[:n]


def per_prompt_ms(embedder: Embedder, texts: list[str]) -> list[float]:
    out = []
    for t in texts:
        t0 = time.perf_counter()
        embedder.encode([t])
        out.append((time.perf_counter() - t0) * 1000)
    return out


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="texts in the bulk encode")
    ap.add_argument("--prompts", type=int, default=200, help="single-text encodes timed")
    ap.add_argument("--threads", type=int, default=1, help="threads for each embedder")
    ap.add_argument("--repeat", type=int, default=2, help="bulk runs; the best is kept")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    texts = corpus(args.n)
    prompts = corpus(args.n + args.prompts)[args.n :]  # not the bulk texts, where there are more
    t0 = time.perf_counter()
    llama = LlamaEmbedder(threads=args.threads)
    llama_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    st = SentenceTransformerEmbedder()
    st_load = time.perf_counter() - t0
    for e in (llama, st):  # warm-up: first calls allocate
        e.encode(texts[:16])
        e.encode(texts[:1])

    rows: dict[str, tuple[float, float]] = {}
    lp, sp = per_prompt_ms(llama, prompts), per_prompt_ms(st, prompts)
    rows["per prompt p50 ms"] = (statistics.median(lp), statistics.median(sp))
    rows["per prompt p99 ms"] = (float(np.percentile(lp, 99)), float(np.percentile(sp, 99)))
    bulk_l = best_of(lambda: llama.encode(texts), args.repeat)
    bulk_s = best_of(lambda: st.encode(texts), args.repeat)
    rows[f"bulk texts/s ({args.n})"] = (args.n / bulk_l, args.n / bulk_s)
    rows["load s (warm cache)"] = (llama_load, st_load)

    cos = (llama.encode(texts) * st.encode(texts)).sum(axis=1)
    table = Table(
        "measure",
        "llama.cpp",
        "sentence-transformers",
        "llama.cpp vs ST",
        title=f"all-MiniLM-L6-v2, {args.threads} thread(s), {args.n} texts",
    )
    for name, (ours, theirs) in rows.items():
        higher_better = "texts/s" in name
        ratio = ours / theirs if higher_better else theirs / ours
        table.add_row(name, f"{ours:.2f}", f"{theirs:.2f}", f"{ratio:.2f}× as fast")
    Console().print(table)
    print(f"cosine llama.cpp vs sentence-transformers: min {cos.min():.6f}, mean {cos.mean():.6f}")


if __name__ == "__main__":
    main()
