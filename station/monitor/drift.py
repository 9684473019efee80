"""Score drift: are the line's recent anomaly scores still distributed like the validation scores?

Two statistics, both on the good-part scores (the model's reference comes from its stored
evaluation, the recent ones are parts the model called good):

- **KS**: the two-sample Kolmogorov-Smirnov statistic, the largest gap between the two
  empirical distribution functions (0 = identical, 1 = disjoint);
- **PSI**: the population stability index over ten bins at the reference's deciles,
  ``sum((p_recent - p_ref) * ln(p_recent / p_ref))``; the usual reading is < 0.1 stable,
  0.1-0.25 moderate, > 0.25 shifted.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

PSI_EPS = 1e-4  # empty bins would make the log infinite


def ks_statistic(reference: Sequence[float], recent: Sequence[float]) -> float:
    a = np.sort(np.asarray(reference, np.float64))
    b = np.sort(np.asarray(recent, np.float64))
    if a.size == 0 or b.size == 0:
        raise ValueError("KS needs two non-empty samples")
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def psi(reference: Sequence[float], recent: Sequence[float], bins: int = 10) -> float:
    a = np.asarray(reference, np.float64)
    b = np.asarray(recent, np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("PSI needs two non-empty samples")
    edges = np.unique(np.quantile(a, np.linspace(0, 1, bins + 1))[1:-1])
    pa = np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1) / a.size
    pb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=edges.size + 1) / b.size
    pa, pb = np.maximum(pa, PSI_EPS), np.maximum(pb, PSI_EPS)
    return float(np.sum((pb - pa) * np.log(pb / pa)))
