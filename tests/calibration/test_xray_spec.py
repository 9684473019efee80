"""X-ray capture specs from good radiographs: they pass good ones and catch an underexposed,
a saturated, a noisy and a shifted radiograph, each as the check a technician can act on."""
from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.calibrate import calibrate
from calibration.profile import ProfileStore
from calibration.roi import Roi
from calibration.spec import check_frame
from calibration.xray_spec import XRAY_CHECKS, calibrate_xray
from station.capture.sim_xray import DEFECTS, SimXraySpec, XrayPartRenderer

SPEC = SimXraySpec(width=256, height=224, seed=11, defect_rate=0.0)


@pytest.fixture(scope="module")
def renderer() -> XrayPartRenderer:
    return XrayPartRenderer(SPEC)


@pytest.fixture(scope="module")
def profile(renderer):
    good = [renderer.render(5000 + i, defect=None)[0] for i in range(12)]
    return calibrate_xray(good, "XRAY-C", "casting")


def test_good_radiographs_pass_and_defects_are_not_capture_faults(profile, renderer):
    for i in range(8):
        report = check_frame(profile, renderer.render(i, defect=None)[0])
        assert report.passed, report.summary()
        assert [c.name for c in report.checks] == list(XRAY_CHECKS)
    for kind in DEFECTS:  # a porous part is a defect for the model, not a bad capture
        assert check_frame(profile, renderer.render(3, defect=kind)[0]).passed


@pytest.mark.parametrize("fault, failing", [
    ("underexposed", {"grey_level", "underexposed"}),
    ("saturated", {"saturation"}),
    ("noisy", {"snr"}),
    ("shifted", {"position"}),
])
def test_each_capture_fault_fails_the_check_that_names_it(profile, renderer, fault, failing):
    report = check_frame(profile, renderer.render(7, defect=None, fault=fault)[0])
    failed = {c.name for c in report.failed}
    assert failing <= failed, report.summary()
    if fault in ("noisy", "shifted"):  # same dose / same exposure: only what is wrong fails
        assert failed == failing, report.summary()
    assert report.summary().startswith("check capture")


def test_limits_come_from_the_good_images(profile):
    tol, base = profile.xray.tolerances, profile.xray.baseline
    assert tol.grey_low < base.grey[1] and base.grey[2] < tol.grey_high
    assert tol.snr_min == pytest.approx(0.7 * base.snr[1])
    assert 0 < tol.underexposed_level < base.grey[1]
    region = profile.xray.reference_region
    assert profile.roi.x <= region.x and region.x + region.width <= profile.roi.x + profile.roi.width


def test_explicit_reference_region_and_overrides(renderer):
    good = [renderer.render(6000 + i, defect=None)[0] for i in range(6)]
    p = calibrate_xray(good, "XRAY-C", "casting", reference_region=Roi(10, 10, 30, 30), overrides={"snr_min": 5.0})
    assert p.xray.reference_region == Roi(10, 10, 30, 30) and p.xray.tolerances.snr_min == 5.0
    # the open beam in the corner is bright: the grey-level window was derived there
    assert p.xray.baseline.grey[0] > 0.7


def test_xray_profile_survives_the_store_and_camera_profiles_are_unchanged(tmp_path, profile, renderer):
    saved = ProfileStore(tmp_path).save(profile)
    loaded = ProfileStore(tmp_path).latest("XRAY-C", "casting")
    assert loaded.xray == saved.xray and loaded.content_hash == saved.content_hash
    image = renderer.render(9, defect=None, fault="noisy")[0]
    assert [c.name for c in check_frame(loaded, image).failed] == ["snr"]
    cam = calibrate([renderer.render(i, defect=None)[0] for i in range(4)], "CAM-1", "r")
    assert "xray" not in json.loads(cam.to_json_bytes())  # camera profile files as before


def test_wrong_bit_depth_or_size_is_refused_not_judged(profile):
    from calibration.spec import SpecInputError

    with pytest.raises(SpecInputError):
        check_frame(profile, np.zeros((10, 10), np.uint16))
    with pytest.raises(SpecInputError, match="12-bit"):
        check_frame(profile, np.zeros((SPEC.height, SPEC.width), np.uint16), bit_depth=12)
