"""Overton coverage by the embedding judge and by blind labels, side by side, against vanilla.

The MiniLM judge overrates lists of value names (docs/eval.md, Metrics), and every Overton
answer of the `pluralism` method ends with such a list (the values catalogue). So its figure is
checked against labels: `bench/overton_labels.jsonl` marks, for the answers of the 50-row
Overton run in docs/eval.md ("Results"), which of each situation's values the answer covers.
They were written blind: the answers of all methods shuffled together with no method named, each
labelled by an LLM session that saw only the situation, its value names and the answer. A row
holds the method, the row key, one 0/1 per value (in the data file's `vrd` order) and the first
16 hex digits of the answer's SHA-256, so a label is only used for the very answer it was
written for.

    python bench/bench_overton_labels.py --results eval/overton

reads the results files of that run (`pluralism eval overton ... --out eval/overton`) and prints,
per method, the rows whose answers match the labelled ones, the judge's mean coverage, the
labelled mean coverage, and each one's ratio to vanilla on the same rows, with a paired
bootstrap 95% interval for the labelled ratio. Last run (the answers of 2026-11-26):

    method          rows  judge   ratio   labelled  ratio   95% interval
    vanilla           50  0.397   1.00x   0.162     1.00x
    pluralism         50  0.825   2.08x   0.432     2.66x   2.04-3.70
    pluralism_list    50  0.827   2.09x   0.420     2.58x   1.98-3.59
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

LABELS = Path(__file__).with_name("overton_labels.jsonl")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def results(directory: Path, method: str) -> dict[str, dict[str, Any]]:
    files = sorted(directory.glob(f"overton-*-{method}.jsonl"))
    if not files:
        raise SystemExit(f"no overton-*-{method}.jsonl in {directory}: run `pluralism eval` first")
    rows = (json.loads(line) for line in files[0].read_text("utf-8").splitlines() if line)
    return {str(r["key"]): r for r in rows}


def interval(a: np.ndarray, b: np.ndarray, rounds: int = 5000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(a), (rounds, len(a)))
    ratios = a[idx].mean(axis=1) / np.maximum(b[idx].mean(axis=1), 1e-9)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, required=True, help="the run's --out directory")
    ap.add_argument("--labels", type=Path, default=LABELS)
    args = ap.parse_args()

    labels: dict[str, dict[str, dict[str, Any]]] = {}
    for line in args.labels.read_text("utf-8").splitlines():
        row = json.loads(line)
        labels.setdefault(row["method"], {})[row["key"]] = row
    scored: dict[str, dict[str, tuple[float, float]]] = {}
    for method, labelled in sorted(labels.items(), key=lambda kv: kv[0] != "vanilla"):
        found = results(args.results, method)
        scored[method] = {}
        for key, row in labelled.items():
            r = found.get(key)
            if r is None or digest(str(r["answer"])) != row["answer_sha256"]:
                continue  # another answer than the one labelled: its label says nothing
            covered = list(row["covered"])
            scored[method][key] = (float(r["score"]), sum(covered) / len(covered))
    base = scored.get("vanilla", {})
    print(f"{'method':<16}{'rows':>4}  judge   ratio   labelled  ratio   95% interval")
    for method, rows in scored.items():
        keys = sorted(set(rows) & set(base))
        if not keys:
            print(f"{method:<16}{0:>4}  (no answer matches its labels)")
            continue
        judge = np.array([rows[k][0] for k in keys])
        hand = np.array([rows[k][1] for k in keys])
        vj = np.array([base[k][0] for k in keys])
        vh = np.array([base[k][1] for k in keys])
        line = (
            f"{method:<16}{len(keys):>4}  {judge.mean():.3f}   {judge.mean() / vj.mean():.2f}x"
            f"   {hand.mean():.3f}     {hand.mean() / vh.mean():.2f}x"
        )
        if method != "vanilla":
            lo, hi = interval(hand, vh)
            line += f"   {lo:.2f}-{hi:.2f}"
        print(line)


if __name__ == "__main__":
    main()
