"""Overton mode: cover the spectrum of reasonable views in one answer (Modular Pluralism)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pluralism.embedding import Embedder
from pluralism.modes._prompts import history_messages, with_system
from pluralism.types import Message, Perspective, RuleHit

INSTRUCTIONS = (
    "You write one balanced answer that presents each distinct perspective below fairly, "
    "naming whose view it is, without picking a winner."
)


def merge_near_duplicates(
    perspectives: Sequence[Perspective], embedder: Embedder, *, threshold: float = 0.9
) -> tuple[list[Perspective], list[list[str]]]:
    """Drafts that say the same thing collapse into the heaviest one, which takes their weight.

    Returns the kept perspectives and the groups of community ids that were merged.
    """
    if len(perspectives) < 2:
        return list(perspectives), []
    vecs = embedder.encode([p.text or " " for p in perspectives])
    sims = vecs @ vecs.T
    order = sorted(range(len(perspectives)), key=lambda i: -perspectives[i].weight)
    owner: dict[int, int] = {}
    for i in order:
        if i in owner:
            continue
        owner[i] = i
        for j in order:
            if j not in owner and float(sims[i, j]) >= threshold:
                owner[j] = i
    kept: list[Perspective] = []
    groups: list[list[str]] = []
    for i in order:
        if owner[i] != i:
            continue
        members = [j for j in order if owner[j] == i]
        weight = float(np.sum([perspectives[j].weight for j in members]))
        kept.append(perspectives[i].model_copy(update={"weight": weight}))
        if len(members) > 1:
            groups.append([perspectives[j].community for j in members])
    return kept, groups


def render_list(perspectives: Sequence[Perspective]) -> str:
    """The "list" style: each distinct view under its community's name, heaviest first."""
    lines = ["Views differ on this:"]
    ranked = sorted(perspectives, key=lambda p: -p.weight)
    lines += [f"- {p.name or p.community}: {p.text.strip()}" for p in ranked]
    return "\n".join(lines)


VALUES_HEADER = "Values that may be at stake:"


def render_values(hits: Sequence[RuleHit]) -> str:
    """The recalled entries of the values catalogue as the answer's closing list, or ''.

    Listed, not left to the meta model: a small one drops or garbles them, and a list lets a
    reader see which values the answer was checked against (Value Kaleidoscope's idea of
    naming the values, rights and duties at stake).
    """
    if not hits:
        return ""
    return "\n".join([VALUES_HEADER, *(f"- {h.rule.text.strip()}" for h in hits)])


def with_values(text: str, values: str) -> str:
    return f"{text.rstrip()}\n\n{values}" if values else text


def meta_messages(
    prompt: str,
    perspectives: Sequence[Perspective],
    *,
    values: str = "",
    context: str = "",
    system: str | None = None,
    history: Sequence[dict[str, Any]] = (),
) -> list[Message]:
    listed = "\n".join(f"- {p.name or p.community}: {p.text}" for p in perspectives)
    user = f"Question: {prompt}\n\nPerspectives:\n{listed}"
    if context:
        user = f"{context}\n\n{user}"
    user += f"\n\n{values}" if values else ""
    user += "\n\nWrite one answer that covers each perspective"
    user += " and says how each value above bears on it." if values else "."
    return [
        {"role": "system", "content": with_system(system, INSTRUCTIONS)},
        *history_messages(history),
        {"role": "user", "content": user},
    ]
