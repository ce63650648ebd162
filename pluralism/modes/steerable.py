"""Steerable mode: answer as one requested community would, conditioned on its draft."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pluralism.modes._prompts import history_messages, with_system
from pluralism.types import Community, Message


def meta_messages(
    prompt: str,
    community: Community,
    draft: str,
    *,
    context: str = "",
    system: str | None = None,
    history: Sequence[dict[str, Any]] = (),
) -> list[Message]:
    instructions = (
        f"Answer from the standpoint of {community.name}: {community.description} "
        "Stay faithful to that standpoint and to the community's own comment below."
    )
    user = f"Question: {prompt}\n\nComment from {community.name}: {draft}"
    if context:
        user = f"{context}\n\n{user}"
    return [
        {"role": "system", "content": with_system(system, instructions)},
        *history_messages(history),
        {"role": "user", "content": user},
    ]
