"""Fixtures for lifecycle tests: the simulated anomaly dataset and the `linestation` command."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "datasets"))  # sim_dataset helpers

from sim_dataset import make_anomaly_folder  # noqa: E402



@pytest.fixture(scope="session")
def anomaly_folder(tmp_path_factory):
    return make_anomaly_folder(tmp_path_factory.mktemp("anomaly") / "parts")

