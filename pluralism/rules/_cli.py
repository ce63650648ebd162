"""`pluralism policies …`: lint, test and try out rule files without reading Python."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pluralism.errors import PluralismError
from pluralism.rules import default_policies_dir
from pluralism.rules._files import DEFAULT_COMMUNITIES, LoadedPolicies, load_policies
from pluralism.rules._memory import RuleMemory
from pluralism.types import RuleHit, RuleScope

app = typer.Typer(
    name="policies",
    help="Check and try out the rule files in a policies directory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DirArg = Annotated[
    Path | None,
    typer.Argument(help="Policies directory (default: ./policies, else the packaged defaults)."),
]
CommunitiesOpt = Annotated[
    Path | None,
    typer.Option(
        "--communities",
        help="Directory of community YAML files whose ids scopes may name "
        "(default: ./communities, else the default pool).",
    ),
]
EmbedderOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--embedder",
        help="Recall with this sentence-transformers model directory, e.g. one "
        "`pluralism policies tune` wrote; repeat for an ensemble (default: the bundled MiniLM).",
    ),
]


def _out() -> Console:
    return Console()


def _err() -> Console:
    return Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    _err().print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def known_communities(directory: Path | None) -> list[str]:
    """Community ids from `directory` (or ./communities), else the default pool's ids."""
    root = directory if directory is not None else Path("communities")
    ids: list[str] = []
    if root.is_dir():
        for path in sorted(root.glob("*.y*ml")):
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue  # `pluralism communities lint` reports broken community files
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                ids.append(data["id"])
    return ids or list(DEFAULT_COMMUNITIES)


def _load(directory: Path | None, communities: Path | None) -> tuple[Path, LoadedPolicies]:
    root = directory if directory is not None else default_policies_dir()
    return root, load_policies(root, known_communities=known_communities(communities))


def _quiet_loaders() -> None:
    """Authors should see tables (and --json clean JSON), not progress bars and load reports."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    except ImportError:
        pass


def _clean(root: Path, loaded: LoadedPolicies) -> None:
    """Stop on broken rule files: the first problem, and where to see them all."""
    if loaded.errors:
        raise _fail(
            f"{loaded.errors[0]} ({len(loaded.errors)} problem(s); run `pluralism policies lint "
            f"{root}` to see them all)"
        )


def _memory(root: Path, loaded: LoadedPolicies, embedder: list[Path] | None = None) -> RuleMemory:
    _clean(root, loaded)
    _quiet_loaders()
    from pluralism.embedding import load_embedder

    return RuleMemory.from_rules(loaded.rules, embedder=load_embedder(embedder))


@app.command()
def lint(directory: DirArg = None, communities: CommunitiesOpt = None) -> None:
    """Check every rule file: syntax, duplicate ids, unknown scope names, empty text."""
    root, loaded = _load(directory, communities)
    out = _out()
    # One `file:line: level: message` line per problem, like a compiler: editors and CI logs
    # turn these into links, and long paths are never cut off as in a table cell.
    for p in loaded.problems:
        where = p.path if p.line is None else f"{p.path}:{p.line}"
        level = "[red]error[/red]" if p.severity == "error" else "[yellow]warning[/yellow]"
        out.print(f"[cyan]{escape(where)}[/cyan]: {level}: {escape(p.message)}", soft_wrap=True)
    n_err = len(loaded.errors)
    summary = f"{len(loaded.rules)} rule(s) in {len(loaded.files)} file(s)"
    if n_err:
        raise _fail(f"{n_err} error(s) in {root} ({summary} loaded cleanly): fix them and rerun.")
    _out().print(f"[green]ok[/green]: {summary}, {len(loaded.problems)} warning(s).")


def _rank_of(hits: list[RuleHit], rule_id: str) -> int | None:
    by_score = sorted(hits, key=lambda h: -h.score)
    for n, h in enumerate(by_score, 1):
        if h.rule.id == rule_id:
            return n
    return None


@app.command("test")
def test_examples(
    directory: DirArg = None,
    k: Annotated[
        int,
        typer.Option(
            "--k", min=1, max=100, help="An example passes when its rule is in the top k."
        ),
    ] = 5,
    communities: CommunitiesOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Run every rule's `examples`: each must recall its rule in the top k."""
    root, loaded = _load(directory, communities)
    try:
        memory = _memory(root, loaded, embedder)
        table = Table(title=f"Rule examples in {root} (top {k})")
        table.add_column("rule", no_wrap=True)
        for col in ("example", "rank", "score", "result"):
            table.add_column(col)
        misses = total = 0
        for rule in memory.rules:
            for n, example in enumerate(rule.examples):
                total += 1
                # Held out: the rule's vector is built without this example, so a pass means
                # the rule generalises to it rather than matching its own copy.
                others = rule.examples[:n] + rule.examples[n + 1 :]
                memory.replace(rule.model_copy(update={"examples": others}))
                hits = memory.recall(example, k=k, scope=rule.scope)
                memory.replace(rule)
                rank = _rank_of(hits, rule.id)
                score = next((h.score for h in hits if h.rule.id == rule.id), None)
                ok = rank is not None
                misses += not ok
                table.add_row(
                    rule.id,
                    example,
                    str(rank) if rank else "-",
                    f"{score:.2f}" if score is not None else "-",
                    "[green]pass[/green]" if ok else "[red]MISS[/red]",
                )
        memory.close()
    except PluralismError as exc:
        raise _fail(str(exc)) from None
    _out().print(table)
    if total == 0:
        raise _fail(f"no rule in {root} has examples: add `examples:` prompts to your rules.")
    if misses:
        raise _fail(
            f"{misses} of {total} example(s) did not recall their rule in the top {k}: reword the "
            "rule text so it shares words or meaning with the example, or raise --k."
        )
    _out().print(f"[green]ok[/green]: all {total} example(s) recall their rule in the top {k}.")


