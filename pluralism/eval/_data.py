"""Readers for the benchmark files: the Modular Pluralism JSON lists and OpinionQA survey folders.

Every reader returns plain dataclasses and raises `InputError` with one sentence a user can act
on, so the CLI never shows a traceback for a wrong path or a file of the wrong kind.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pluralism.errors import InputError

Target = tuple[str, list[str], list[float]]  # question, options, answer shares
Task = Literal["overton", "steerable", "distributional"]
# Survey answers that say nothing about an opinion; Modular Pluralism's files leave them out.
NON_ANSWERS = frozenset({"refused", "dk/refused", "don't know", "dk", "no answer"})
HELDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class Item:
    """One benchmark row, whatever the task; fields a task does not use stay empty."""

    key: str  # stable id, so a resumed run knows what it already did
    question: str
    options: list[str] = field(default_factory=list)
    attribute: str = ""  # a country, a survey group (POLPARTY_Republican) or a value (VK)
    gold: list[float] = field(default_factory=list)  # a distribution over `options`
    label: str = ""  # VK steerable: the gold option letter
    values: list[str] = field(default_factory=list)  # Overton: what a good answer covers


def norm_question(text: str) -> str:
    """Question text with case, punctuation and the 'Question:/Options:' wrapping removed."""
    return re.sub(r"[^0-9a-z]+", " ", bare_question(text).casefold()).strip()


def bare_question(text: str) -> str:
    """The question alone: Modular Pluralism's rows append the options and 'Answer:' to it."""
    body = text.strip()
    body = re.sub(r"^Question:\s*", "", body)
    body = re.split(r"\n\s*Options:|\nA\. ", body, maxsplit=1)[0]
    return re.sub(r"\s*Answer:\s*$", "", body).strip()


