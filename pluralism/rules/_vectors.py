"""Rule vectors cached on disk by (embedder, text) so a restart or a reload embeds only new text.

Embedding the 1,300-rule OPO memory with MiniLM takes about a minute on two cores; reading the
cached rows takes well under a second. One small .npy file per text keeps the cache valid across
edits: changing one rule invalidates one file, not the whole set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import platformdirs

from pluralism.embedding import Embedder, Vectors

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("pluralism")) / "rule-vectors"


def _slug(model_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id)[:60]
    return f"{safe}-{hashlib.sha1(model_id.encode()).hexdigest()[:8]}"


class VectorCache:
    """Embeds texts through `embedder`, reading and writing rows under `directory`.

    `directory=None` uses the user cache dir; `enabled=False` embeds every time (tests, or a
    read-only home). A cache that cannot be written is skipped with a debug log, never an error.
    """

    def __init__(
        self, embedder: Embedder, directory: Path | None = None, *, enabled: bool = True
    ) -> None:
        self.embedder = embedder
        self.enabled = enabled
        self.directory = (directory or default_cache_dir()) / _slug(embedder.model_id)
        self.hits = 0
        self.misses = 0

    def _path(self, text: str) -> Path:
        digest = hashlib.sha256(text.encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npy"

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        rows: list[Vectors | None] = [None] * len(texts)
        missing: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            row = self._read(text) if self.enabled else None
            if row is None:
                missing.setdefault(text, []).append(i)
            else:
                rows[i] = row
        self.hits += len(texts) - sum(len(v) for v in missing.values())
        self.misses += len(missing)
        if missing:
            fresh = self.embedder.encode(list(missing))
            for (text, where), row in zip(missing.items(), fresh, strict=True):
                for i in where:
                    rows[i] = row
                if self.enabled:
                    self._write(text, row)
        return np.stack([r for r in rows if r is not None]).astype(np.float32, copy=False)

    def _read(self, text: str) -> Vectors | None:
        path = self._path(text)
        try:
            row = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if row.shape != (self.embedder.dim,):
            return None
        return np.asarray(row, dtype=np.float32)

    def _write(self, text: str, row: Vectors) -> None:
        path = self._path(text)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(row, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("rule vector cache not written (%s); embedding will repeat next time", exc)