@app.command()
def recall(
    prompt: Annotated[str, typer.Argument(help="The prompt to recall rules for.")],
    directory: Annotated[Path | None, typer.Option("--dir", help="Policies directory.")] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="How many rules at most.")] = 10,
    community: Annotated[
        list[str] | None, typer.Option("--community", help="Scope: community id (repeatable).")
    ] = None,
    population: Annotated[
        list[str] | None, typer.Option("--population", help="Scope: population (repeatable).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Scope: tag (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    communities: CommunitiesOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Show which rules a prompt would recall, with scores and why."""
    root, loaded = _load(directory, communities)
    scope = (
        RuleScope(communities=community or [], populations=population or [], tags=tag or [])
        if community or population or tag
        else None
    )
    try:
        memory = _memory(root, loaded, embedder)
        hits = memory.recall(prompt, k=k, scope=scope)
        version = memory.version
        memory.close()
    except PluralismError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        body = {"version": version, "hits": [h.model_dump(mode="json") for h in hits]}
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    if not hits:
        _out().print(f"No rule in {root} applies to this prompt (rules version {version[:12]}).")
        return
    table = Table(title=f"Rules recalled from {root} (version {version[:12]})")
    table.add_column("#")
    table.add_column("rule", no_wrap=True)
    for col in ("priority", "score", "meaning", "words", "why", "text"):
        table.add_column(col)
    for n, h in enumerate(hits, 1):
        text = h.rule.text if len(h.rule.text) <= 80 else h.rule.text[:77] + "..."
        table.add_row(
            str(n),
            h.rule.id,
            str(h.rule.priority),
            f"{h.score:.2f}",
            f"{h.dense or 0:.2f}",
            f"{h.lexical or 0:.2f}",
            h.why,
            text,
        )
    _out().print(table)


def _pairs_file(path: Path, texts: dict[str, str]) -> list[tuple[str, str]]:
    """(prompt, rule text) pairs from JSON Lines; `rule` is a rule id in `texts` or a text."""
    pairs: list[tuple[str, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"--pairs {path}: cannot read it ({exc}).") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(f"{path}:{n}: not JSON ({exc.msg}); write one object a line.") from None
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("prompt"), str)
            or not isinstance(row.get("rule"), str)
        ):
            raise _fail(
                f'{path}:{n}: expected {{"prompt": "...", "rule": "..."}} with two strings; '
                "`rule` is a rule id or a rule text."
            )
        prompt, rule = str(row["prompt"]), str(row["rule"])
        pairs.append((prompt, texts.get(rule, rule)))
    return pairs


@app.command()
def tune(
    directory: DirArg = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="New or empty directory to write the tuned model to."),
    ] = Path("tuned-embedder"),
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs",
            help='More pairs to learn from: JSON Lines of {"prompt": ..., "rule": ...}, where '
            "`rule` is a rule id in DIR or any rule text.",
        ),
    ] = None,
    base: Annotated[
        Path | None,
        typer.Option("--base", help="Model directory to start from (default: bundled MiniLM)."),
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, max=50, help="Passes over the pairs.")
    ] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed for shuffling and the model.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace what is in --out.")
    ] = False,
    communities: CommunitiesOpt = None,
) -> None:
    """Tune the embedder on the rules' `examples` (and --pairs) so recall learns their wording.

    Writes a sentence-transformers model to --out. Check it with `pluralism policies test DIR
    --embedder OUT` on examples it did not learn from, then use it with `--rules-embedder OUT`
    (ask, serve) or `rules_embedder: OUT` in the proxy config.
    """
    from pluralism._extras import require_train
    from pluralism.rules._tune import tune_embedder

    try:
        require_train("`pluralism policies tune`")
    except PluralismError as exc:
        raise _fail(str(exc)) from None
    root, loaded = _load(directory, communities)
    _clean(root, loaded)
    learned = [(e, r.text) for r in loaded.rules for e in r.examples]
    if pairs is not None:
        learned += _pairs_file(pairs, {r.id: r.text for r in loaded.rules})
    _quiet_loaders()
    try:
        report = tune_embedder(
            learned, out, base=base, epochs=epochs, seed=seed, overwrite=overwrite
        )
    except PluralismError as exc:
        raise _fail(str(exc)) from None
    _out().print(
        f"[green]ok[/green]: tuned on {report.pairs} pair(s) for {report.rules} rule(s), "
        f"{report.epochs} epoch(s), {report.steps} step(s), {report.seconds:.0f} s; "
        f"saved to {report.path}.\n"
        f"Check it: pluralism policies test {root} --embedder {report.path}",
        highlight=False,
        soft_wrap=True,
    )
