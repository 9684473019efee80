"""Confidence is relative to how far good parts sit from the threshold, per model."""
from __future__ import annotations

import pytest

from station.detect.base import confidence_from_score, confidence_scale


def test_at_the_threshold_the_model_is_undecided():
    assert confidence_from_score(0.3, 0.3, 0.25) == pytest.approx(0.5)


def test_a_typical_good_part_is_fairly_sure_whatever_the_units():
    # PatchCore-like units (good mean 0.21, threshold 0.29) and variation-like (0.45 / 0.98)
    for mean, thr in ((0.21, 0.29), (0.45, 0.98)):
        scale = confidence_scale(thr, {"good_scores": {"mean": mean}})
        assert confidence_from_score(mean, thr, scale) == pytest.approx(0.88, abs=0.01)
        # a defect as far above the threshold as good parts sit below it: equally sure
        assert confidence_from_score(2 * thr - mean, thr, scale) == pytest.approx(0.88, abs=0.01)
        assert confidence_from_score(5 * thr, thr, scale) > 0.99


@pytest.mark.parametrize("training", [None, {}, {"good_scores": {}}, {"good_scores": {"mean": 5.0}},
                                      {"good_scores": {"mean": "x"}}])
def test_without_usable_statistics_the_scale_is_relative_to_the_threshold(training):
    assert confidence_scale(0.5, training) == 1.0
