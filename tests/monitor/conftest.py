"""Fixtures for monitoring tests: a small simulated station that has inspected 40 parts."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "datasets"))  # sim_dataset helpers

from sim_dataset import open_small_station, run_parts  # noqa: E402


def run_cli(data_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station.cli", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


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
