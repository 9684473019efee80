"""The memory bank: greedy coreset selection and exact nearest-neighbour search (numpy).

**Coreset** (PatchCore's "greedy coreset subsampling"): k-center greedy. Starting from one
random patch, repeatedly add the patch farthest from everything chosen so far. The bank
then covers every kind of good patch seen in training, rare ones included (a random
subsample would drop exactly the rare-but-normal patches, which later score as defects).
Distances during selection are taken in a fixed random projection to ``select_dim``
dimensions (Johnson-Lindenstrauss: pairwise distances survive well), which makes each
greedy step one matrix-vector product over the pool.

**Search**: squared distances as ``|q|^2 + |b|^2 - 2 q.b``, so the work is one float32
matrix product per chunk of queries (BLAS, both cores) followed by a row minimum. Chunks
keep the distance block inside the cache. It is exact; approximate indexes (faiss) are
deliberately not used: a few thousand bank rows are searched in milliseconds anyway.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

_CHUNK_ELEMS = 1 << 20  # distance-block size (floats): 4 MB, cache-sized on desktop CPUs


def greedy_coreset(
    feats: np.ndarray,
    size: int,
    *,
    select_dim: int = 64,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Indices of ``size`` rows of ``feats`` chosen by k-center greedy (first one random)."""
    n = len(feats)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    x = np.asarray(feats, np.float32)
    if select_dim and x.shape[1] > select_dim:
        proj = rng.normal(0.0, 1.0 / np.sqrt(select_dim), (x.shape[1], select_dim)).astype(np.float32)
        x = x @ proj
    x = np.ascontiguousarray(x)
    sq = np.einsum("ij,ij->i", x, x)
    chosen = np.empty(size, np.int64)
    chosen[0] = int(rng.integers(n))
    mind = sq + sq[chosen[0]] - 2.0 * (x @ x[chosen[0]])
    step = max(1, size // 50)
    for i in range(1, size):
        j = int(np.argmax(mind))
        chosen[i] = j
        d = x @ x[j]
        d *= -2.0
        d += sq
        d += sq[j]
        np.minimum(mind, d, out=mind)
        if progress is not None and i % step == 0:
            progress(i, size)
    return chosen


class NearestNeighbours:
    """Exact k-nearest-neighbour distances to a fixed bank (float32 rows)."""

    def __init__(self, bank: np.ndarray, k: int = 1) -> None:
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        if bank.ndim != 2 or len(bank) == 0:
            raise ValueError(f"memory bank must be a non-empty 2-D array, got shape {bank.shape}")
        if not 1 <= k <= len(bank):
            raise ValueError(f"k must be in 1..{len(bank)}, got {k}")
        self.k = int(k)
        self.dim = bank.shape[1]
        self._neg2_t = np.ascontiguousarray(-2.0 * bank.T)  # D x M: q @ this = -2 q.b
        self._sq = np.einsum("ij,ij->i", bank, bank).astype(np.float32)
        self._rows = max(16, _CHUNK_ELEMS // len(bank))

    def __len__(self) -> int:
        return len(self._sq)

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """Mean Euclidean distance of each query row to its ``k`` nearest bank rows."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be N x {self.dim}, got shape {q.shape}")
        out = np.empty(len(q), np.float32)
        qsq = np.einsum("ij,ij->i", q, q)
        for a in range(0, len(q), self._rows):
            b = min(a + self._rows, len(q))
            d = q[a:b] @ self._neg2_t
            d += self._sq
            if self.k == 1:
                best = d.min(axis=1)
                best += qsq[a:b]
                np.maximum(best, 0.0, out=best)
                out[a:b] = np.sqrt(best)
            else:
                part = np.partition(d, self.k - 1, axis=1)[:, : self.k]
                part += qsq[a:b, None]
                np.maximum(part, 0.0, out=part)
                out[a:b] = np.sqrt(part).mean(axis=1)
        return out
