"""Starting llama.cpp (the `xllamacpp` wheel) in-process, shared by the chat model and the embedder.

xllamacpp runs llama.cpp's own server: continuous batching over parallel slots, per-request
LoRA, prompt caching. It also listens on a loopback port; a random API key that never leaves
this process keeps other local programs (or a web page) from using it.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pluralism.errors import ModelError, ModelPackageMissingError

XLLAMACPP = "xllamacpp"
# The RAM llama.cpp may keep evicted prompts in, per model.
PROMPT_CACHE_MIB = 64


def _keep_omp_threads_spinning() -> None:
    """llama.cpp's CPU threads meet at a barrier after every op, through libgomp. libgomp spins
    ~300k times there before sleeping, but only 1,000 once it manages more threads than there
    are cores, which the chat model and the embedder together do on a small machine: every
    barrier then sleeps and wakes, and one model measured 2.2x slower while the other sat idle.
    An explicit spin count keeps the full spin (an idle model still sleeps after ~3 ms). libgomp
    reads these once, when it loads with xllamacpp; an operator's own settings win."""
    if "xllamacpp" in sys.modules:
        return
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
        os.environ["GOMP_SPINCOUNT"] = "300000"


def xllamacpp() -> Any:
    _keep_omp_threads_spinning()
    try:
        import xllamacpp as xlc
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ModelPackageMissingError(
            "The embedded models run on llama.cpp: install it with `pip install xllamacpp`."
        ) from exc
    return xlc


def start_server(
    model: Path,
    *,
    threads: int,
    slots: int,
    ctx: int,
    batch: int = 2048,
    ubatch: int = 512,
    loras: Sequence[Path] = (),
    embedding: bool = False,
    pooling: str = "mean",
) -> Any:
    """An `xllamacpp.Server` for `model`; raises `RuntimeError` (llama.cpp says little more)."""
    xlc = xllamacpp()
    p = xlc.CommonParams()
    p.model.path = str(model)
    p.n_parallel = slots
    p.n_ctx = ctx
    p.n_batch = batch
    p.n_ubatch = ubatch
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.verbosity = -1  # llama.cpp's own log would flood the user's terminal
    p.warmup = False  # a warm-up decode costs as much as a short request and changes nothing
    p.n_threads_http = 1
    p.api_keys = [secrets.token_hex(16)]
    # llama.cpp keeps evicted slots' prompts in RAM, up to 8 GiB by default: a proxy's memory
    # then grows with every distinct prompt (measured +217 MB over 100 cancelled requests).
    # The slots' own KV already serves the repeated prefixes (personas, instructions).
    p.cache_ram_mib = PROMPT_CACHE_MIB
    if embedding:
        p.embedding = True
        # How token vectors become one: "mean" or "cls", as the model was trained.
        p.pooling_type = getattr(xlc.llama_pooling_type, f"LLAMA_POOLING_TYPE_{pooling.upper()}")
    else:
        # One KV buffer the slots share: a long prompt may use all of it, short ones share it.
        p.kv_unified = True
    if loras:
        # Loaded once, applied per request (scale 0 everywhere unless a request names one).
        p.lora_init_without_apply = True
        p.lora_adapters = [xlc.CommonAdapterLoraInfo(str(path), 1.0) for path in loras]
    return xlc.Server(p)


def raise_for_error(result: Mapping[str, Any], model_id: str) -> None:
    """llama.cpp answers errors as `{"error": {...}}` bodies rather than exceptions."""
    error = result.get("error") if isinstance(result, Mapping) else None
    if not error:
        return
    message = str(error.get("message", error)) if isinstance(error, Mapping) else str(error)
    if "exceed" in message and "context" in message:
        from pluralism.errors import InputError

        raise InputError(
            f"The input is too long for the local model {model_id} ({message}); shorten the "
            f"prompt or the rules recalled into it."
        )
    raise ModelError(f"The local model {model_id} failed ({message}).")
