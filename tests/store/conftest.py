"""Store tests run against real SQLite files in tmp_path (never mocked)."""
from __future__ import annotations

import numpy as np
import pytest

from station.store.station_store import StationStore


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def store(tmp_path):
    s = StationStore(tmp_path / "data", plant="plantA", line="line2", station="station1")
    yield s
    s.close()
