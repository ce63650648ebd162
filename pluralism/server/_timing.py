"""Time spent waiting on models, per request, so the proxy can report its own overhead.

Every model the proxy uses is wrapped once in a `TimedModel`. A request installs a fresh
`ModelClock` in a context variable; LangGraph tasks and `asyncio.to_thread` copy the context, so
they all add to the same clock object, including while the meta-agent streams.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from pluralism.models._protocol import ChatModel, Conversation
from pluralism.types import GenerationParams


class ModelClock:
    """Milliseconds spent inside model calls for one request (parallel calls add up)."""

    __slots__ = ("_open", "_since", "ms", "wall_ms")

    def __init__(self) -> None:
        self.ms = 0.0
        # Wall time during which at least one model call was in flight: overlapping community
        # drafts must not count twice against the request's own wall time.
        self.wall_ms = 0.0
        self._open = 0
        self._since = 0.0

    def enter(self) -> None:
        if self._open == 0:
            self._since = time.perf_counter()
        self._open += 1

    def leave(self, started: float) -> None:
        now = time.perf_counter()
        self.ms += (now - started) * 1000
        self._open -= 1
        if self._open == 0:
            self.wall_ms += (now - self._since) * 1000


CLOCK: ContextVar[ModelClock | None] = ContextVar("pluralism_model_clock", default=None)


class _Timed:
    __slots__ = ("clock", "on_call", "started")

    def __init__(self, on_call: Callable[[float], None] | None) -> None:
        self.on_call = on_call

    def __enter__(self) -> None:
        self.clock = CLOCK.get()
        self.started = time.perf_counter()
        if self.clock is not None:
            self.clock.enter()

    def __exit__(self, *exc: object) -> None:
        if self.clock is not None:
            self.clock.leave(self.started)
        if self.on_call is not None:
            self.on_call(time.perf_counter() - self.started)


T = TypeVar("T")


class TimedModel:
    """A `ChatModel` that reports its calls to the request's clock; everything else delegates.

    Attribute access falls through to the wrapped model, so adapter loading and other
    backend-specific extras keep working.
    """

    def __init__(self, inner: ChatModel, *, on_call: Callable[[float], None] | None = None) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        # Seconds per call, e.g. into the upstream-latency histogram.
        self._on_call = on_call

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def forwards(self) -> bool:
        """Whether whole chat requests can be forwarded (`achat`): an upstream server can."""
        return callable(getattr(self.inner, "achat", None))

    async def achat(self, body: dict[str, Any]) -> dict[str, Any]:
        with _Timed(self._on_call):
            reply: dict[str, Any] = await self.inner.achat(body)  # type: ignore[attr-defined]
            return reply

    def generate(
        self, batch: Sequence[Conversation], params: GenerationParams | None = None, **kw: Any
    ) -> list[str]:
        with _Timed(self._on_call):
            return self.inner.generate(batch, params, **kw)

    async def agenerate(
        self, batch: Sequence[Conversation], params: GenerationParams | None = None
    ) -> list[str]:
        with _Timed(self._on_call):
            return await self.inner.agenerate(batch, params)

    async def astream(
        self, conversation: Conversation, params: GenerationParams | None = None
    ) -> AsyncIterator[str]:
        async for piece in self._timed_stream(self.inner.astream(conversation, params)):
            yield piece

    async def achat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        stream = self.inner.achat_stream(body)  # type: ignore[attr-defined]
        async for chunk in self._timed_stream(stream):
            yield chunk

    async def _timed_stream(self, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        # Only the waits for the next piece count: what the consumer does in between is ours.
        pieces = stream.__aiter__()
        waited = 0.0
        try:
            while True:
                timed = _Timed(None)
                with timed:
                    try:
                        piece = await pieces.__anext__()
                    except StopAsyncIteration:
                        return
                    finally:
                        waited += time.perf_counter() - timed.started
                yield piece
        finally:
            if self._on_call is not None:
                self._on_call(waited)
            aclose = getattr(pieces, "aclose", None)
            if aclose is not None:
                await aclose()

    def score(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]:
        with _Timed(self._on_call):
            return self.inner.score(prompt, options)

    async def ascore(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]:
        with _Timed(self._on_call):
            return await self.inner.ascore(prompt, options)

    def score_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str], **kw: Any
    ) -> list[list[float]]:
        with _Timed(self._on_call):
            return self.inner.score_batch(prompts, options, **kw)

    async def ascore_batch(
        self, prompts: Sequence[str | Conversation], options: Sequence[str]
    ) -> list[list[float]]:
        with _Timed(self._on_call):
            return await self.inner.ascore_batch(prompts, options)
