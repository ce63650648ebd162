"""`pluralism community train`: a community LM (LoRA adapter + community file) from its data.

Three sources: OpinionQA survey folders (`--survey DIR --attribute A --group G`), rows in the
Modular Pluralism distributional format (`--rows FILE --country C`), or the community's writing
(`--corpus FILE`). Light to import: torch and peft load inside the command.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="community",
    help="Build community LMs from community data.",
    no_args_is_help=True,
    add_completion=False,
)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-")[:64] or "community"


def community_file(
    out: Path,
    cid: str,
    *,
    name: str,
    kind: str,
    who: str,
    population: dict[str, Any],
    like: Path | None,
    answers: bool = False,
) -> Path:
    """Write `<out>/<cid>.yaml` naming `adapters/<cid>` (and its answers file, with `answers`);
    fields come from `like` when given."""
    import yaml

    from pluralism.config import load_community

    if like is not None:
        base = load_community(like).model_dump(
            exclude={"source", "adapter", "answers", "population"}
        )
        base.update(id=cid)
    else:
        base = {
            "id": cid,
            "kind": kind,
            "name": name,
            "description": f"The views of {who}, learned from their own answers and writing.",
            "persona": f"You speak as {who}. Answer briefly and concretely from this perspective.",
        }
    base["adapter"] = f"adapters/{cid}"
    if answers:
        base["answers"] = f"adapters/{cid}/answers.jsonl"
    base["population"] = population
    path = out / f"{cid}.yaml"
    header = "# Written by `pluralism community train`; edit freely.\n"
    path.write_text(header + yaml.safe_dump(base, sort_keys=False, allow_unicode=True), "utf-8")
    return path


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Directory for <id>.yaml and adapters/<id>/.")],
    survey: Annotated[
        Path | None, typer.Option("--survey", help="OpinionQA folder (one subfolder per wave).")
    ] = None,
    attribute: Annotated[str | None, typer.Option("--attribute", help="e.g. POLPARTY")] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", help="e.g. Republican (repeat to pool groups)")
    ] = None,
    rows: Annotated[
        Path | None, typer.Option("--rows", help="Modular Pluralism distributional JSON file.")
    ] = None,
    country: Annotated[
        list[str] | None, typer.Option("--country", help="Rows of this country (repeat).")
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="UTF-8 text written by the community.")
    ] = None,
    cid: Annotated[
        str | None, typer.Option("--id", help="Community id (default: from data).")
    ] = None,
    like: Annotated[
        Path | None, typer.Option("--like", help="Copy persona and description from this file.")
    ] = None,
    questions: Annotated[int, typer.Option(help="At most this many training questions.")] = 200,
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 3e-3,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 4,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Fine-tune a LoRA adapter on the local base model and write a community file using it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pluralism._extras import require_train
    from pluralism.errors import InputError

    require_train("`pluralism community train`")
    from pluralism.eval._train import TrainConfig

    sources = [s for s in (survey, rows, corpus) if s is not None]
    if len(sources) != 1:
        raise InputError("Give exactly one of --survey, --rows or --corpus to train from.")
    if like is not None and not like.is_file():
        raise InputError(f"Community file {like} does not exist; pass an existing --like file.")
    cfg = TrainConfig(max_questions=questions, epochs=epochs, lr=lr, rank=rank, seed=seed)
    spec = _plan(survey, attribute, group, rows, country, corpus, cid)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"training {spec['id']}", total=None)

        def step(i: int, n: int, loss: float) -> None:
            bar.update(task, completed=i, total=n, description=f"{spec['id']} · loss {loss:.3f}")

        adapter = out / "adapters" / spec["id"]
        if corpus is not None:
            from pluralism.eval._train import train_text_adapter

            report = train_text_adapter(corpus, adapter, cfg=cfg, on_step=step)
        else:
            from pluralism.eval._train import train_choice_adapter
            from pluralism.types import Community

            community = _persona(spec, like)
            assert isinstance(community, Community)
            report = train_choice_adapter(
                community, spec["targets"], adapter, cfg=cfg, on_step=step
            )
            # The answers themselves, for questions like them (pluralism.answers).
            from pluralism.answers import write_answers
            from pluralism.eval._train import usable_targets

            write_answers(adapter / "answers.jsonl", usable_targets(spec["targets"]))
    path = community_file(
        out,
        spec["id"],
        name=spec["name"],
        kind=spec["kind"],
        who=spec["who"],
        population=spec["population"],
        like=like,
        answers=corpus is None,
    )
    console.print(
        f"trained {report.train} items in {report.seconds:.0f} s"
        + (
            f"; validation JS {report.val_js_before:.4f} → {report.val_js_after:.4f} "
            f"on {report.val} held-back questions"
            if report.val
            else ""
        )
    )
    console.print(f"wrote {path} and {adapter}/")


def _plan(
    survey: Path | None,
    attribute: str | None,
    group: list[str] | None,
    rows: Path | None,
    country: list[str] | None,
    corpus: Path | None,
    cid: str | None,
) -> dict[str, Any]:
    """What to train on and how the community is described, validated before any model loads."""
    from pluralism.errors import InputError
    from pluralism.eval._data import group_targets, load_items, load_survey, row_targets
    from pluralism.population import normalise

    if survey is not None:
        if not attribute or not group:
            raise InputError(
                "--survey needs --attribute (e.g. POLPARTY) and --group (e.g. Republican)."
            )
        targets = group_targets(load_survey(survey, attribute), group, attribute)
        label = " / ".join(group)
        return {
            "id": cid or slug("-".join(group)),
            "name": label,
            "kind": "perspective",
            "who": f"an American in the survey group {label} ({attribute})",
            "population": {"groups": {f"{attribute}:{g}": 1.0 for g in group}},
            "targets": _nonempty(targets),
        }
    if rows is not None:
        if not country:
            raise InputError("--rows needs --country (e.g. Japan) to pick the rows to learn from.")
        items = load_items(rows, "distributional")
        wanted = {normalise(c) for c in country}
        have = {normalise(it.attribute) for it in items}
        missing = sorted(c for c in country if normalise(c) not in have)
        if missing:
            raise InputError(
                f"No rows for {', '.join(missing)} in {rows}; use a country the file has "
                f"(e.g. {', '.join(sorted({it.attribute for it in items})[:6])})."
            )
        label = ", ".join(country)
        return {
            "id": cid or slug("-".join(country)),
            "name": label,
            "kind": "country",
            "who": f"people in {label}",
            "population": {"countries": {c: 1.0 for c in country}},
            "targets": _nonempty(row_targets(items, wanted)),
        }
    assert corpus is not None
    if not corpus.is_file():
        raise InputError(f"Corpus file {corpus} does not exist; pass a UTF-8 text file.")
    name = cid or slug(corpus.stem)
    return {
        "id": slug(name),
        "name": corpus.stem,
        "kind": "writing",
        "who": f"the authors of {corpus.name}",
        "population": {},
        "targets": [],
    }


def _nonempty(targets: list[Any]) -> list[Any]:
    from pluralism.errors import InputError

    if not targets:
        raise InputError(
            "The data holds no usable questions for that selection; pick another group."
        )
    return targets


def _persona(spec: dict[str, Any], like: Path | None) -> Any:
    """The community as training sees it: the same persona the written file will carry."""
    from pluralism.config import load_community
    from pluralism.types import Community

    if like is not None:
        return load_community(like)
    return Community(
        id=spec["id"],
        kind=spec["kind"],
        name=spec["name"],
        description=f"The views of {spec['who']}.",
        persona=f"You speak as {spec['who']}. Answer briefly and concretely from this perspective.",
    )


@app.command("export-lora")
def export_lora(
    out: Annotated[Path, typer.Option("--out", help="Directory for <id>.gguf files.")],
    communities: Annotated[
        Path | None,
        typer.Option("--communities", help="Directory of community files (default: shipped)."),
    ] = None,
) -> None:
    """Write each community's adapter as a GGUF LoRA, for a shared llama.cpp server.

    Prints the server command that loads them all, and the `model:` lines that make each
    community apply its own per request. (vLLM takes the peft folders as they are.)
    """
    import shutil

    from rich.console import Console

    from pluralism.config import default_dir, load_communities
    from pluralism.models._gguf import bundled_gguf, lora_gguf

    pool = load_communities(communities or default_dir("communities"))
    base = bundled_gguf()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for c in pool:
        if c.adapter:
            target = out / f"{c.id}.gguf"
            shutil.copyfile(lora_gguf(c.file_path(c.adapter), base), target)
            written.append(target)
    console = Console(highlight=False, soft_wrap=True)
    if not written:
        console.print("no community in the pool names an adapter; nothing written.")
        return
    loras = " ".join(f"--lora {p}" for p in written)
    console.print(f"wrote {len(written)} GGUF LoRA file(s) to {out}. Serve them with:\n")
    console.print(f"  llama-server -m {base} {loras} --lora-init-without-apply --port 8080\n")
    console.print(
        "and point each community's file at the server, naming its adapter:\n\n"
        "  model:\n    backend: openai\n    name: smollm2\n"
        "    base_url: http://127.0.0.1:8080/v1\n    lora: <id>"
    )
