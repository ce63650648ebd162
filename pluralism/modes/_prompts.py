"""The prompts every mode shares: a community's draft, and the context block of rules/principles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pluralism.types import Community, Message, Principle


def context_block(rules_text: str, principles: Sequence[Principle]) -> str:
    """Rules and situated principles as supplementary information, or '' when there are none."""
    parts = []
    if rules_text.strip():
        parts.append(f"Rules that apply here:\n{rules_text.strip()}")
    if principles:
        listed = "\n".join(f"- {p.text}" for p in principles)
        parts.append(f"Principles for this question:\n{listed}")
    return "\n\n".join(parts)


def history_messages(history: Sequence[dict[str, Any]]) -> list[Message]:
    """Earlier user/assistant turns, kept so multi-turn conversations stay coherent."""
    out: list[Message] = []
    for turn in history:
        role = str(turn.get("role", ""))
        if role in ("user", "assistant"):
            out.append({"role": role, "content": str(turn.get("content") or "")})
    return out


def draft_messages(
    community: Community,
    prompt: str,
    *,
    context: str = "",
    history: Sequence[dict[str, Any]] = (),
    operator_system: str | None = None,
) -> list[Message]:
    """One community LM's conversation: its persona as system prompt, then the user's turn.

    `operator_system` is given only when the drafts are the answer (no meta model rewrites
    them), so the operator's instructions still shape what the user reads.
    """
    system = with_system(operator_system, community.persona)
    if context:
        system = f"{system}\n\n{context}"
    return [
        {"role": "system", "content": system},
        *history_messages(history),
        {"role": "user", "content": prompt},
    ]


def with_system(system: str | None, base: str) -> str:
    """The operator's own system prompt comes first; the meta-agent's instructions follow."""
    return f"{system.strip()}\n\n{base}" if system and system.strip() else base
