"""The `transformers` backend: the same GGUF (or any transformers model) run by torch on CPU.

The embedded default runs on llama.cpp (`local`); this backend stays for training community
adapters (peft needs torch modules) and as the baseline the benchmarks compare against. It needs
the train extra (`pip install 'pluralism[train]'`). torch and transformers are imported inside
functions so that importing `pluralism.models` stays fast and torch-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pluralism.errors import ConfigError, InputError, ModelError, ModelPackageMissingError
from pluralism.models import _hf_cache as cache
from pluralism.models import _hf_score as _score
from pluralism.models._choices import LETTERS, check_options, choice_conversation, shifts, unshift
from pluralism.models._protocol import Conversation, SyncChatModel, check_adapter_names
from pluralism.models._stops import StopFilter, cut_at_stop
from pluralism.types import GenerationParams

LoadedFrom = Literal["cache", "gguf", "directory"]
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch


class TransformersChatModel(SyncChatModel):
    """A causal LM run in-process; generation and scoring are batched into single forward calls.

    `path` is None (the bundled SmolLM2 GGUF), a `.gguf` file or a directory holding one (both
    converted once into a safetensors cache), or an ordinary transformers model directory.
    `from_gguf=True` forces the slow dequantising load and leaves the cache alone (benchmarks use
    it as the baseline). `loaded_from` says which path the load took; `load_seconds` how long.
    `threads` sets torch's process-wide thread count: on a machine shared with other busy
    processes, fewer threads than cores avoids OpenMP spin-waiting that can cost 10x.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        from_gguf: bool = False,
    ) -> None:
        # Offline machines must fail fast rather than hang on a hub request.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        torch = _import_torch()

        if threads is not None:
            torch.set_num_threads(threads)
        started = time.perf_counter()
        self.model_id = cache.SMOLLM2_ID if path is None else str(path)
        self.loaded_from: LoadedFrom
        self._model, self._tok = self._load(path, cache_dir, from_gguf)
        self.load_seconds = time.perf_counter() - started
        self._model.eval()
        self._tok.padding_side = "left"  # generation appends on the right, so pad on the left
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        self._eos_ids = _eos_ids(self._model, self._tok)
        self._lock = threading.Lock()  # one forward at a time: torch modules are not re-entrant
        self._adapters: set[str] = set()
        self._letter_ids: dict[int, list[list[int]]] = {}

    @property
    def from_cache(self) -> bool:
        return self.loaded_from == "cache"

    def _load(
        self, path: str | Path | None, cache_dir: str | Path | None, from_gguf: bool
    ) -> tuple[Any, Any]:
        gguf = cache.bundled_gguf() if path is None else cache.gguf_in(Path(path))
        if gguf is None:
            self.loaded_from = "directory"
            return cache.load_directory(str(path))
        target = cache.converted_dir(gguf, cache_dir)
        if not from_gguf and cache.is_complete(target):
            try:
                self.loaded_from = "cache"
                return cache.load_directory(str(target))
            except ConfigError:
                pass  # an unreadable copy is rebuilt below, as if it were missing
        self.loaded_from = "gguf"
        model, tok = cache.load_gguf(gguf)
        if not from_gguf:
            cache.clean_stale_temps(target.parent)
            cache.save_converted(model, tok, target)
        return model, tok

    # -- adapters ---------------------------------------------------------------------------

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a peft (LoRA) adapter under `name`; rows of a batch can then pick adapters."""
        if not name or name == BASE_ADAPTER:
            raise InputError(f"Adapter name {name!r} is reserved; pick another name.")
        try:
            from peft import PeftModelForCausalLM
        except ImportError as exc:
            raise ModelPackageMissingError(
                "Adapters on the transformers backend need peft: install it with "
                "`pip install 'pluralism[train]'`."
            ) from exc
        with self._lock:
            try:
                with warnings.catch_warnings():
                    # peft trips a transformers deprecation notice the user can do nothing about.
                    warnings.simplefilter("ignore", FutureWarning)
                    if self._adapters:
                        self._model.load_adapter(str(path), adapter_name=name)
                    else:
                        # The causal-LM class even for adapters saved without a task type: only
                        # it routes `adapter_names` through `generate`.
                        self._model = PeftModelForCausalLM.from_pretrained(
                            self._model, str(path), adapter_name=name
                        )
            except Exception as exc:
                raise ConfigError(
                    f"Could not load adapter {name!r} ({exc}); check it is a peft adapter "
                    f"trained for {self.model_id}.",
                    path=str(path),
                ) from exc
            self._model.eval()
            self._adapters.add(name)

    @property
    def adapters(self) -> frozenset[str]:
        return frozenset(self._adapters)

    def _adapter_kwargs(self, adapters: Sequence[str | None] | None, rows: int) -> dict[str, Any]:
        names = check_adapter_names(adapters, rows, self._adapters)
        if not self._adapters:
            return {}
        # A peft-wrapped model would otherwise apply its active adapter to every row.
        return {"adapter_names": [a or BASE_ADAPTER for a in names]}

    # -- generation -------------------------------------------------------------------------

    def _prompt_text(self, conversation: Conversation) -> str:
        messages = [dict(m) for m in conversation]
        if getattr(self._tok, "chat_template", None):
            text = self._tok.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            return str(text)
        # Base models without a template still get a readable, role-tagged prompt.
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def _encode(self, texts: Sequence[str]) -> Any:
        # Chat templates already carry the special tokens; adding them again doubles the BOS.
        return self._tok(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)

    def _generate_kwargs(self, p: GenerationParams) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": p.max_tokens,
            "repetition_penalty": p.repetition_penalty,
            "pad_token_id": self._tok.pad_token_id,
            "eos_token_id": self._eos_ids,
        }
        if p.temperature > 0:
            kw.update(do_sample=True, temperature=p.temperature, top_p=p.top_p, top_k=None)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if p.stop:
            # Stops generation early; the text is also cut below, as the stop may end mid-token.
            kw.update(stop_strings=list(p.stop), tokenizer=self._tok)
        return kw

    def _run_generate(self, enc: Any, p: GenerationParams, extra: dict[str, Any]) -> Any:
        import torch

        with self._lock, torch.inference_mode(), torch.random.fork_rng(devices=[]):
            # fork_rng keeps a seeded call from disturbing (or being disturbed by) other code.
            if p.seed is not None:
                torch.manual_seed(p.seed)
            try:
                return self._model.generate(**enc, **self._generate_kwargs(p), **extra)
            except (RuntimeError, ValueError, IndexError) as exc:
                raise ModelError(
                    f"The local model {self.model_id} failed while generating ({exc}); try "
                    f"shorter input or fewer max_tokens."
                ) from exc

    def generate(
        self,
        batch: Sequence[Conversation],
        params: GenerationParams | None = None,
        *,
        adapters: Sequence[str | None] | None = None,
    ) -> list[str]:
        """One padded `model.generate` call for the whole batch; each row keeps its own system."""
        if not batch:
            return []
        p = params or GenerationParams()
        extra = self._adapter_kwargs(adapters, len(batch))
        enc = self._encode([self._prompt_text(c) for c in batch])
        out = self._run_generate(enc, p, extra)
        new = out[:, enc["input_ids"].shape[1] :]
        texts = self._tok.batch_decode(new, skip_special_tokens=True)
        return [cut_at_stop(str(t), p.stop).strip() for t in texts]

    async def agenerate(
        self,
        batch: Sequence[Conversation],
        params: GenerationParams | None = None,
        *,
        adapters: Sequence[str | None] | None = None,
    ) -> list[str]:
        return await asyncio.to_thread(self.generate, batch, params, adapters=adapters)

    async def astream(
        self,
        conversation: Conversation,
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> AsyncIterator[str]:
        """Token-by-token text: generate runs in a thread and feeds an async streamer."""
        from transformers import AsyncTextIteratorStreamer, StoppingCriteria

        p = params or GenerationParams()
        cancel = threading.Event()

        class _Cancelled(StoppingCriteria):
            # Lets a consumer that stops reading free the model instead of holding the lock.
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                import torch

                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        streamer: Any = AsyncTextIteratorStreamer(
            self._tok, skip_prompt=True, skip_special_tokens=True
        )
        extra = self._adapter_kwargs(None if adapter is None else [adapter], 1)
        extra.update(streamer=streamer, stopping_criteria=[_Cancelled()])
        enc = self._encode([self._prompt_text(conversation)])
        errors: list[BaseException] = []

        def run() -> None:
            try:
                self._run_generate(enc, p, extra)
            except BaseException as exc:
                errors.append(exc)
                # If the consumer's loop is already gone, nobody is listening anyway.
                with contextlib.suppress(RuntimeError):
                    streamer.end()

        threading.Thread(target=run, name="pluralism-local-stream", daemon=True).start()
        filt = StopFilter(p.stop or [])
        try:
            async for piece in streamer:
                out = filt.feed(piece)
                if out:
                    yield out
                if filt.stopped:
                    break
            if errors:
                raise errors[0]
            tail = filt.flush()
            if tail:
                yield tail
        finally:
            cancel.set()

    # -- scoring ----------------------------------------------------------------------------

    def score_batch(
        self,
        prompts: Sequence[str | Conversation],
        options: Sequence[str],
        *,
        adapters: Sequence[str | None] | None = None,
    ) -> list[list[float]]:
        """Letter probabilities for every prompt x cyclic shift, in one batch (see _hf_score)."""
        check_options(options)
        if not prompts:
            return []
        orders = shifts(len(options))
        names = self._adapter_kwargs(adapters, len(prompts)).get("adapter_names")
        groups = [
            self._token_rows(
                [self._prompt_text(choice_conversation(p, options, o)) for o in orders]
            )
            for p in prompts
        ]
        letters = self._letters(len(options))
        per_chunk = max(1, _score.MAX_ROWS // len(orders))
        probs: list[list[list[float]]] = []
        for start in range(0, len(groups), per_chunk):
            chunk_names = None if names is None else names[start : start + per_chunk]
            with self._lock, _inference_mode():
                probs += _score.shared_prefix_probs(
                    self._model,
                    groups[start : start + per_chunk],
                    letters,
                    self._tok.pad_token_id,
                    chunk_names,
                )
        return [unshift(rows, orders) for rows in probs]

    def _token_rows(self, texts: Sequence[str]) -> list[list[int]]:
        # Chat templates already carry the special tokens; adding them again doubles the BOS.
        ids = self._tok(list(texts), add_special_tokens=False)["input_ids"]
        return [list(map(int, row)) for row in ids]

    async def ascore_batch(
        self,
        prompts: Sequence[str | Conversation],
        options: Sequence[str],
        *,
        adapters: Sequence[str | None] | None = None,
    ) -> list[list[float]]:
        return await asyncio.to_thread(self.score_batch, prompts, options, adapters=adapters)

    def _letters(self, n: int) -> list[list[int]]:
        # "A" and " A" are different tokens; a model may put its mass on either.
        if n not in self._letter_ids:
            ids: list[list[int]] = []
            for letter in LETTERS[:n]:
                variants = {
                    tuple(self._tok.encode(v, add_special_tokens=False))
                    for v in (letter, f" {letter}")
                }
                ids.append(sorted({v[0] for v in variants if len(v) == 1}))
            self._letter_ids[n] = ids
        return self._letter_ids[n]

    def position_probs(
        self, texts: Sequence[str], n: int, adapters: Sequence[str | None] | None = None
    ) -> list[list[float]]:
        """Letter probabilities for templated texts, each sequence in full (no prefix sharing).

        `score_batch` does not need this; benchmarks use it as the one-call-per-row baseline.
        """
        extra = self._adapter_kwargs(adapters, len(texts))
        rows = self._token_rows(texts)
        out: list[list[float]] = []
        for start in range(0, len(rows), _score.MAX_ROWS):
            part = {k: v[start : start + _score.MAX_ROWS] for k, v in extra.items()}
            with self._lock, _inference_mode():
                out += _score.full_probs(
                    self._model,
                    rows[start : start + _score.MAX_ROWS],
                    self._letters(n),
                    self._tok.pad_token_id,
                    part,
                )
        return out


def _eos_ids(model: Any, tok: Any) -> list[int]:
    ids: list[int] = []
    for source in (getattr(model.generation_config, "eos_token_id", None), tok.eos_token_id):
        if isinstance(source, int):
            ids.append(source)
        elif isinstance(source, list):
            ids.extend(i for i in source if isinstance(i, int))
    return list(dict.fromkeys(ids))


def _inference_mode() -> Any:
    import torch

    return torch.inference_mode()


def _import_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ModelPackageMissingError(
            "The transformers backend needs torch and transformers: install them with "
            "`pip install 'pluralism[train]'`."
        ) from exc
    return torch
