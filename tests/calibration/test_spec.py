"""Capture-spec checks: a good frame passes; each capture fault fails exactly its check."""
from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from calib_helpers import RECIPE, ROI, SERIAL, good_frame

from calibration.calibrate import calibrate
from calibration.profile import ProfileStore
from calibration.spec import CHECKS, ProfileSpecChecker, SpecInputError, check_frame
from calibration.synthetic import Capture, capture, good_captures


def test_good_frame_passes_every_check(profile, scene):
    report = check_frame(profile, good_frame(scene))
    assert report.passed, report.summary()
    assert report.failed == []
    assert [c.name for c in report.checks] == list(CHECKS)
    for c in report.checks:
        assert c.passed and np.isfinite(c.value)
        assert c.low is not None or c.high is not None
    assert report.summary() == "capture ok"


# fault -> (how the frame is taken, the checks it must fail and no others)
FAULTS = {
    "dim": (Capture(gain=0.6, seed=11), {"brightness"}),
    "overexposed": (Capture(gain=1.5, seed=12), {"brightness", "clipping"}),
    "low_contrast": (Capture(contrast=0.3, seed=13), {"contrast"}),
    "blurred": (Capture(blur_sigma=3.0, seed=14), {"focus"}),
    "shifted": (Capture(dx=30.0, seed=15), {"position"}),
    "rotated": (Capture(angle_deg=3.0, seed=16), {"rotation"}),
    "noisy": (Capture(noise=0.05, seed=17), {"noise"}),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_fails_exactly_its_checks(profile, scene, fault):
    cap, expected = FAULTS[fault]
    report = check_frame(profile, capture(scene, cap))
    assert {c.name for c in report.failed} == expected, report.summary()
    assert not report.passed
    assert report.summary().startswith("check capture: ")
    for c in report.failed:  # the report says what was measured against which limit
        assert (c.low is not None and c.value < c.low) or (c.high is not None and c.value > c.high)
        assert c.name in c.message


def test_fault_values_are_what_was_done_to_the_frame(profile, scene):
    base = profile.baseline
    dim = check_frame(profile, capture(scene, FAULTS["dim"][0]))["brightness"]
    assert dim.value == pytest.approx(0.6 * base.brightness.median, rel=0.05)
    over = check_frame(profile, capture(scene, FAULTS["overexposed"][0]))["clipping"]
    assert over.value > 0.02 and "saturated" in over.message
    flat = check_frame(profile, capture(scene, FAULTS["low_contrast"][0]))["contrast"]
    assert flat.value == pytest.approx(0.3 * base.contrast.median, rel=0.1)
    blur = check_frame(profile, capture(scene, FAULTS["blurred"][0]))["focus"]
    assert blur.value < 0.3
    # positions are relative to the reference, i.e. to the first good image's pose
    shifted = check_frame(profile, capture(scene, FAULTS["shifted"][0]))
    assert shifted["position"].value == pytest.approx(30.0, abs=2.0)
    assert shifted.registration.dx == pytest.approx(30.0, abs=2.0)
    assert "dx=+" in shifted["position"].message
    rot = check_frame(profile, capture(scene, FAULTS["rotated"][0]))["rotation"]
    assert rot.value == pytest.approx(3.0, abs=0.3) and rot.unit == "deg"
    noisy = check_frame(profile, capture(scene, FAULTS["noisy"][0]))["noise"]
    assert noisy.value == pytest.approx(0.05, rel=0.15)  # the estimate recovers the sigma


def test_roi_follows_a_shifted_part(profile, scene):
    report = check_frame(profile, capture(scene, Capture(dx=30.0, dy=-20.0, seed=21)))
    assert abs(report.roi.x - (ROI.x + 30)) <= 3 and abs(report.roi.y - (ROI.y - 20)) <= 3
    assert report["brightness"].passed and report["contrast"].passed


def test_missing_part_fails_position_and_rotation(profile, scene):
    empty = np.full(scene.shape, 0.2, np.float32)  # background only
    empty += np.random.default_rng(3).normal(0, 0.006, empty.shape).astype(np.float32)
    frame = np.clip(np.rint(empty * 255), 0, 255).astype(np.uint8)
    report = check_frame(profile, frame)
    assert not report["position"].passed and not report["rotation"].passed
    assert "not found" in report["position"].message


def test_alignment_maps_frame_onto_reference(profile, scene):
    frame = capture(scene, Capture(dx=-18.0, dy=11.0, angle_deg=1.5, seed=31))
    report = check_frame(profile, frame)
    assert report.alignment.shape == (2, 3) and report.alignment.dtype == np.float32
    h, w = profile.shape
    aligned = cv2.warpAffine(frame, report.alignment, (w, h))
    inner = ROI.slice(aligned).astype(float) - ROI.slice(profile.reference)
    assert np.abs(inner).mean() < 4.0  # ~noise level; misaligned it would be >> 10


def test_to_json_is_a_list_of_plain_dicts(profile, scene):
    report = check_frame(profile, capture(scene, FAULTS["shifted"][0]))
    doc = report.to_json()
    assert [d["name"] for d in doc] == list(CHECKS)
    assert set(doc[0]) == {"name", "value", "low", "high", "passed", "unit", "message"}
    back = json.loads(json.dumps(doc))  # no numpy types anywhere
    assert back == doc
    assert [d["passed"] for d in doc if d["name"] == "position"] == [False]


@dataclass
class _Frame:  # the shape of station.capture.base.Frame that check_frame uses
    image: np.ndarray
    bit_depth: int


def test_accepts_capture_frames_and_implements_the_cycle_checker(profile, scene):
    checker = ProfileSpecChecker(profile)
    report = checker.check(_Frame(good_frame(scene), 8))
    assert report.passed
    assert checker.version == profile.label == report.profile
    with pytest.raises(SpecInputError, match="12-bit"):
        checker.check(_Frame(good_frame(scene), 12))


@pytest.mark.parametrize("bit_depth", [12, 16])
def test_sixteen_bit_frames(scene, bit_depth):
    images = [capture(scene, c, bit_depth=bit_depth) for c in good_captures(5)]
    assert images[0].dtype == np.uint16 and int(images[0].max()) <= (1 << bit_depth) - 1
    profile16 = calibrate(images, SERIAL, RECIPE, roi=ROI, bit_depth=bit_depth)
    assert profile16.bit_depth == bit_depth and profile16.reference.dtype == np.uint16
    good = check_frame(profile16, good_frame(scene, bit_depth=bit_depth))
    assert good.passed, good.summary()
    # values are fractions of full scale, so they match the 8-bit camera's
    assert good["brightness"].value == pytest.approx(0.42, abs=0.03)
    assert good["noise"].value == pytest.approx(0.006, rel=0.2)
    for fault in ("dim", "overexposed", "blurred", "rotated"):
        cap, expected = FAULTS[fault]
        report = check_frame(profile16, capture(scene, cap, bit_depth=bit_depth))
        assert {c.name for c in report.failed} == expected, (fault, report.summary())


def test_bgr_frames(scene):
    images = [capture(scene, c, bgr=True) for c in good_captures(4)]
    profile_bgr = calibrate(images, SERIAL, RECIPE, roi=ROI)
    assert profile_bgr.reference.shape == (*scene.shape, 3)
    assert check_frame(profile_bgr, good_frame(scene, bgr=True)).passed
    blurred = check_frame(profile_bgr, capture(scene, FAULTS["blurred"][0], bgr=True))
    assert [c.name for c in blurred.failed] == ["focus"]


def test_profile_read_back_from_the_store_checks_the_same(profile, scene, tmp_path):
    stored = ProfileStore(tmp_path).load(SERIAL, RECIPE, ProfileStore(tmp_path).save(profile).version)
    frame = capture(scene, FAULTS["blurred"][0])
    a, b = check_frame(profile, frame), check_frame(stored, frame)
    assert [c.passed for c in a.checks] == [c.passed for c in b.checks]
    assert a["focus"].value == pytest.approx(b["focus"].value)
    assert b.profile.startswith(f"{SERIAL}/{RECIPE}@v1#")


@pytest.mark.parametrize(
    "image, expected",
    [
        (np.zeros((512, 640), np.uint8), "expected 1280x1024 mono uint8, got 640x512 mono uint8"),
        (np.zeros((1024, 1280), np.uint16), "expected 1280x1024 mono uint8, got 1280x1024 mono uint16"),
        (np.zeros((1024, 1280, 3), np.uint8), "got 1280x1024 3-channel uint8"),
        (np.zeros((1024, 1280), np.float32), "got 1280x1024 mono float32"),
        (np.zeros((0, 0), np.uint8), "empty image"),
        (None, "expected a 1280x1024 mono uint8 image, got NoneType"),
    ],
)
def test_bad_input_raises_spec_input_error(profile, image, expected):
    with pytest.raises(SpecInputError) as exc:
        check_frame(profile, image)
    assert expected in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_bit_depth_must_match_the_profile(profile, scene):
    with pytest.raises(SpecInputError, match="calibrated with 8-bit"):
        check_frame(profile, good_frame(scene), bit_depth=10)


def test_overridden_limits_apply(profile, scene):
    relaxed = profile.with_tolerances(position_max_px=50.0, noise_max=None)
    assert relaxed.tolerances.noise_max == profile.tolerances.noise_max
    report = check_frame(relaxed, capture(scene, FAULTS["shifted"][0]))
    assert report.passed and report["position"].high == 50.0
