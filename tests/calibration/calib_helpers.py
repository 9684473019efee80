"""Synthetic frames shared by the calibration tests (imported by conftest and tests)."""
from __future__ import annotations

import numpy as np

from calibration.roi import Roi
from calibration.synthetic import Capture, capture

SHAPE = (1024, 1280)
ROI = Roi(240, 192, 800, 640)  # the plate, with a margin of background around it
SERIAL, RECIPE = "SIM-0001", "demo"


def good_frame(scene: np.ndarray, seed: int = 900, **kw) -> np.ndarray:
    """A good frame (new noise, a little fixture play) that calibration never saw."""
    return capture(scene, Capture(dx=0.8, dy=-0.6, angle_deg=0.08, seed=seed), **kw)
