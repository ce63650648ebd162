"""`pluralism …` commands (typer + rich).

Every `PluralismError` becomes one red sentence and a non-zero exit; no traceback reaches the
terminal. Sub-command groups owned by other parts (policies, serve, eval, community) are mounted
here from their own small `_cli` modules.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Column, Table

from pluralism.errors import PluralismError

app = typer.Typer(
    name="pluralism",
    help="Pluralistic alignment middleware: answers that reflect many communities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

CommunitiesOpt = Annotated[
    Path | None,
    typer.Option(
        "--communities", help="Directory of community YAML files (default: shipped pool)."
    ),
]
PoliciesOpt = Annotated[
    Path | None,
    typer.Option("--policies", help="Directory of rule files (default: shipped policies)."),
]
ValuesOpt = Annotated[
    Path | None,
    typer.Option(
        "--values",
        help="Values catalogue: a directory of rule files naming values (default: shipped).",
    ),
]


RulesEmbedderOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules-embedder",
        help="Recall rules and values with this sentence-transformers model directory, e.g. "
        "one `pluralism policies tune` wrote; repeat for an ensemble (default: bundled MiniLM).",
    ),
]


def _load(
    communities: Path | None,
    policies: Path | None,
    values: Path | None,
    rules_embedder: list[Path] | None = None,
    **settings: Any,
) -> Any:
    from pluralism.config import default_dir, load_communities
    from pluralism.core import Pluralism, _rule_memory
    from pluralism.embedding import default_embedder, load_embedder
    from pluralism.errors import InputError
    from pluralism.settings import Settings

    for flag, given in (("--policies", policies), ("--values", values)):
        if given is not None and not given.is_dir():
            raise InputError(f"{flag} {given} is not a directory; pass a directory of rule files.")
    embedder = default_embedder()
    recaller = load_embedder(rules_embedder) if rules_embedder else embedder
    pool = load_communities(communities or default_dir("communities"))
    rules = _rule_memory(policies or default_dir("policies"), recaller)
    catalogue = _rule_memory(values or default_dir("values"), recaller)
    return Pluralism(
        pool, embedder=embedder, rules=rules, values=catalogue, settings=Settings(**settings)
    )


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="The question to answer.")],
    mode: Annotated[
        str, typer.Option("--mode", "-m", help="overton | steerable | distributional")
    ] = "overton",
    steer: Annotated[
        str | None, typer.Option(help="Steerable: a community id or a free-text description.")
    ] = None,
    population: Annotated[
        str | None, typer.Option(help="Distributional: a country or survey group.")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="An answer option (repeat).")
    ] = None,
    principles: Annotated[
        bool, typer.Option(help="Generate situated principles (SPRI) from the rules.")
    ] = False,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", "-t", help="What the prompt is about, for tag-scoped rules (repeat)."
        ),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option(min=1, max=8192, help="Tokens for the final answer.")
    ] = 160,
    draft_tokens: Annotated[
        int, typer.Option(min=1, max=8192, help="Tokens for each community draft.")
    ] = 64,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    overton_style: Annotated[
        str,
        typer.Option(
            "--overton-style",
            help="synthesize (the meta model writes one answer) | list (each community's "
            "draft under its name; no meta call).",
        ),
    ] = "synthesize",
    values_k: Annotated[
        int | None,
        typer.Option(
            "--values-k",
            min=0,
            max=20,
            help="Overton: how many values from the catalogue the answer names (default 5; "
            "0: none).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the PluralResponse as JSON.")
    ] = False,
    communities: CommunitiesOpt = None,
    policies: PoliciesOpt = None,
    values: ValuesOpt = None,
    rules_embedder: RulesEmbedderOpt = None,
) -> None:
    """Answer PROMPT in one of the three pluralism modes."""
    from pluralism.core import parse_mode
    from pluralism.types import GenerationParams, parse_overton_style

    # Fail on a typo before loading any model.
    parse_mode(mode)
    parse_overton_style(overton_style)
    with err.status("Loading models…"):
        p = _load(
            communities,
            policies,
            values,
            rules_embedder,
            principles=principles,
            overton_style=overton_style,
            **({} if values_k is None else {"values_k": values_k}),
            draft=GenerationParams(max_tokens=draft_tokens, seed=seed),
            meta=GenerationParams(max_tokens=max_tokens, seed=seed),
        )
    with err.status(f"Answering ({mode})…"):
        response = p.respond(
            prompt, mode=mode, steer=steer, population=population, options=option, tags=tag
        )
    if as_json:
        sys.stdout.write(response.model_dump_json(indent=2) + "\n")
        return
    _show(response)


def _show(response: Any) -> None:
    title = f"{response.mode.value}" + (f" → {response.steered_to}" if response.steered_to else "")
    out.print(Panel(response.text or "(empty)", title=title, expand=False))
    if response.distribution:
        table = Table("option", "probability", title="distribution")
        for opt, prob in sorted(response.distribution.items(), key=lambda kv: -kv[1]):
            table.add_row(opt, f"{prob:.1%}")
        out.print(table)
    if response.perspectives:
        table = Table("community", "weight", "draft", title="perspectives", show_lines=True)
        for persp in response.perspectives:
            table.add_row(persp.name or persp.community, f"{persp.weight:.2f}", persp.text)
        out.print(table)
    trace = response.trace
    if trace.rules:
        out.print(f"[dim]rules: {', '.join(trace.rules)} (version {trace.rules_version})[/dim]")
    for note in trace.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    timing = ", ".join(f"{k} {v:.0f} ms" for k, v in trace.timings.items())
    out.print(f"[dim]{timing}[/dim]")


@app.command("communities")
def list_communities(communities: CommunitiesOpt = None) -> None:
    """Show the community pool as a table (and check each answers file it names)."""
    from pluralism.answers import load_answers
    from pluralism.config import default_dir, load_communities

    pool = load_communities(communities or default_dir("communities"))
    # Ids are what users type (steer targets, file names): never cut them short.
    ids = Column("id", no_wrap=True, min_width=max((len(c.id) for c in pool), default=2))
    table = Table(
        ids, "kind", "name", "model", "adapter", "answers", "populations", title="communities"
    )
    for c in pool:
        pops = [*c.population.countries, *c.population.groups]
        shown = ", ".join(pops[:4]) + (f" (+{len(pops) - 4})" if len(pops) > 4 else "")
        model = c.model.backend + (f":{c.model.name}" if c.model.name else "")
        answered = "-"
        if c.answers:
            answered = f"{len(load_answers(c.file_path(c.answers)))} questions"
        table.add_row(c.id, c.kind, c.name, model, c.adapter or "-", answered, shown or "-")
    out.print(table)


@app.command()
def graph() -> None:
    """Print the request flow as a Mermaid diagram."""
    from pluralism.graph import mermaid

    sys.stdout.write(mermaid() + "\n")


# Sub-command groups owned by other modules; each module stays light to import.
_GROUPS = {
    "policies": ("pluralism.rules._cli", "Lint, test and try the rule files."),
    "eval": ("pluralism.eval._cli", "Measure pluralism on the published benchmarks."),
    "community": ("pluralism.eval._train_cli", "Build community models from community data."),
}
for _name, (_module, _help) in _GROUPS.items():
    try:
        _sub = importlib.import_module(_module).app
    except ImportError:
        continue
    app.add_typer(_sub, name=_name, help=_help)
try:
    _serve = importlib.import_module("pluralism.server._cli").serve
    app.command("serve")(_serve)
except ImportError:
    pass


def main() -> None:
    """Console-script entry point: typed errors become one clear line and exit code 1.

    Usage errors stay with typer (exit code 2, with the usage line); anything else that escapes
    is a bug, reported in one line rather than a traceback.
    """
    try:
        app()
    except PluralismError as exc:
        # Messages quote commands such as `pip install 'pluralism[train]'`: not rich markup.
        err.print(
            f"[bold red]error:[/bold red] {escape(exc.message)}", highlight=False, soft_wrap=True
        )
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:
        err.print(
            f"[bold red]error:[/bold red] unexpected {type(exc).__name__}: {exc}; "
            "please report this with the command you ran",
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(1) from None
