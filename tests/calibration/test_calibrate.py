"""Calibration: golden reference from good images, limits derived from their statistics."""
from __future__ import annotations

import numpy as np
import pytest
from calib_helpers import RECIPE, ROI, SERIAL

from calibration import calibrate as cal
from calibration.calibrate import CalibrationError, calibrate
from calibration.spec import check_frame
from calibration.synthetic import Capture, capture, good_captures


def test_reference_is_the_aligned_median(scene, profile, good_images):
    # The first good image defines reference coordinates; render the noise-free part there.
    first = good_captures(8)[0]
    clean = capture(scene, Capture(dx=first.dx, dy=first.dy, angle_deg=first.angle_deg, noise=0.0))
    inner = (slice(200, -200), slice(200, -200))
    ref_err = np.abs(profile.reference[inner].astype(float) - clean[inner]).mean()
    single_err = np.abs(good_images[0][inner].astype(float) - clean[inner]).mean()
    assert ref_err < 0.6 * single_err  # the median of 8 aligned frames beats any one of them
    assert profile.reference.dtype == np.uint8 and profile.reference.shape == scene.shape


def test_every_good_image_passes_its_own_limits(profile, good_images):
    for img in good_images:
        report = check_frame(profile, img)
        assert report.passed, report.summary()


def test_limits_follow_the_documented_rules(profile):
    t, b = profile.tolerances, profile.baseline
    assert b.n_images == 8 and len(b.image_sha256) == 8
    margin = max(cal.BRIGHTNESS_MARGIN_FLOOR, cal.BRIGHTNESS_MARGIN_SIGMAS * b.brightness.std)
    assert t.brightness_low == pytest.approx(b.brightness.min - margin)
    assert t.brightness_high == pytest.approx(b.brightness.max + margin)
    assert t.clipping_max == pytest.approx(max(cal.CLIPPING_FLOOR, 2 * b.clipping.max + cal.CLIPPING_ADD))
    assert t.contrast_min == pytest.approx(0.5 * b.contrast.min)
    assert t.focus_min_ratio == pytest.approx(0.6 * b.focus.min)
    assert t.noise_max == pytest.approx(max(1.5 * b.noise.max, b.noise.max + 0.002))
    assert t.position_max_px == pytest.approx(max(8.0, 1.5 * b.position.max + 2.0))
    assert t.rotation_max_deg == pytest.approx(max(1.0, 1.5 * b.rotation.max + 0.25))
    assert 0 < t.registration_min <= 0.5
    assert b.focus.median == pytest.approx(1.0)  # focus is relative to the median good image
    assert b.noise.median == pytest.approx(0.006, rel=0.15)  # the synthetic sensor's sigma


def test_overrides_and_progress(good_images):
    seen = []
    profile = calibrate(good_images[:4], SERIAL, RECIPE, roi=ROI,
                        overrides={"position_max_px": 40.0, "noise_max": None},
                        progress=lambda done, total: seen.append((done, total)), created_by="tech-7", notes="new lamp")
    assert profile.tolerances.position_max_px == 40.0
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert profile.created_by == "tech-7" and profile.version == 0 and profile.roi == ROI
    with pytest.raises(ValueError, match="Extra inputs"):
        calibrate(good_images[:3], SERIAL, RECIPE, overrides={"speed": 1.0})


def test_default_roi_is_the_whole_image(good_images):
    profile = calibrate(good_images[:3], SERIAL, RECIPE)
    assert profile.roi.as_list() == [0, 0, 1280, 1024]


def test_bad_calibration_sets(scene, good_images):
    with pytest.raises(CalibrationError, match="at least 3"):
        calibrate(good_images[:2], SERIAL, RECIPE)
    with pytest.raises(CalibrationError, match=r"image 1 is uint8 \(512, 640\)"):
        calibrate([good_images[0], good_images[1][:512, :640], good_images[2]], SERIAL, RECIPE)
    stranger = np.random.default_rng(0).integers(0, 256, scene.shape, dtype=np.uint8)
    with pytest.raises(CalibrationError, match="image 2 does not match image 0"):
        calibrate([good_images[0], good_images[1], stranger], SERIAL, RECIPE)
    with pytest.raises(CalibrationError, match="does not fit"):
        calibrate(good_images[:3], SERIAL, RECIPE, roi=ROI.__class__(1000, 900, 400, 400))
    blank = [np.full(scene.shape, 60, np.uint8)] * 3
    with pytest.raises(CalibrationError, match="no texture"):
        calibrate(blank, SERIAL, RECIPE)
