from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from calibration.roi import Roi
from synthetic_parts import H, PART, W, add_defect, capture, frame_bbox, random_alignment
from station.detect.base import confidence_from_score, confidence_scale
from station.detect.variation import VariationModel, VariationParams

DEFECTS = ["scratch", "dark_spot", "missing_hole", "smudge"]


def _grow(box, px):
    x0, y0, x1, y1 = box
    return max(int(x0) - px, 0), max(int(y0) - px, 0), int(np.ceil(x1)) + px, int(np.ceil(y1)) + px


def test_held_out_good_parts_pass(sim, trained):
    images, aligns = sim.good(12)
    for img, a in zip(images, aligns):
        r = trained.detect(img, alignment=a)
        assert not r.is_anomalous, (r.score, r.threshold)
        assert r.score < r.threshold
        assert not r.anomaly_mask.any()
        assert [x.name for x in r.anomalies] == ["background"]
        assert r.anomalies[0].total_percentage_area == 1.0


@pytest.mark.parametrize("kind", DEFECTS)
def test_small_defects_are_found_where_they_are(sim, trained, kind):
    img, a, defect = sim.defective(kind)
    r = trained.detect(img, alignment=a)
    assert r.is_anomalous, (kind, r.score, r.threshold)
    scale = confidence_scale(r.threshold, trained.training)
    assert r.confidence == pytest.approx(confidence_from_score(r.score, r.threshold, scale))
    assert r.confidence > 0.75

    x0, y0, x1, y1 = _grow(frame_bbox(defect, a), 3)
    assert r.anomaly_mask.shape == (H, W) and r.anomaly_mask.dtype == np.uint8
    assert r.anomaly_mask[y0:y1, x0:x1].any(), "mask misses the defect"
    ys, xs = np.nonzero(r.anomaly_mask)
    gx0, gy0, gx1, gy1 = _grow(frame_bbox(defect, a), 12)
    assert xs.min() >= gx0 and xs.max() <= gx1 and ys.min() >= gy0 and ys.max() <= gy1, "mask strays"

    names = [x.name for x in r.anomalies]
    assert names == ["background", "anomaly"]
    frac = r.anomalies[1].total_percentage_area
    assert 0 < frac < 0.01
    assert r.anomalies[0].total_percentage_area == pytest.approx(1 - frac)

    hm = r.heatmap
    assert hm.shape == (H, W) and hm.dtype == np.float32
    assert 0.0 <= hm.min() and hm.max() <= 1.0
    py, px = np.unravel_index(np.argmax(hm), hm.shape)
    assert x0 <= px <= x1 and y0 <= py <= y1, ("heatmap peak", px, py, (x0, y0, x1, y1))
    assert hm.max() == pytest.approx(1.0) or hm.max() > 0.5
    ex, ey = r.extra["peak_xy"]
    assert x0 - 2 <= ex <= x1 + 2 and y0 - 2 <= ey <= y1 + 2