def is_heldout(question: str, fraction: float = HELDOUT_FRACTION) -> bool:
    """Question-level split shared by training and evaluation: a question's rows for every
    country or group fall on the same side, so a held-out score never saw the question."""
    digest = hashlib.sha1(norm_question(question).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def _read_list(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"Data file {path} does not exist; pass a Modular Pluralism JSON file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); pass a benchmark JSON list.") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(f"{path} is not a JSON list of rows; pass a Modular Pluralism file.")
    if not data:
        raise InputError(f"{path} holds no rows; pass a file with at least one question.")
    return data


def _distinct(options: list[str]) -> list[str]:
    """A few published rows repeat an option (mangled text such as 'Ye', 'Ye'); numbering the
    repeats keeps the row (and every method's row order) without a model seeing two equal
    choices."""
    seen: dict[str, int] = {}
    out = []
    for o in options:
        seen[o] = seen.get(o, 0) + 1
        out.append(o if seen[o] == 1 else f"{o} ({seen[o]})")
    return out


def _key(row: dict[str, Any], index: int) -> str:
    return str(row.get("id", index)) + "|" + str(row.get("attribute", ""))


def _dist(row: dict[str, Any], path: Path) -> list[float]:
    gold = [float(x) for x in row["gold_distribution"]]
    if len(gold) != len(row["options"]) or sum(gold) <= 0:
        raise InputError(
            f"{path}: a row's gold_distribution does not match its options; fix or drop that row."
        )
    total = sum(gold)
    return [g / total for g in gold]


def load_items(path: str | Path, task: Task) -> list[Item]:
    """Rows of a Modular Pluralism file for `task`; a file of another task is refused."""
    p = Path(path)
    rows = _read_list(p)
    first = rows[0]
    items: list[Item] = []
    try:
        if task == "overton":
            if "vrd" not in first or not isinstance(first["vrd"], list):
                raise KeyError("vrd")
            for i, r in enumerate(rows):
                # The value names alone: the explanations repeat the situation, which an
                # embedding judge would match against any on-topic answer.
                values = [str(v) for v in r["vrd"]]
                items.append(Item(key=_key(r, i), question=r["situation"], values=values))
        elif "label" in first and task == "steerable":  # Value Kaleidoscope
            for i, r in enumerate(rows):
                items.append(
                    Item(
                        key=_key(r, i),
                        question=r["situation"],
                        options=["Support", "Oppose", "Either"],
                        attribute=r["vrd"],
                        label=str(r["label"]).strip().upper(),
                    )
                )
        else:
            if "gold_distribution" not in first:
                raise KeyError("gold_distribution")
            for i, r in enumerate(rows):
                if len(r["options"]) < 2:
                    continue  # a one-option row has no distribution to get wrong
                items.append(
                    Item(
                        key=_key(r, i),
                        question=bare_question(r["question"]),
                        options=_distinct([str(o) for o in r["options"]]),
                        attribute=str(r.get("attribute", "")),
                        gold=_dist(r, p),
                    )
                )
    except (KeyError, TypeError) as exc:
        raise InputError(
            f"{p} is not a {task} file (no field {exc}); pass the matching Modular Pluralism "
            f"file, e.g. {task}_test_*.json."
        ) from None
    return items


# -- OpinionQA survey folders (one folder per wave, <ATTRIBUTE>_data.json inside) ---------------


@dataclass(frozen=True)
class SurveyQuestion:
    question: str
    options: list[str]
    groups: dict[str, list[float]]  # group → distribution over `options`


def survey_attributes(root: str | Path) -> list[str]:
    """The attributes with answer files anywhere under `root`."""
    names = {p.name.removesuffix("_data.json") for p in Path(root).rglob("*_data.json")}
    return sorted(names)


def load_survey(root: str | Path, attribute: str) -> list[SurveyQuestion]:
    """Every question of every wave under `root` for one attribute, non-answers dropped."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"Survey folder {base} does not exist; pass the opinions_qa folder.")
    files = sorted(base.rglob(f"{attribute}_data.json"))
    if not files:
        known = ", ".join(survey_attributes(base)[:15]) or "none"
        raise InputError(
            f"No {attribute}_data.json under {base}; pick an attribute that exists ({known})."
        )
    seen: set[str] = set()
    out: list[SurveyQuestion] = []
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        for entry in data.values():
            options = [o for o in entry["MC_options"] if o.casefold() not in NON_ANSWERS]
            text = str(entry["question_text"])
            # Waves repeat questions; one copy keeps the split and the loss honest.
            sig = norm_question(text) + "|" + "|".join(options)
            if len(options) < 2 or sig in seen:
                continue
            seen.add(sig)
            groups: dict[str, list[float]] = {}
            for name, counts in entry.items():
                if name in ("MC_options", "question_text") or not isinstance(counts, dict):
                    continue
                dist = [float(counts.get(o, 0.0)) for o in options]
                if sum(dist) > 0:
                    groups[name] = [d / sum(dist) for d in dist]
            out.append(SurveyQuestion(text, options, groups))
    return out


def group_targets(
    questions: list[SurveyQuestion], groups: list[str], attribute: str
) -> list[Target]:
    """(question, options, mean distribution of `groups`) for questions every group answered."""
    known = {g for q in questions for g in q.groups}
    missing = [g for g in groups if g not in known]
    if missing:
        raise InputError(
            f"Unknown {attribute} group(s) {', '.join(missing)}; use one of: "
            f"{', '.join(sorted(known))}."
        )
    out = []
    for q in questions:
        dists = [q.groups[g] for g in groups if g in q.groups]
        if len(dists) == len(groups):
            mean = [sum(col) / len(dists) for col in zip(*dists, strict=True)]
            out.append((q.question, q.options, mean))
    return out


def row_targets(items: list[Item], accept: set[str]) -> list[Target]:
    """(question, options, mean distribution over the accepted attributes) per question."""
    from pluralism.population import normalise

    by_q: dict[tuple[str, tuple[str, ...]], list[list[float]]] = {}
    for it in items:
        if normalise(it.attribute) in accept:
            by_q.setdefault((it.question, tuple(it.options)), []).append(it.gold)
    return [
        (q, list(opts), [sum(col) / len(ds) for col in zip(*ds, strict=True)])
        for (q, opts), ds in by_q.items()
    ]


def merge_targets(parts: list[list[Target]]) -> list[Target]:
    """One target per (question, options): the mean over the parts that have it."""
    by_q: dict[tuple[str, tuple[str, ...]], list[list[float]]] = {}
    for part in parts:
        for q, opts, dist in part:
            by_q.setdefault((norm_question(q) or q, tuple(opts)), []).append(dist)
    first: dict[tuple[str, tuple[str, ...]], str] = {}
    for part in parts:
        for q, opts, _ in part:
            first.setdefault((norm_question(q) or q, tuple(opts)), q)
    return [
        (first[k], list(k[1]), [sum(col) / len(ds) for col in zip(*ds, strict=True)])
        for k, ds in by_q.items()
    ]
