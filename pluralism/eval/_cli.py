"""`pluralism eval overton|steerable|distributional`: the benchmark harness on the command line.

Kept light to import (the CLI starts fast): models, torch and matplotlib load inside commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="eval",
    help="Measure pluralism on the Modular Pluralism benchmarks.",
    no_args_is_help=True,
    add_completion=False,
)

DataOpt = Annotated[Path, typer.Option("--data", help="A Modular Pluralism JSON file.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate at most N rows.")]
MethodOpt = Annotated[
    str, typer.Option("--method", help="vanilla | prompting | pluralism (same base model).")
]
OutOpt = Annotated[
    Path, typer.Option("--out", help="Results (JSONL, resumable), report and plots go here.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON line with the score.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Row sampling and generation seed.")]
SplitOpt = Annotated[
    str,
    typer.Option(
        "--split", help="all | heldout (questions no shipped adapter trained on) | train."
    ),
]
AttrOpt = Annotated[
    list[str] | None,
    typer.Option("--attribute", help="Keep rows whose attribute starts with this (repeat)."),
]
CommOpt = Annotated[
    Path | None,
    typer.Option("--communities", help="Community directory (default: the shipped pool)."),
]


def _run(
    task: str,
    data: Path,
    limit: int | None,
    method: str,
    out: Path,
    as_json: bool,
    seed: int,
    split: str,
    attribute: list[str] | None,
    communities: Path | None,
    style: str = "synthesize",
    top_k: int | None = None,
    values_k: int | None = None,
) -> None:
    from pluralism.errors import InputError
    from pluralism.eval._methods import (
        DEFAULT_TOP_K,
        DEFAULT_VALUES_K,
        parse_method,
        parse_style,
    )
    from pluralism.eval._report import write_report
    from pluralism.eval._runner import run

    if split not in ("all", "heldout", "train"):
        raise InputError(f"Unknown split {split!r}; use all, heldout or train.")
    if communities is not None and not communities.is_dir():
        raise InputError(f"Community directory {communities} does not exist; pass a directory.")
    m = parse_method(method)
    overton_style = parse_style(style)
    summary = run(
        task,  # type: ignore[arg-type]
        data,
        m,
        out=out,
        limit=limit,
        seed=seed,
        split=split,  # type: ignore[arg-type]
        attributes=attribute or (),
        communities=communities,
        progress=not as_json,
        overton_style=overton_style,
        top_k=top_k or DEFAULT_TOP_K,
        values_k=DEFAULT_VALUES_K if values_k is None else values_k,
    )
    report = write_report(out)
    if as_json:
        typer.echo(json.dumps(summary.as_json()))
        return
    from rich.console import Console

    console = Console()
    console.print(
        f"[bold]{task}[/] · {summary.label}: {summary.metric} = [bold]{summary.value:.4f}[/] over "
        f"{summary.n} rows"
        + (f" ({summary.skipped} rows skipped: population unknown)" if summary.skipped else "")
    )
    console.print(f"results: {summary.results}\nreport:  {report}")


@app.command()
def overton(
    data: DataOpt,
    limit: LimitOpt = None,
    method: MethodOpt = "pluralism",
    out: OutOpt = Path("eval-out"),
    as_json: JsonOpt = False,
    seed: SeedOpt = 0,
    split: SplitOpt = "all",
    attribute: AttrOpt = None,
    communities: CommOpt = None,
    style: Annotated[
        str,
        typer.Option(
            "--style",
            help="pluralism's Overton answer: synthesize (the meta model writes it) | list "
            "(the community drafts under their names, sharing the answer's token budget).",
        ),
    ] = "synthesize",
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k",
            min=1,
            help="pluralism: how many communities answer (the router's top_k; default 3).",
        ),
    ] = None,
    values_k: Annotated[
        int | None,
        typer.Option(
            "--values-k",
            min=0,
            max=20,
            help="pluralism: how many values from the values catalogue the answer names "
            "(Settings.values_k; default 5; 0: none).",
        ),
    ] = None,
) -> None:
    """Overton coverage: the share of a situation's values the answer covers."""
    _run(
        "overton",
        data,
        limit,
        method,
        out,
        as_json,
        seed,
        split,
        attribute,
        communities,
        style,
        top_k,
        values_k,
    )


@app.command()
def steerable(
    data: DataOpt,
    limit: LimitOpt = None,
    method: MethodOpt = "pluralism",
    out: OutOpt = Path("eval-out"),
    as_json: JsonOpt = False,
    seed: SeedOpt = 0,
    split: SplitOpt = "all",
    attribute: AttrOpt = None,
    communities: CommOpt = None,
) -> None:
    """Steerable accuracy: VK labels, or OpinionQA's gold top option."""
    _run("steerable", data, limit, method, out, as_json, seed, split, attribute, communities)


@app.command()
def distributional(
    data: DataOpt,
    limit: LimitOpt = None,
    method: MethodOpt = "pluralism",
    out: OutOpt = Path("eval-out"),
    as_json: JsonOpt = False,
    seed: SeedOpt = 0,
    split: SplitOpt = "all",
    attribute: AttrOpt = None,
    communities: CommOpt = None,
) -> None:
    """Distributional: mean Jensen–Shannon distance to the population's answers."""
    _run("distributional", data, limit, method, out, as_json, seed, split, attribute, communities)