def test_result_json_has_the_lookout_for_vision_shape(sim, trained):
    img, a, _ = sim.defective("dark_spot")
    r = trained.detect(img, alignment=a)
    out = r.to_json(include_mask=True)
    lfv = out["DetectAnomalyResult"]
    assert set(lfv) >= {"IsAnomalous", "Confidence", "Anomalies", "AnomalyMask"}
    assert lfv["IsAnomalous"] is True and 0.5 <= lfv["Confidence"] <= 1.0
    for anomaly in lfv["Anomalies"]:
        assert 0.0 <= anomaly["PixelAnomaly"]["TotalPercentageArea"] <= 1.0
    mask = cv2.imdecode(np.frombuffer(base64.b64decode(lfv["AnomalyMask"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (H, W) and mask.any()
    assert out["model_id"] == trained.model_id and out["model_hash"] == trained.model_hash
    assert out["score"] > out["threshold"] > 0


def test_roi_ignores_defects_outside_it(sim, trained):
    img, defect = add_defect(sim.ref, "dark_spot", where=(50, 50))  # on the background
    a = random_alignment(sim.rng)
    frame = capture(img, a, sim.rng)
    assert trained.detect(frame, alignment=a).is_anomalous  # full ROI sees it
    part = Roi(PART[0], PART[1], PART[2] - PART[0], PART[3] - PART[1])
    r = trained.detect(frame, alignment=a, roi=part)
    assert not r.is_anomalous, r.score
    assert r.heatmap[:60, :60].max() == 0.0  # nothing outside the ROI
    # TotalPercentageArea is relative to the ROI
    bad, _ = add_defect(sim.ref, "missing_hole")
    r_full = trained.detect(capture(bad, a, sim.rng), alignment=a)
    r_part = trained.detect(capture(bad, a, sim.rng), alignment=a, roi=part)
    ratio = r_part.anomalies[1].total_percentage_area / r_full.anomalies[1].total_percentage_area
    roi_share = (part.width * part.height) / (W * H)
    assert ratio == pytest.approx(1 / roi_share, rel=0.25)


def test_training_roi_is_the_default(sim):
    images, aligns = sim.good(12)
    part = Roi(PART[0], PART[1], PART[2] - PART[0], PART[3] - PART[1])
    model = VariationModel.train(images, alignments=aligns, roi=part)
    img, _ = add_defect(sim.ref, "dark_spot", where=(50, 50))
    a = random_alignment(sim.rng)
    assert not model.detect(capture(img, a, sim.rng), alignment=a).is_anomalous


def test_alignment_is_honoured(sim, trained):
    a = np.array([[1.0, 0.0, 5.5], [0.0, 1.0, -4.25]])  # frame -> reference
    frame = capture(sim.ref, a, sim.rng)
    assert not trained.detect(frame, alignment=a).is_anomalous
    unaligned = trained.detect(frame)
    assert unaligned.is_anomalous and unaligned.score > 2 * unaligned.threshold
    # a 3x3 homogeneous affine is accepted too
    assert not trained.detect(frame, alignment=np.vstack([a, (0, 0, 1)])).is_anomalous


def test_uint16_and_mono12(sim):
    for scale, bits in ((257.0, 16), (16.0, 12)):
        images, aligns = sim.good(14, dtype=np.uint16, scale=scale)
        model = VariationModel.train(images, alignments=aligns)
        assert model.training["bit_depth"] == bits
        good, ga = sim.good(3, dtype=np.uint16, scale=scale)
        assert not any(model.detect(g, alignment=x).is_anomalous for g, x in zip(good, ga))
        bad, a, _ = sim.defective("scratch", dtype=np.uint16, scale=scale)
        assert model.detect(bad, alignment=a).is_anomalous
        with pytest.raises(ValueError, match="uint16"):
            model.detect(bad.astype(np.uint8), alignment=a)


def test_bgr_frames_use_grey(sim):
    images, aligns = sim.good(12)
    bgr = [cv2.cvtColor(i, cv2.COLOR_GRAY2BGR) for i in images]
    model = VariationModel.train(bgr, alignments=aligns)
    img, a, _ = sim.defective("smudge")
    assert model.detect(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), alignment=a).is_anomalous
    with pytest.raises(ValueError, match=r"expects \(512, 640, 3\)"):
        model.detect(img, alignment=a)


def test_threshold_comes_from_held_out_good_scores(trained):
    t = trained.training
    g = t["good_scores"]
    assert set(g) >= {"mean", "std", "p99", "max"} and g["n"] == 20 and t["cv_folds"] == 5
    assert g["mean"] <= g["p99"] <= g["max"]
    assert trained.threshold == pytest.approx(max(g["max"] * trained.params.margin, trained.params.min_threshold))
    assert trained.model_id.startswith("variation-") and len(trained.model_hash) == 64


def test_robust_spread_option(sim):
    images, aligns = sim.good(12)
    model = VariationModel.train(images, alignments=aligns, params=VariationParams(spread="mad", cv_folds=3))
    img, a, _ = sim.defective("dark_spot")
    assert model.detect(img, alignment=a).is_anomalous
    good, ga = sim.good(2)
    assert not any(model.detect(g, alignment=x).is_anomalous for g, x in zip(good, ga))


def test_bad_input_is_refused_clearly(sim, trained):
    with pytest.raises(ValueError, match=r"expects \(512, 640\) uint8"):
        trained.detect(np.zeros((480, 640), np.uint8))
    with pytest.raises(ValueError, match="2x3"):
        trained.detect(np.zeros((H, W), np.uint8), alignment=np.eye(2))
    with pytest.raises(ValueError, match="does not fit"):
        trained.detect(np.zeros((H, W), np.uint8), roi=Roi(600, 0, 100, 10))
    images, _ = sim.good(10)
    with pytest.raises(ValueError, match="at least 10 good images to train, got 9"):
        VariationModel.train(images[:9])
    with pytest.raises(ValueError, match=r"training image 3 is \(100, 100\)"):
        VariationModel.train(images[:3] + [np.zeros((100, 100), np.uint8)] + images[3:])
    with pytest.raises(ValueError, match="downscale"):
        VariationParams(downscale=0)


@pytest.mark.parametrize("downscale", [1, 3, 4])
def test_other_downscales(sim, downscale):
    images, aligns = sim.good(20)
    model = VariationModel.train(images, alignments=aligns, params=VariationParams(downscale=downscale))
    good, ga = sim.good(3)
    assert not any(model.detect(g, alignment=x).is_anomalous for g, x in zip(good, ga))
    for kind in ("dark_spot", "smudge"):
        img, a, defect = sim.defective(kind)
        r = model.detect(img, alignment=a)
        assert r.is_anomalous, (downscale, kind, r.score, r.threshold)
        x0, y0, x1, y1 = _grow(frame_bbox(defect, a), 3 + downscale)
        assert r.anomaly_mask[y0:y1, x0:x1].any()
        assert r.heatmap.shape == (H, W)
