"""The report of an `--out` directory: every results file summarised, with PNG plots.

Plots compare every method found side by side: mean distance per country or group, and a few
predicted-vs-gold distributions. Rebuilt after each run from the JSONL files alone.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from pluralism.eval._metrics import mean
from pluralism.eval._runner import METRICS, read_results

MAX_BARS = 25
EXAMPLES = 4


def _groups(out: Path) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """`{task-data: {method: {key: row}}}` for every results file in `out`."""
    found: dict[str, dict[str, dict[str, dict[str, Any]]]] = defaultdict(dict)
    for path in sorted(out.glob("*.jsonl")):
        stem, _, method = path.stem.rpartition("-")
        if stem and method:
            found[stem][method] = read_results(path)
    return found


def write_report(out: str | Path) -> Path:
    """Write `report.md`, `summary.json` and the plots; returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    out_dir = Path(out)
    lines = ["# pluralism eval report", ""]
    summary: list[dict[str, Any]] = []
    for name, methods in _groups(out_dir).items():
        task = name.split("-", 1)[0]
        metric = METRICS.get(task, "score")  # type: ignore[call-overload]
        lines += [f"## {name}", "", f"| method | {metric} | n |", "|---|---|---|"]
        for method, rows in methods.items():
            value = mean([float(r["score"]) for r in rows.values()])
            summary.append(
                {
                    "task": task,
                    "data": name,
                    "method": method,
                    "metric": metric,
                    "value": round(value, 4),
                    "n": len(rows),
                }
            )
            lines.append(f"| {method} | {value:.4f} | {len(rows)} |")
        lines.append("")
        if task != "overton":
            lines += [f"![per attribute]({_per_attribute(out_dir, name, methods, metric)})", ""]
        if task == "distributional" or task == "steerable":
            lines += [f"![examples]({_examples(out_dir, name, methods)})", ""]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    report = out_dir / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _per_attribute(
    out: Path, name: str, methods: dict[str, dict[str, dict[str, Any]]], metric: str
) -> str:
    import matplotlib.pyplot as plt

    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for method, rows in methods.items():
        for r in rows.values():
            per[str(r.get("attribute", ""))][method].append(float(r["score"]))
    attrs = sorted(per, key=lambda a: -sum(len(v) for v in per[a].values()))[:MAX_BARS]
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.55 * len(attrs) + 2)), 4.5))
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        ys = [mean(per[a][method]) if per[a][method] else 0.0 for a in attrs]
        ax.bar([x + i * width for x in range(len(attrs))], ys, width, label=method)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(attrs))])
    ax.set_xticklabels(attrs, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(f"{name}: {metric} per country / group")
    ax.legend()
    fig.tight_layout()
    file = f"{name}-per-attribute.png"
    fig.savefig(out / file, dpi=110)
    plt.close(fig)
    return file


def _examples(out: Path, name: str, methods: dict[str, dict[str, dict[str, Any]]]) -> str:
    import matplotlib.pyplot as plt

    shared = sorted(set.intersection(*(set(rows) for rows in methods.values())))[:EXAMPLES]
    fig, axes = plt.subplots(1, max(len(shared), 1), figsize=(4 * max(len(shared), 1), 3.5))
    axes_list = list(axes) if len(shared) > 1 else [axes]
    for ax, key in zip(axes_list, shared, strict=False):
        first = next(iter(methods.values()))[key]
        n = len(first["pred"])
        series = {m: rows[key]["pred"] for m, rows in methods.items()}
        if first.get("gold"):
            series = {"gold": first["gold"], **series}
        width = 0.8 / len(series)
        for i, (label, ys) in enumerate(series.items()):
            ax.bar([x + i * width for x in range(n)], ys, width, label=label)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(n)])
        ax.set_xticklabels(
            [str(o)[:14] for o in first.get("options") or range(n)],
            rotation=40,
            ha="right",
            fontsize=7,
        )
        ax.set_title(str(first.get("attribute", ""))[:30], fontsize=9)
    axes_list[0].legend(fontsize=7)
    fig.tight_layout()
    file = f"{name}-examples.png"
    fig.savefig(out / file, dpi=110)
    plt.close(fig)
    return file
