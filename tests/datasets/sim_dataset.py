"""A small dataset in the anomaly folder layout, made from simulated parts.

Defect masks are exact: the same part index rendered with and without the defect differs
only where the defect was drawn.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from station.capture.sim_camera import SimCamera

KINDS = ("scratch", "spot", "contamination")


def sim_camera(seed: int = 3) -> SimCamera:
    # A fixtured part: small pose jitter, as on a line with a nest (the dataset models are
    # trained without registration).
    return SimCamera(width=320, height=256, seed=seed, jitter_px=0.4, jitter_deg=0.05, defect_rate=0.0)


def write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def make_anomaly_folder(root: Path, *, n_train: int = 24, n_test_good: int = 10, n_per_kind: int = 4,
                        seed: int = 3, start: int = 0) -> Path:
    """``root`` with train/good, test/good, test/<kind>, ground_truth/<kind>/<name>_mask.png."""
    cam = sim_camera(seed)
    for i, img in enumerate(cam.good_images(n_train, start=start)):
        write(root / "train" / "good" / f"{i:03d}.png", img)
    for i in range(n_test_good):
        img, _ = cam.render(1000 + start + i, defect=None, fault=None)
        write(root / "test" / "good" / f"{i:03d}.png", img)
    for k, kind in enumerate(KINDS):
        for i in range(n_per_kind):
            index = 2000 + start + 100 * k + i
            bad, meta = cam.render(index, defect=kind, fault=None)
            clean, _ = cam.render(index, defect=None, fault=None)
            mask = (cv2.absdiff(bad, clean) > 0).astype(np.uint8) * 255
            write(root / "test" / kind / f"{i:03d}.png", bad)
            write(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
    return root


SMALL_STATION = """\
schema_version: 1
station: {plant: p1, line: l1, station: s1, lot: MON}
camera: {type: sim, width: 320, height: 256, seed: 5, defect_rate: 0.2}
detector: {type: variation, train_images: 16}
recipe: {name: demo}
calibration: {calibration_images: 12}
"""


def open_small_station(data_dir: Path, extra_yaml: str = ""):
    """A real StationRuntime on a small simulated camera (calibrates and trains on first open)."""
    from station.config import parse_config
    from station.runtime import StationRuntime

    cfg = parse_config(SMALL_STATION + extra_yaml)
    return StationRuntime.open(cfg, data_dir, progress=lambda msg: None)


def run_parts(runtime, n: int) -> list:
    return list(runtime.run(count=n))


def run_cli(data_dir: Path, *args: str, timeout: float = 120):
    """``linestation --data-dir DATA_DIR ARGS...`` in a real process."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "station.cli", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=root)
