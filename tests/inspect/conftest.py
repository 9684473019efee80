"""A fresh station on the simulated camera, in a temp data dir, for each test.

Calibrating and training take a few seconds, so they happen once per session in a template
data dir whose calibration profiles and models each test copies; the database, images and
outbox are always the test's own.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from station.config import LineStationConfig, parse_config
from station.runtime import StationRuntime

SIM_BASE = {
    "schema_version": 1,
    "station": {"plant": "p1", "line": "l1", "station": "s1", "lot": "LOT-T"},
    "camera": {"type": "sim", "width": 640, "height": 512, "seed": 11, "defect_rate": 0.0,
               "timeout_s": 0.5},
    "detector": {"type": "variation", "train_images": 30},
    "recipe": {"name": "t"},
    "calibration": {"calibration_images": 16},
}


def sim_config(**camera: object) -> LineStationConfig:
    data = yaml.safe_load(yaml.safe_dump(SIM_BASE))
    data["camera"].update(camera)
    return parse_config(yaml.safe_dump(data), "test.yaml")


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory) -> Path:
    """A data dir whose calibration and model were bootstrapped once for the suite."""
    root = tmp_path_factory.mktemp("template")
    rt = StationRuntime.open(sim_config(), root, arm=False)
    rt.close()
    return root


@pytest.fixture
def make_station(tmp_path, trained_template) -> Iterator[Callable[..., StationRuntime]]:
    opened: list[StationRuntime] = []

    def make(data_dir: Path | None = None, arm: bool = True, **camera: object) -> StationRuntime:
        data_dir = data_dir or tmp_path / "data"
        if not (data_dir / "models").exists():
            for part in ("calibration", "models"):
                shutil.copytree(trained_template / part, data_dir / part)
        rt = StationRuntime.open(sim_config(**camera), data_dir, arm=arm)
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()
