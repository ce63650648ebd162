"""Dense side of recall: exact float32 for ordinary memories, an int8 IVF index for huge ones.

A policy set of a few hundred rules is searched exactly (one matrix-vector product). OPO's
memory held ~954k rules: as float32 that is 1.5 GB and ~100 ms per query on two cores, so from
`IVF_MIN_ROWS` rows on the vectors are stored as int8 (a quarter of the memory) grouped by a
coarse k-means quantiser; a query scans the `nprobe` nearest lists only and scores them exactly
in int8 with a per-row scale, which keeps p50 latency in single-digit milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]

IVF_MIN_ROWS = 200_000
# From this many rows on, searches run BLAS on one thread (see `_OneBlasThread`).
_ONE_THREAD_ROWS = 20_000


class _OneBlasThread:
    """Runs a block with OpenBLAS on one thread, restoring the previous count afterwards.

    A query is one matrix-vector product of a few MB: spreading it over threads saves little,
    and on a busy machine waiting for every thread to be scheduled dominates. Measured on this
    2-core box under load: 16k x 384 float32 product 12.0 ms multi-threaded vs 1.9 ms on one
    thread. threadpoolctl's own context manager costs ~3 ms per use, so its library handles are
    looked up once and set directly.
    """

    def __init__(self) -> None:
        self._libs: list[Any] = []
        try:
            from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

            self._libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # threadpoolctl missing or an unknown BLAS: searches just run as is
            self._libs = []

    @contextmanager
    def __call__(self) -> Iterator[None]:
        before = [lib.num_threads for lib in self._libs]
        for lib in self._libs:
            lib.set_num_threads(1)
        try:
            yield
        finally:
            for lib, n in zip(self._libs, before, strict=True):
                lib.set_num_threads(n)


def _kmeans(sample: Vectors, n_lists: int, iters: int, rng: np.random.Generator) -> Vectors:
    """Spherical k-means: centroids stay unit length so a dot product picks the nearest list."""
    centroids = sample[rng.choice(len(sample), n_lists, replace=False)].copy()
    for _ in range(iters):
        assign = np.argmax(sample @ centroids.T, axis=1)
        # Sum rows per list by sorting once and reducing contiguous runs (np.add.at is ~50x
        # slower on a 1M-rule build).
        counts = np.bincount(assign, minlength=n_lists)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sums = np.zeros_like(centroids)
        full = counts > 0
        sums[full] = np.add.reduceat(
            sample[np.argsort(assign, kind="stable")], starts[full], axis=0
        )
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        # An empty list takes a random sample row, so no centroid is wasted.
        sums[empty] = sample[rng.choice(len(sample), int(empty.sum()))]
        norms[empty] = 1.0
        centroids = (sums / norms).astype(np.float32)
    return centroids


def _assign(vectors: Vectors, centroids: Vectors, chunk: int = 65_536) -> npt.NDArray[np.int32]:
    out = np.empty(len(vectors), dtype=np.int32)
    for start in range(0, len(vectors), chunk):
        out[start : start + chunk] = np.argmax(vectors[start : start + chunk] @ centroids.T, axis=1)
    return out


class DenseIndex:
    """Cosine search over unit rows; exact below `ivf_min_rows`, int8 IVF at and above."""

    def __init__(
        self,
        vectors: Vectors,
        *,
        ivf_min_rows: int = IVF_MIN_ROWS,
        nprobe: int = 16,
        seed: int = 0,
    ) -> None:
        self.size, self.dim = vectors.shape
        self.nprobe = nprobe
        self._exact: Vectors | None = None
        self._position: Ids | None = None
        self._one_thread = _OneBlasThread() if self.size >= _ONE_THREAD_ROWS else None
        if self.size < ivf_min_rows:
            self._exact = np.ascontiguousarray(vectors, dtype=np.float32)
            return
        rng = np.random.default_rng(seed)
        # sqrt(n) lists of ~sqrt(n) rows: assigning every row is the build's main cost (1M x
        # lists x dim multiply-adds), and a probe reads `nprobe` lists of ~1,000 rows.
        n_lists = int(np.clip(np.sqrt(self.size), 16, 4096))
        sample = vectors[rng.choice(self.size, min(self.size, n_lists * 24), replace=False)]
        self._centroids = _kmeans(np.asarray(sample, dtype=np.float32), n_lists, 6, rng)
        assign = _assign(vectors, self._centroids)
        order = np.argsort(assign, kind="stable")
        # Rows of one list sit next to each other, so a probe reads one contiguous slice.
        self._row_ids: Ids = order.astype(np.int64)
        self._offsets = np.searchsorted(assign[order], np.arange(n_lists + 1)).astype(np.int64)
        self._codes = np.empty((self.size, self.dim), dtype=np.int8)
        self._scales = np.empty(self.size, dtype=np.float32)
        # Chunks of a few MB that stay in cache, scaled in place (a 1M-rule build spends
        # seconds here, on the path to serving from Redis).
        chunk = 16_384
        for start in range(0, self.size, chunk):
            rows = np.asarray(vectors[order[start : start + chunk]], dtype=np.float32)
            # Each row is scaled so its largest component maps to 127: a 384-d unit vector's
            # components are ~0.05, so a fixed 1/127 step would waste most of the int8 range.
            peak = np.maximum(rows.max(axis=1), -rows.min(axis=1))
            peak[peak == 0] = 1.0
            self._scales[start : start + chunk] = peak / np.float32(127.0)
            rows *= (np.float32(127.0) / peak)[:, None]
            np.rint(rows, out=rows)
            self._codes[start : start + chunk] = rows

    @property
    def quantised(self) -> bool:
        return self._exact is None

    @property
    def nbytes(self) -> int:
        """Memory the vectors take (what the 1 GiB budget at 1M rules is about)."""
        if self._exact is not None:
            return int(self._exact.nbytes)
        return int(
            self._codes.nbytes
            + self._scales.nbytes
            + self._centroids.nbytes
            + self._row_ids.nbytes
            + self._offsets.nbytes
        )

    def all_scores(self, query: Vectors) -> Scores:
        """Cosine of the query with every row (exact mode only)."""
        if self._exact is None:
            raise RuntimeError("all_scores is only available below the IVF threshold")
        if self.size == 0:
            return np.zeros(0, dtype=np.float32)
        with self._single():
            scores: Scores = self._exact @ query
        return scores

    @contextmanager
    def _single(self) -> Iterator[None]:
        if self._one_thread is None:
            yield
        else:
            with self._one_thread():
                yield

    def candidates(self, query: Vectors, n: int) -> tuple[Ids, Scores]:
        """About the `n` best rows by cosine, with their scores, best first."""
        with self._single():
            return self._candidates(query, n)

    def _candidates(self, query: Vectors, n: int) -> tuple[Ids, Scores]:
        if self.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self._exact is not None:
            scores = self._exact @ query
            ids = _top(scores, n)
            return ids, scores[ids]
        probe = _top(self._centroids @ query, self.nprobe)
        slices = [(int(self._offsets[p]), int(self._offsets[p + 1])) for p in probe]
        codes = np.concatenate([self._codes[a:b] for a, b in slices])
        rows = np.concatenate([self._row_ids[a:b] for a, b in slices])
        scales = np.concatenate([self._scales[a:b] for a, b in slices])
        scores = (codes.astype(np.float32) @ query.astype(np.float32)) * scales
        best = _top(scores, n)
        return rows[best], scores[best]

    def rows(self, ids: Ids) -> Vectors:
        """The stored vectors of the given rows (dequantised when quantised), for rebuilds."""
        if self._exact is not None:
            return self._exact[ids]
        at = self._positions()[ids]
        return self._codes[at].astype(np.float32) * self._scales[at, None]

    def _positions(self) -> Ids:
        if self._position is None:
            position = np.empty(self.size, dtype=np.int64)
            position[self._row_ids] = np.arange(self.size)
            self._position = position
        return self._position

    def scores_for(self, query: Vectors, ids: Ids) -> Scores:
        """Cosine of the query with the given rows (exact, or int8-exact when quantised)."""
        if len(ids) == 0:
            return np.zeros(0, dtype=np.float32)
        if self._exact is not None:
            exact: Scores = self._exact[ids] @ query
            return exact
        at = self._positions()[ids]
        with self._single():
            raw = self._codes[at].astype(np.float32) @ query.astype(np.float32)
        return raw * self._scales[at]


def _top(scores: Scores, n: int) -> Ids:
    n = min(n, len(scores))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")].astype(np.int64)
