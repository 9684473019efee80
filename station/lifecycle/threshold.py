"""Choosing a model's decision threshold from labelled validation scores.

The rule, in words (it is printed with every training and evaluation):

1. If the validation split holds defect images: the threshold with the **lowest false-reject
   rate that misses no validation defect**. Every score at or below the threshold is
   called good, so it must lie below the lowest defect score; among such thresholds the
   false-reject rate (good parts called defective) is smallest just below that score. The
   threshold is put halfway between the lowest defect score and the highest good score
   beneath it, so both sides keep a margin - unless the model's own threshold (below) already
   reaches that false-reject rate without a miss: then the model's, lower and so more
   sensitive to defects the validation split does not show, is kept.
2. Otherwise (no validation defects, or too few good images to say anything): keep the
   model's own threshold, learned from held-out good images only (for the variation model
   ``max(held-out good scores) x margin``).

A validation set is small, so rule 1 is only used when the result is not *below* the
fallback by more than ``max_drop`` (a threshold that low would reject good parts the
model has never seen, because a few easy validation defects happened to score low).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

LOWEST_FRR_RULE = "lowest false-reject rate that misses no defect in the validation split"
FALLBACK_RULE = "model's own threshold from held-out good images"


@dataclass(frozen=True)
class ThresholdChoice:
    value: float
    rule: str
    source: str  # "validation" or "model"
    validation_false_reject_rate: float | None = None
    validation_missed_defects: int | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "rule": self.rule, "source": self.source,
                "validation_false_reject_rate": self.validation_false_reject_rate,
                "validation_missed_defects": self.validation_missed_defects, "note": self.note}


def _frr(good: np.ndarray, thr: float) -> float:
    return float(np.mean(good > thr)) if good.size else 0.0


def select_threshold(good_scores: Sequence[float], defect_scores: Sequence[float], fallback: float,
                     *, max_drop: float = 0.5) -> ThresholdChoice:
    """Apply the rule above; ``fallback`` is the model's own (good-only) threshold."""
    good = np.asarray(good_scores, dtype=np.float64)
    bad = np.asarray(defect_scores, dtype=np.float64)
    if bad.size == 0 or good.size < 2:
        why = "no defect images in the validation split" if bad.size == 0 else "fewer than 2 validation goods"
        return ThresholdChoice(float(fallback), FALLBACK_RULE, "model", _frr(good, fallback) if good.size else None,
                               int(np.sum(bad <= fallback)) if bad.size else None, note=why)
    lowest_defect = float(bad.min())
    below = good[good < lowest_defect]
    thr = 0.5 * (lowest_defect + float(below.max())) if below.size else lowest_defect * 0.999
    if fallback < lowest_defect and _frr(good, fallback) <= _frr(good, thr):
        # The model's own threshold already reaches the lowest false-reject rate without a
        # miss; it is the lower (more sensitive) of the two, so defects subtler than the
        # validation ones still get caught.
        return ThresholdChoice(float(fallback), LOWEST_FRR_RULE, "model", _frr(good, fallback), 0,
                               note=f"the model's own threshold {fallback:.4g} misses no validation defect "
                                    f"(lowest {lowest_defect:.4g}) at the lowest false-reject rate: kept")
    if thr < fallback * (1.0 - max_drop):
        return ThresholdChoice(float(fallback), FALLBACK_RULE, "model", _frr(good, fallback),
                               int(np.sum(bad <= fallback)),
                               note=f"validation rule gave {thr:.4g}, more than {max_drop:.0%} below the "
                                    f"model's own {fallback:.4g}: kept the model's")
    return ThresholdChoice(float(thr), LOWEST_FRR_RULE, "validation", _frr(good, thr), int(np.sum(bad <= thr)),
                           note=f"lowest validation defect score {lowest_defect:.4g}; "
                                f"{int(np.sum(good >= lowest_defect))} validation good(s) score at or above it")
