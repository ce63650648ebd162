"""Loading and validating the community pool (and locating the shipped defaults).

A community is one YAML file; adding a file adds a community. Errors name the file, the line
and the field, because the people who edit these files do not read tracebacks.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pluralism.errors import ConfigError
from pluralism.types import Community

MAX_FILE_BYTES = 1_000_000


def default_dir(name: str) -> Path:
    """The shipped `communities`, `policies` or `values` directory.

    In a source checkout (including an editable install) that is the directory at the repository
    root that authors edit; in a wheel it is the copy packaged under `pluralism/_defaults`.
    """
    checkout = Path(__file__).resolve().parent.parent / name
    if checkout.is_dir():
        return checkout
    return Path(str(files("pluralism"))) / "_defaults" / name


def key_lines(text: str) -> dict[str, int]:
    """1-based line of every top-level key (and `a.b` nested key) of a YAML mapping."""
    lines: dict[str, int] = {}
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key, value in node.value:
        lines[str(key.value)] = key.start_mark.line + 1
        if isinstance(value, yaml.MappingNode):
            for sub_key, _ in value.value:
                lines[f"{key.value}.{sub_key.value}"] = sub_key.start_mark.line + 1
    return lines


def read_yaml(path: Path) -> tuple[Any, str]:
    """Parse one YAML file; syntax errors become a `ConfigError` at the offending line."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(
            f"file is {path.stat().st_size:,} bytes; split it into files under "
            f"{MAX_FILE_BYTES:,} bytes",
            path=str(path),
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"is not valid UTF-8 (byte {exc.start}); save the file as UTF-8", path=str(path)
        ) from None
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            f"YAML syntax error: {problem}; fix the indentation or quoting there",
            path=str(path),
            line=line,
        ) from None


def validation_message(exc: ValidationError, lines: dict[str, int]) -> tuple[str, int | None]:
    """The first pydantic error as 'field `x`: what is wrong', with the line of that field."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    field = ".".join(loc)
    line = lines.get(".".join(loc[:2])) or (lines.get(loc[0]) if loc else None)
    kind = err["type"]
    if not loc:  # a check across fields (a model validator) names no single field
        what = str(err["msg"])
    elif kind == "missing":
        what = f"field `{field}` is required; add it"
    elif kind == "extra_forbidden":
        what = f"field `{field}` is not a known field; remove it or check its spelling"
    else:
        what = f"field `{field}`: {err['msg']}"
    return what, line


def load_community(path: Path) -> Community:
    """Load and validate one community file."""
    data, text = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(
            "a community file must be a YAML mapping with id, kind, name, description, persona",
            path=str(path),
        )
    try:
        community = Community.model_validate(data)
    except ValidationError as exc:
        what, line = validation_message(exc, key_lines(text))
        raise ConfigError(what, path=str(path), line=line) from None
    return community.model_copy(update={"source": str(path)})


def load_communities(directory: str | Path) -> list[Community]:
    """Every `*.yaml`/`*.yml` in a directory, sorted by file name; ids must be unique."""
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(
            "community directory does not exist; pass a directory of community YAML files",
            path=str(root),
        )
    paths = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    if not paths:
        raise ConfigError(
            "holds no community files; add at least one <id>.yaml (see communities/ for examples)",
            path=str(root),
        )
    seen: dict[str, str] = {}
    pool = []
    for path in paths:
        community = load_community(path)
        if community.id in seen:
            raise ConfigError(
                f"community id `{community.id}` is also used by {seen[community.id]}; "
                "give each community a unique id",
                path=str(path),
                line=key_lines(path.read_text(encoding="utf-8")).get("id"),
            )
        seen[community.id] = str(path)
        pool.append(community)
    return pool
