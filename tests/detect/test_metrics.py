"""Metrics against brute-force definitions on random data, and their error cases."""
from __future__ import annotations

import numpy as np
import pytest

from station.detect.metrics import (
    auroc,
    binary_counts,
    latency_summary,
    pixel_auroc,
    precision_recall_f1,
    pro_score,
)


def _pairwise_auroc(y, s):
    """P(score of a positive > score of a negative) + 0.5 P(tie), over all pairs."""
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + 0.7 * y, 1)  # rounding makes many ties
    assert auroc(y, s) == pytest.approx(_pairwise_auroc(y, s), abs=1e-12)


def test_auroc_extremes():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert auroc([0, 1, 0, 1], [1, 1, 1, 1]) == 0.5


def test_auroc_rejects_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        auroc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="differ in length"):
        auroc([0, 1], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1], [0.1, float("nan")])


def test_pixel_auroc_matches_flattened_and_subsampled():
    rng = np.random.default_rng(3)
    masks = [np.zeros((40, 50), np.uint8), np.zeros((30, 20), np.uint8)]
    masks[0][10:20, 10:20] = 255
    masks[1][5:8, 2:9] = 1
    maps = [rng.random(m.shape).astype(np.float32) + 0.4 * (m > 0) for m in masks]
    full = pixel_auroc(maps, masks, max_pixels=None)
    flat = auroc(np.concatenate([(m > 0).ravel() for m in masks]), np.concatenate([a.ravel() for a in maps]))
    assert full == pytest.approx(flat)
    assert pixel_auroc(maps, masks, max_pixels=1500) == pytest.approx(full, abs=0.05)
    with pytest.raises(ValueError, match="mask is"):
        pixel_auroc([maps[0]], [masks[1]])


def test_confusion_counts_and_f1():
    c = binary_counts([1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0])
    assert (c.tp, c.fn, c.fp, c.tn) == (2, 1, 1, 3)
    assert c.precision == pytest.approx(2 / 3) and c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 / 3)
    assert c.matrix() == [[3, 1], [1, 2]]
    assert c.false_reject_rate == pytest.approx(0.25)
    t = precision_recall_f1([0, 1, 1], [0.5, 0.5, 0.9], threshold=0.5)  # score > thr
    assert (t.tp, t.fn, t.fp) == (1, 1, 0)


def test_pro_perfect_and_blind_maps():
    mask = np.zeros((64, 64), np.uint8)
    mask[5:9, 5:9] = 1  # a small region
    mask[30:60, 30:60] = 1  # a large one: PRO weighs both the same
    perfect = mask.astype(np.float32)
    assert pro_score([perfect], [mask]) == pytest.approx(1.0, abs=0.01)
    large_only = np.zeros_like(perfect)
    large_only[30:60, 30:60] = 1.0
    half = pro_score([large_only + 1e-3 * np.random.default_rng(0).random(mask.shape)], [mask])
    assert 0.4 < half < 0.75
    with pytest.raises(ValueError, match="region"):
        pro_score([perfect], [np.zeros_like(mask)])


def test_latency_summary_in_ms():
    s = latency_summary([0.010] * 99 + [0.050])
    assert s["p50"] == pytest.approx(10.0) and s["n"] == 100 and s["p99"] > 10.0
