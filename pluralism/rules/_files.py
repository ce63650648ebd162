"""Rule files: load `*.yaml` policies and lint them, every problem with file:line and a fix.

Policy authors never read Python, so nothing here raises on what they wrote: every problem
becomes a `LintProblem` and the caller decides (the CLI prints them, a reload refuses the
edit and keeps the last good rules, a start-up raises one `ConfigError`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from pluralism.errors import ConfigError
from pluralism.types import Rule

DEFAULT_COMMUNITIES = (
    "africa",
    "americas",
    "asia",
    "europe",
    "oceania",
    "progressive",
    "moderate",
    "conservative",
)

# A policy file is hand-written text; several MB means a pasted corpus, which belongs in Redis
# or in many smaller files, and would stall a hot reload.
MAX_FILE_BYTES = 2_000_000
MAX_TEXT_CHARS = 20_000  # Rule.text max_length in pluralism/types.py

Severity = Literal["error", "warning"]


class PolicyFile(BaseModel):
    """One policy file: a list of rules (the shape `rules.schema.json` describes)."""

    model_config = ConfigDict(extra="forbid", title="pluralism policy file")

    rules: list[Rule] = Field(description="The rules of this file; ids are unique across files.")


def policy_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, for editor completion (shipped as rules.schema.json)."""
    schema = PolicyFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_path() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "rules.schema.json"


@dataclass(frozen=True)
class LintProblem:
    """One thing wrong in a policy file: where, what, and (in the message) what to do."""

    path: str
    line: int | None
    message: str
    severity: Severity = "error"
    rule_id: str | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.severity}: {self.message}"


