"""Evaluation metrics for anomaly models, in numpy (no scikit-learn at the station).

- :func:`auroc`: area under the ROC curve from the rank-sum (Mann-Whitney U) statistic,
  with tied scores given their average rank, so it equals the trapezoidal ROC area.
- :func:`pixel_auroc`: the same over every pixel of a set of anomaly maps against their
  ground-truth masks (maps and masks of different images may differ in size).
- :func:`binary_counts` / :func:`precision_recall_f1`: the confusion matrix and the figures
  derived from it at a given decision (for example the model's own threshold).
- :func:`pro_score`: the per-region overlap (PRO) averaged over false-positive rates up to
  ``max_fpr`` (MVTec AD's AUPRO, normalised to 0..1), which weighs small defects as much as
  large ones.
- :func:`latency_summary`: p50 / p99 of a list of durations.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_v = values[order]
    # boundaries of runs of equal values
    change = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(values)]))
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve; ``labels`` 1 = anomalous (positive), 0 = good.

    Raises ValueError if either class is absent (the AUROC is undefined then) or the inputs
    differ in length or hold non-finite scores.
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes (got {n_pos} anomalous, {n_neg} good)")
    r = _ranks(s)
    u = r[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _check_pairs(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> None:
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} anomaly maps but {len(masks)} masks")
    for i, (m, g) in enumerate(zip(maps, masks)):
        if np.shape(m) != np.shape(g):
            raise ValueError(f"map {i} is {np.shape(m)} but its mask is {np.shape(g)}")


def pixel_auroc(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, max_pixels: int | None = 4_000_000, seed: int = 0
) -> float:
    """AUROC over all pixels (mask > 0 = anomalous) of all images.

    With more than ``max_pixels`` pixels in total, a uniform random subsample of that many
    (fixed ``seed``) is ranked instead: the estimate's standard error stays far below the
    differences that matter, and memory stays bounded on large test sets.
    """
    _check_pairs(maps, masks)
    total = sum(int(np.size(m)) for m in maps)
    if total == 0:
        raise ValueError("no pixels to evaluate")
    keep = 1.0 if max_pixels is None or total <= max_pixels else max_pixels / total
    rng = np.random.default_rng(seed)
    ys, ss = [], []
    for m, g in zip(maps, masks):
        m = np.asarray(m, np.float32).ravel()
        g = np.asarray(g).ravel() > 0
        if keep < 1.0:
            idx = rng.random(m.size) < keep
            m, g = m[idx], g[idx]
        ys.append(g)
        ss.append(m)
    return auroc(np.concatenate(ys), np.concatenate(ss))


@dataclass(frozen=True)
class BinaryCounts:
    """Confusion matrix of a binary decision (positive = anomalous)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_reject_rate(self) -> float:
        """Share of good parts called anomalous."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "false_reject_rate": self.false_reject_rate}

    def matrix(self) -> list[list[int]]:
        """``[[tn, fp], [fn, tp]]`` (rows: true good / anomalous; columns: called good / anomalous)."""
        return [[self.tn, self.fp], [self.fn, self.tp]]


def binary_counts(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> BinaryCounts:
    """Count a binary decision against the truth (both 1 = anomalous)."""
    y = np.asarray(labels).astype(bool).ravel()
    p = np.asarray(predicted).astype(bool).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.size}) and predictions ({p.size}) differ in length")
    return BinaryCounts(
        tp=int(np.sum(y & p)), fp=int(np.sum(~y & p)), tn=int(np.sum(~y & ~p)), fn=int(np.sum(y & ~p))
    )


def precision_recall_f1(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float
) -> BinaryCounts:
    """The confusion matrix of ``score > threshold`` (the detectors' own rule)."""
    return binary_counts(labels, np.asarray(scores, dtype=np.float64) > threshold)


def pro_score(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, max_fpr: float = 0.3, steps: int = 200
) -> float:
    """Normalised area under the per-region-overlap curve up to ``max_fpr`` (AUPRO).

    At each threshold, PRO is the mean over all ground-truth regions (8-connected) of the
    share of the region above the threshold; the false-positive rate counts pixels of good
    areas above it. The curve is integrated over FPR in [0, max_fpr] and divided by
    ``max_fpr``. Raises ValueError when no mask holds a region.
    """
    _check_pairs(maps, masks)
    region_vals: list[np.ndarray] = []
    neg_vals: list[np.ndarray] = []
    for m, g in zip(maps, masks):
        m = np.asarray(m, np.float32)
        g = (np.asarray(g) > 0).astype(np.uint8)
        n, lab = cv2.connectedComponents(g, connectivity=8)
        for k in range(1, n):
            region_vals.append(np.sort(m[lab == k]))
        neg_vals.append(m[g == 0])
    if not region_vals:
        raise ValueError("PRO needs at least one ground-truth region")
    neg = np.sort(np.concatenate(neg_vals))
    if neg.size == 0:
        raise ValueError("PRO needs pixels outside the defects")
    # Thresholds: quantiles of the good pixels (resolution where FPR <= max_fpr) plus an
    # even grid over the whole value range (so perfectly separated maps are covered too).
    lo = min(float(neg[0]), min(float(r[0]) for r in region_vals))
    hi = max(float(neg[-1]), max(float(r[-1]) for r in region_vals))
    thr = np.concatenate((np.quantile(neg, np.linspace(1.0, 1.0 - max_fpr, steps)), np.linspace(lo, hi, steps)))
    thr = np.unique(np.append(thr, -np.inf))[::-1]  # descending: the curve runs from FPR 0 upwards
    fpr = 1.0 - np.searchsorted(neg, thr, side="right") / neg.size
    pro = np.zeros(thr.size)
    for rv in region_vals:
        pro += 1.0 - np.searchsorted(rv, thr, side="right") / rv.size
    pro /= len(region_vals)
    x = np.concatenate(([0.0], fpr))  # a threshold above everything: nothing flagged
    y = np.concatenate(([0.0], pro))
    if x[-1] > max_fpr:  # cut the curve at max_fpr, interpolating the last segment
        i = int(np.searchsorted(x, max_fpr, side="right"))
        y_cut = y[i - 1] + (y[i] - y[i - 1]) * (max_fpr - x[i - 1]) / max(x[i] - x[i - 1], 1e-12)
        x = np.concatenate((x[:i], [max_fpr]))
        y = np.concatenate((y[:i], [y_cut]))
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return area / max_fpr


def latency_summary(seconds: Iterable[float]) -> dict[str, float]:
    """``{"n", "p50", "p99", "mean"}`` of durations given in seconds, reported in ms."""
    a = np.asarray(list(seconds), dtype=np.float64) * 1000.0
    if a.size == 0:
        raise ValueError("no durations")
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean())}
