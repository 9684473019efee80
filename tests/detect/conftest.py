"""Fixtures for detector tests; the synthetic part generator is in synthetic_parts.py."""
from __future__ import annotations

import pytest

from synthetic_parts import PartSim


@pytest.fixture
def sim() -> PartSim:
    """A fresh generator per test, so results do not depend on test order."""
    return PartSim(seed=11)


@pytest.fixture(scope="session")
def trained():
    """A model trained on 20 good parts (shared: training is deterministic and read-only)."""
    from station.detect.variation import VariationModel

    images, aligns = PartSim(seed=7).good(20)
    return VariationModel.train(images, alignments=aligns)