@dataclass
class LoadedPolicies:
    """The rules that loaded cleanly, every problem found, and where each rule was defined."""

    rules: list[Rule] = field(default_factory=list)
    problems: list[LintProblem] = field(default_factory=list)
    where: dict[str, tuple[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[LintProblem]:
        return [p for p in self.problems if p.severity == "error"]

    def raise_for_errors(self) -> None:
        errs = self.errors
        if errs:
            more = (
                f" (and {len(errs) - 1} more: run `pluralism policies lint`)"
                if len(errs) > 1
                else ""
            )
            first = errs[0]
            raise ConfigError(f"{first.message}{more}", path=first.path, line=first.line)


# libyaml's parser with PyYAML's safe constructor, where the wheel was built with libyaml.
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def policy_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in [*directory.glob("*.yaml"), *directory.glob("*.yml")]
        if p.is_file() and not p.name.startswith(".")
    )


def _line(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the YAML node at `loc` below `node`, or of the deepest one that exists."""
    if node is None:
        return None
    best = node.start_mark.line + 1
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if getattr(k, "value", None) == key:
                    child = v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
        if child is None:
            break
        node = child
        best = node.start_mark.line + 1
    return best


def _friendly(err: ErrorDetails, raw: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "missing":
        return f"rule is missing `{loc}`: add it"
    if kind == "extra_forbidden":
        fields = ", ".join(Rule.model_fields)
        return f"unknown field `{loc}`: fix the spelling (rule fields: {fields})"
    if loc == "text" and kind == "string_too_long":
        size = len(raw) if isinstance(raw, str) else 0
        return (
            f"text is {size:,} characters long, over the {MAX_TEXT_CHARS:,} limit: shorten it or "
            "split it into several rules"
        )
    if loc == "text" and kind == "string_too_short":
        return "text is empty: write the rule, or delete the entry"
    if loc == "id" and kind == "string_pattern_mismatch":
        return (
            f"id {err.get('input')!r} is not valid: use letters, digits and - _ . : only, "
            "starting with a letter or digit"
        )
    if loc == "priority":
        return f"priority must be a whole number from 0 to 100, not {err.get('input')!r}"
    return f"`{loc}`: {err['msg']}; fix the value"


@dataclass
class _Parsed:
    """One file's rules and problems, as checks within the file left them; ids it claims
    (with the line of their `id:`) are checked against other files when the set is merged."""

    key: tuple[bytes, frozenset[str] | None, frozenset[str] | None]
    rules: list[Rule]
    problems: list[LintProblem]
    where: dict[str, tuple[str, int]]
    id_lines: dict[str, int | None]


# path -> its last parse; a reload parses again only the files whose content changed.
ParseCache = dict[str, _Parsed]


def load_policies(
    directory: str | Path,
    *,
    known_communities: Iterable[str] | None = DEFAULT_COMMUNITIES,
    known_populations: Iterable[str] | None = None,
    cache: ParseCache | None = None,
) -> LoadedPolicies:
    """Read every policy file in `directory`; problems are collected, never raised.

    With `cache` (kept by the caller between calls), files unchanged since the last call are
    not parsed again: an edit costs the files it touched, not the whole set.
    """
    root = Path(directory)
    out = LoadedPolicies()
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "does not exist"
        out.problems.append(
            LintProblem(
                str(root),
                None,
                f"the policies directory {what}: create it with one or more *.yaml rule files, "
                "or pass the right path",
            )
        )
        return out
    communities = frozenset(known_communities) if known_communities is not None else None
    populations = frozenset(known_populations) if known_populations is not None else None
    files = policy_files(root)
    if not files:
        out.problems.append(
            LintProblem(
                str(root), None, "no *.yaml rule files here: add one (see docs/rules.md)", "warning"
            )
        )
    seen: set[str] = set()
    for path in files:
        name = str(path)
        out.files.append(name)
        seen.add(name)
        parsed = _parse_cached(path, communities, populations, cache)
        _merge(out, name, parsed)
    if cache is not None:
        for gone in set(cache) - seen:
            del cache[gone]
    return out


def _parse_cached(
    path: Path,
    communities: frozenset[str] | None,
    populations: frozenset[str] | None,
    cache: ParseCache | None,
) -> _Parsed:
    # By content, not mtime: two saves within one clock tick can share an mtime and a size.
    # Hashing is cheap next to parsing (~0.2 s for 100 MB of rule files).
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise OSError  # refused unread by _load_file
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
    except OSError:
        digest = b""
    key = (digest, communities, populations)
    hit = cache.get(str(path)) if cache is not None else None
    if hit is not None and hit.key == key and digest:
        return hit
    part = LoadedPolicies()
    id_lines: dict[str, int | None] = {}
    _load_file(
        path,
        part,
        set(communities) if communities is not None else None,
        set(populations) if populations is not None else None,
        id_lines,
    )
    parsed = _Parsed(key, part.rules, part.problems, part.where, id_lines)
    if cache is not None:
        cache[str(path)] = parsed
    return parsed


def _merge(out: LoadedPolicies, name: str, parsed: _Parsed) -> None:
    """Add one file's parse to the set: an id another file already claimed is a duplicate."""
    duplicates: set[str] = set()
    problems = list(parsed.problems)
    for rid, (where_file, where_line) in parsed.where.items():
        if rid in out.where:
            first_file, first_line = out.where[rid]
            problems.append(
                LintProblem(
                    name,
                    parsed.id_lines.get(rid) or where_line,
                    f"duplicate id {rid!r} (first defined at {first_file}:{first_line}): "
                    "rename one of them",
                    rule_id=rid,
                )
            )
            duplicates.add(rid)
        else:
            out.where[rid] = (where_file, where_line)
    out.problems.extend(problems)
    out.rules.extend(r for r in parsed.rules if r.id not in duplicates)


def _load_file(
    path: Path,
    out: LoadedPolicies,
    communities: set[str] | None,
    populations: set[str] | None,
    id_lines: dict[str, int | None],
) -> None:
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            out.problems.append(
                LintProblem(
                    name,
                    None,
                    f"file is {size / 1e6:.1f} MB, over the {MAX_FILE_BYTES / 1e6:.0f} MB limit "
                    "for a policy file: split it into smaller files",
                )
            )
            return
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        out.problems.append(LintProblem(name, None, "file is not UTF-8 text: save it as UTF-8"))
        return
    except OSError as exc:
        out.problems.append(
            LintProblem(name, None, f"cannot read the file ({exc.strerror}): check its permissions")
        )
        return
    try:
        root, data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        out.problems.append(
            LintProblem(
                name,
                mark.line + 1 if mark is not None else None,
                f"YAML syntax error ({problem}): check indentation, colons and quotes on this line",
            )
        )
        return
    if data is None:
        out.problems.append(
            LintProblem(name, 1, "file is empty: add a `rules:` list or delete it", "warning")
        )
        return
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        out.problems.append(
            LintProblem(
                name, 1, "a policy file must be a mapping with a `rules:` list: see docs/rules.md"
            )
        )
        return
    extra = sorted(set(data) - {"rules"})
    if extra:
        out.problems.append(
            LintProblem(
                name,
                _line(root, [extra[0]]),
                f"unknown top-level key `{extra[0]}`: only `rules:` is read",
            )
        )
    for i, raw in enumerate(data["rules"]):
        _load_rule(name, root, i, raw, out, communities, populations, id_lines)


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data, from one pass of libyaml where PyYAML
    has it (about 10x faster than the pure-Python parser on large files)."""
    loader = _SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data


def _load_rule(
    name: str,
    root: yaml.Node | None,
    i: int,
    raw: Any,
    out: LoadedPolicies,
    communities: set[str] | None,
    populations: set[str] | None,
    id_lines: dict[str, int | None],
) -> None:
    at = _line(root, ["rules", i])
    if not isinstance(raw, dict):
        out.problems.append(
            LintProblem(name, at, "each rule must be a mapping with at least `id` and `text`")
        )
        return
    rid = raw.get("id") if isinstance(raw.get("id"), str) else None
    try:
        rule = Rule.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            line = _line(root, ["rules", i, *err["loc"]])
            out.problems.append(
                LintProblem(name, line, _friendly(err, raw.get("text")), rule_id=rid)
            )
        if rid is not None:
            # Claim the id anyway, so a second rule with it is still reported as a duplicate.
            out.where.setdefault(rid, (name, at or 0))
        return
    ok = True
    if not rule.text.strip():
        out.problems.append(
            LintProblem(
                name,
                _line(root, ["rules", i, "text"]),
                "text is empty: write the rule, or delete the entry",
                rule_id=rule.id,
            )
        )
        ok = False
    id_lines.setdefault(rule.id, _line(root, ["rules", i, "id"]))
    if rule.id in out.where:
        first_file, first_line = out.where[rule.id]
        out.problems.append(
            LintProblem(
                name,
                _line(root, ["rules", i, "id"]),
                f"duplicate id {rule.id!r} (first defined at {first_file}:{first_line}): "
                "rename one of them",
                rule_id=rule.id,
            )
        )
        ok = False
    else:
        out.where[rule.id] = (name, at or 0)
    for axis, known in (("communities", communities), ("populations", populations)):
        if known is None:
            continue
        for j, value in enumerate(getattr(rule.scope, axis)):
            if value not in known:
                listed = ", ".join(sorted(known)) or "none"
                out.problems.append(
                    LintProblem(
                        name,
                        _line(root, ["rules", i, "scope", axis, j]),
                        f"unknown {'community' if axis == 'communities' else 'population'} "
                        f"{value!r} in scope (known: {listed}): fix the spelling, or add the "
                        f"{'community file' if axis == 'communities' else 'population'} first",
                        rule_id=rule.id,
                    )
                )
                ok = False
    if not rule.examples:
        out.problems.append(
            LintProblem(
                name,
                at,
                f"rule {rule.id!r} has no examples: add a prompt that should recall it, so "
                "`pluralism policies test` can check it",
                "warning",
                rule.id,
            )
        )
    if ok:
        out.rules.append(rule)


def lint_policies(
    directory: str | Path,
    *,
    known_communities: Iterable[str] | None = DEFAULT_COMMUNITIES,
    known_populations: Iterable[str] | None = None,
) -> list[LintProblem]:
    """Every problem in the policy files of `directory` (empty list: all good)."""
    return load_policies(
        directory, known_communities=known_communities, known_populations=known_populations
    ).problems


if __name__ == "__main__":  # python -m pluralism.rules._files  regenerates the shipped schema
    import json

    schema_path().write_text(json.dumps(policy_schema(), indent=2) + "\n", encoding="utf-8")
