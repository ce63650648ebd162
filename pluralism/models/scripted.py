"""A deterministic `ChatModel` for unit tests: answers are a pure function of the input."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from pluralism.models._choices import check_options
from pluralism.models._protocol import Conversation, SyncChatModel, as_conversation
from pluralism.types import GenerationParams

Responder = Callable[[Sequence[Conversation], GenerationParams], list[str]]


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class ScriptedChatModel(SyncChatModel):
    """Echoes who was asked what, so tests can see which persona and prompt reached the model.

    `responder` replaces the default echo; `scores` maps an option to a fixed weight (otherwise
    weights are derived from a hash of the conversation, stable across runs). `calls` records
    every batch, so tests can assert batching.
    """

    def __init__(
        self,
        *,
        model_id: str = "scripted",
        responder: Responder | None = None,
        scores: dict[str, float] | None = None,
    ) -> None:
        self.model_id = model_id
        self._responder = responder
        self._scores = scores
        self.calls: list[tuple[str, int]] = []

    def generate(
        self, batch: Sequence[Conversation], params: GenerationParams | None = None
    ) -> list[str]:
        p = params or GenerationParams()
        self.calls.append(("generate", len(batch)))
        if self._responder is not None:
            return self._responder(batch, p)
        out = []
        for conv in batch:
            system = next((m["content"] for m in conv if m["role"] == "system"), "")
            user = next((m["content"] for m in reversed(conv) if m["role"] == "user"), "")
            words = f"[{system[:60]}] {user}".split()
            out.append(" ".join(words[: p.max_tokens]))
        return out

    def score_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str]
    ) -> list[list[float]]:
        check_options(options)
        self.calls.append(("score", len(prompts)))
        result = []
        for prompt in prompts:
            conv = as_conversation(prompt)
            if self._scores is not None:
                raw = [max(self._scores.get(o, 0.0), 0.0) for o in options]
            else:
                key = "|".join(m["content"] for m in conv)
                raw = [1.0 + (_digest(key + o) % 1000) / 250.0 for o in options]
            total = sum(raw) or 1.0
            result.append(
                [r / total for r in raw] if sum(raw) else [1 / len(options)] * len(options)
            )
        return result
