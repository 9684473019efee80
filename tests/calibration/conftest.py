"""Shared synthetic part and calibrated profile for the calibration tests.

Frames are 1280x1024 like the station's cameras; the part, faults and noise come from
``calibration.synthetic`` (drawn with cv2: no camera or other station module needed).
"""
from __future__ import annotations

import numpy as np
import pytest
from calib_helpers import RECIPE, ROI, SERIAL, SHAPE

from calibration.calibrate import calibrate
from calibration.profile import CalibrationProfile
from calibration.synthetic import capture, good_captures, render_scene


@pytest.fixture(scope="session")
def scene() -> np.ndarray:
    return render_scene(SHAPE)


@pytest.fixture(scope="session")
def good_images(scene: np.ndarray) -> list[np.ndarray]:
    return [capture(scene, c) for c in good_captures(8)]


@pytest.fixture(scope="session")
def profile(good_images: list[np.ndarray]) -> CalibrationProfile:
    return calibrate(good_images, SERIAL, RECIPE, roi=ROI)
