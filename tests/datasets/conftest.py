"""Fixtures for dataset tests: a small anomaly-layout folder made from simulated parts."""
from __future__ import annotations

import pytest

from sim_dataset import make_anomaly_folder


@pytest.fixture(scope="session")
def anomaly_folder(tmp_path_factory):
    """Read-only by convention: tests that change a folder copy it first."""
    return make_anomaly_folder(tmp_path_factory.mktemp("anomaly") / "parts")


@pytest.fixture
def dstore(tmp_path):
    from station.datasets.store import DatasetStore

    return DatasetStore(tmp_path / "data" / "datasets")
