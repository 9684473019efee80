"""Fixtures for monitoring tests: a small simulated station that has inspected 40 parts."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "datasets"))  # sim_dataset helpers

from sim_dataset import open_small_station, run_parts  # noqa: E402



@pytest.fixture(scope="session")
def ran_station(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("station") / "data"
    rt = open_small_station(data)
    try:
        run_parts(rt, 40)
    finally:
        rt.close()
    return data


@pytest.fixture
def station(ran_station, tmp_path) -> Path:
    """A private copy of the station's data dir (tests change it)."""
    copy = tmp_path / "data"
    shutil.copytree(ran_station, copy)
    return copy
