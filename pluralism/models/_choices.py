"""How a multiple-choice question is put to a model, shared by every backend and by eval.

Small models mostly answer a *position* ("A") rather than an option, so callers average option
probabilities over the cyclic shifts of the option order; `shifts` gives those orders.
"""

from __future__ import annotations

from collections.abc import Sequence

from pluralism.errors import InputError
from pluralism.types import Message

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def shifts(n: int) -> list[list[int]]:
    """The n cyclic rotations of range(n): order[k][pos] is the option shown at position pos."""
    return [[(pos + k) % n for pos in range(n)] for k in range(n)]


def choice_text(question: str, options: Sequence[str], order: Sequence[int]) -> str:
    """The user turn for one ordering of the options."""
    lines = [question.strip(), ""]
    lines += [f"{LETTERS[pos]}. {options[idx]}" for pos, idx in enumerate(order)]
    lines += ["", "Answer with the letter of one option."]
    return "\n".join(lines)


def unshift(
    per_position: Sequence[Sequence[float]], orders: Sequence[Sequence[int]]
) -> list[float]:
    """Average position probabilities back onto options over all orderings, renormalised."""
    n = len(orders[0])
    acc = [0.0] * n
    for probs, order in zip(per_position, orders, strict=True):
        total = sum(probs) or 1.0
        for pos, idx in enumerate(order):
            acc[idx] += probs[pos] / total
    s = sum(acc) or 1.0
    return [a / s for a in acc]


def check_options(options: Sequence[str]) -> None:
    """Every backend refuses the same impossible questions with the same message."""
    if len(options) < 2:
        raise InputError(
            f"A distributional question needs at least 2 options, got {len(options)}; "
            f"pass two or more."
        )
    if len(options) > len(LETTERS):
        raise InputError(
            f"A distributional question can have at most {len(LETTERS)} options, got "
            f"{len(options)}; merge or drop some."
        )


def choice_conversation(
    prompt: str | Sequence[Message], options: Sequence[str], order: Sequence[int]
) -> list[Message]:
    """The conversation for one ordering: the choice text replaces the last user turn.

    The system turn (a community's persona) and earlier turns stay, so a community answers the
    question in character.
    """
    conv: list[Message] = (
        [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    )
    last_user = next((i for i in range(len(conv) - 1, -1, -1) if conv[i]["role"] == "user"), None)
    if last_user is None:
        return [*conv, {"role": "user", "content": choice_text("", options, order)}]
    question = conv[last_user]["content"]
    conv[last_user] = {"role": "user", "content": choice_text(question, options, order)}
    return conv[: last_user + 1]
