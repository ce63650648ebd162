"""Dense side of recall: exact float32 for ordinary memories, an int8 IVF index for huge ones.

A policy set of a few hundred rules is searched exactly (one matrix-vector product). OPO's
memory held ~954k rules: as float32 that is 1.5 GB and ~100 ms per query on two cores, so from
`IVF_MIN_ROWS` rows on the vectors are stored as int8 (a quarter of the memory) grouped by a
coarse k-means quantiser; a query scans the `nprobe` nearest lists only and scores them exactly
in int8 (error ~0.5% of a cosine), which keeps p50 latency in single-digit milliseconds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]

IVF_MIN_ROWS = 200_000


def _kmeans(sample: Vectors, n_lists: int, iters: int, rng: np.random.Generator) -> Vectors:
    """Spherical k-means: centroids stay unit length so a dot product picks the nearest list."""
    centroids = sample[rng.choice(len(sample), n_lists, replace=False)].copy()
    for _ in range(iters):
        assign = np.argmax(sample @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, sample)
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
        nprobe: int = 24,
        seed: int = 0,
    ) -> None:
        self.size, self.dim = vectors.shape
        self.nprobe = nprobe
        self._exact: Vectors | None = None
        self._position: Ids | None = None
        if self.size < ivf_min_rows:
            self._exact = np.ascontiguousarray(vectors, dtype=np.float32)
            return
        rng = np.random.default_rng(seed)
        n_lists = int(np.clip(np.sqrt(self.size) * 1.5, 64, 4096))
        sample = vectors[rng.choice(self.size, min(self.size, n_lists * 40), replace=False)]
        self._centroids = _kmeans(np.asarray(sample, dtype=np.float32), n_lists, 8, rng)
        assign = _assign(vectors, self._centroids)
        order = np.argsort(assign, kind="stable")
        # Rows of one list sit next to each other, so a probe reads one contiguous slice.
        self._row_ids: Ids = order.astype(np.int64)
        self._offsets = np.searchsorted(assign[order], np.arange(n_lists + 1)).astype(np.int64)
        self._codes = np.empty((self.size, self.dim), dtype=np.int8)
        chunk = 65_536
        for start in range(0, self.size, chunk):
            rows = vectors[order[start : start + chunk]]
            # Unit vectors have components in [-1, 1]; 127 steps keep the cosine error tiny.
            self._codes[start : start + chunk] = np.rint(rows * 127.0).astype(np.int8)

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
        return self._exact @ query

    def candidates(self, query: Vectors, n: int) -> tuple[Ids, Scores]:
        """About the `n` best rows by cosine, with their scores, best first."""
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
        q8 = query.astype(np.float32) / 127.0
        scores = codes.astype(np.float32) @ q8
        best = _top(scores, n)
        return rows[best], scores[best]

    def rows(self, ids: Ids) -> Vectors:
        """The stored vectors of the given rows (dequantised when quantised), for rebuilds."""
        if self._exact is not None:
            return self._exact[ids]
        return self._codes[self._positions()[ids]].astype(np.float32) / 127.0

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
            return self._exact[ids] @ query
        return self._codes[self._positions()[ids]].astype(np.float32) @ (query / 127.0)


def _top(scores: Scores, n: int) -> Ids:
    n = min(n, len(scores))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")].astype(np.int64)
