"""The `ChatModel` seam: every backend (local, openai, scripted) implements it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Protocol, runtime_checkable

from pluralism.errors import InputError
from pluralism.types import GenerationParams, Message

Conversation = Sequence[Message]


@runtime_checkable
class ChatModel(Protocol):
    """A chat model that answers a *batch* of conversations and scores multiple-choice options.

    `generate` takes a batch so that N community drafts with different system prompts can share
    one forward pass (local) or go out concurrently (openai). `score_batch` returns, for each
    conversation, a probability per option (summing to 1), in the order the options were given.
    """

    model_id: str

    def generate(
        self, batch: Sequence[Conversation], params: GenerationParams | None = None
    ) -> list[str]: ...

    async def agenerate(
        self, batch: Sequence[Conversation], params: GenerationParams | None = None
    ) -> list[str]: ...

    def astream(
        self, conversation: Conversation, params: GenerationParams | None = None
    ) -> AsyncIterator[str]:
        """Text pieces of one answer as the model produces them (the proxy streams these)."""
        ...

    def score(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]: ...

    async def ascore(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]: ...

    def score_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str]
    ) -> list[list[float]]: ...

    async def ascore_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str]
    ) -> list[list[float]]: ...


def as_conversation(prompt: str | Conversation) -> list[Message]:
    """A bare string is one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


class SyncChatModel:
    """Base for backends whose work is blocking (local torch, scripted): async runs in a thread.

    Subclasses implement `generate` and `score_batch`; the rest is derived here so every backend
    has the same surface.
    """

    model_id: str = "unknown"

    def generate(
        self, batch: Sequence[Conversation], params: GenerationParams | None = None
    ) -> list[str]:
        raise NotImplementedError

    def score_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str]
    ) -> list[list[float]]:
        raise NotImplementedError

    def score(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]:
        return self.score_batch([prompt], options)[0]

    async def agenerate(
        self, batch: Sequence[Conversation], params: GenerationParams | None = None
    ) -> list[str]:
        return await asyncio.to_thread(self.generate, batch, params)

    async def astream(
        self, conversation: Conversation, params: GenerationParams | None = None
    ) -> AsyncIterator[str]:
        # Backends that can stream token by token override this; the rest yield one piece.
        (text,) = await self.agenerate([conversation], params)
        yield text

    async def ascore(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]:
        return (await self.ascore_batch([prompt], options))[0]

    async def ascore_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str]
    ) -> list[list[float]]:
        return await asyncio.to_thread(self.score_batch, prompts, options)


def check_adapter_names(
    adapters: Sequence[str | None] | None, rows: int, loaded: Collection[str]
) -> list[str | None]:
    """One adapter name (or None, the base model) per row, each one a backend has `loaded`;
    every backend with adapters checks a request's names here."""
    if adapters is None:
        return [None] * rows
    if len(adapters) != rows:
        raise InputError(
            f"Got {len(adapters)} adapter names for {rows} conversations; pass one per "
            f"conversation (None for the base model)."
        )
    unknown = sorted({a for a in adapters if a is not None and a not in loaded})
    if unknown:
        raise InputError(
            f"Unknown adapter(s) {', '.join(unknown)}; load them first with "
            f"load_adapter(name, path)."
        )
    return list(adapters)
