from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from station.detect.base import DetectionResult, Detector
from station.detect.registry import (
    CorruptModel,
    ModelNotFound,
    ModelRegistry,
    ModelStoreError,
)
from station.detect.variation import VariationModel, VariationParams


@pytest.fixture(scope="module")
def two_models():
    from synthetic_parts import PartSim

    sim = PartSim(seed=3)
    images, aligns = sim.good(12)
    a = VariationModel.train(images, alignments=aligns)
    b = VariationModel.train(images, alignments=aligns, params=VariationParams(b_rel=5.0))
    return a, b


def _fresh(model: VariationModel) -> VariationModel:
    """A copy, so registry bookkeeping on one test's model does not leak into another's."""
    arrays, meta = model.to_state()
    return VariationModel.from_state(arrays, meta)


def test_save_load_round_trip_gives_identical_results(tmp_path, two_models, sim):
    reg = ModelRegistry(tmp_path / "models")
    model = _fresh(two_models[0])
    model_id = reg.save(model, dataset={"source": "sim", "count": 12})
    assert re.fullmatch(r"variation-\d{8}T\d{6}-[0-9a-f]{6}", model_id)
    assert model.model_version == "1"

    loaded = reg.load(model_id)
    assert isinstance(loaded, Detector) and loaded.model_type == "variation"
    assert (loaded.model_id, loaded.model_version, loaded.model_hash) == (model_id, "1", model.model_hash)
    for kind in ("good", "scratch"):
        if kind == "good":
            (img,), (a,) = sim.good(1)
        else:
            img, a, _ = sim.defective(kind)
        r1, r2 = model.detect(img, alignment=a), loaded.detect(img, alignment=a)
        assert r1.score == r2.score and r1.is_anomalous == r2.is_anomalous
        assert np.array_equal(r1.heatmap, r2.heatmap) and np.array_equal(r1.anomaly_mask, r2.anomaly_mask)
        assert (r2.model_id, r2.model_version, r2.model_hash) == (model_id, "1", model.model_hash)

    meta = json.loads((tmp_path / "models" / model_id / "model.json").read_text())
    assert meta["model_type"] == "variation" and meta["model_version"] == "1"
    assert meta["dataset"] == {"source": "sim", "count": 12}
    assert meta["params"]["downscale"] == 2 and "good_scores" in meta["training"]
    assert len(meta["files"]["model.npz"]["sha256"]) == 64 and meta["created_at"]


def test_versions_increase_and_list(tmp_path, two_models):
    reg = ModelRegistry(tmp_path)
    a, b = (_fresh(m) for m in two_models)
    id_a, id_b = reg.save(a), reg.save(b)
    assert id_a != id_b and (a.model_version, b.model_version) == ("1", "2")
    assert reg.save(a) == id_a and a.model_version == "1"  # same model again: idempotent
    assert [m.model_id for m in reg.list()] == [id_a, id_b]
    assert [m.model_version for m in reg.list()] == ["1", "2"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    # a new registry object on the same folder continues the numbering
    c = _fresh(two_models[0])
    c.model_id = c.model_id + "-copy"
    ModelRegistry(tmp_path).save(c)
    assert c.model_version == "3"


def test_active_pointer_switches_atomically(tmp_path, two_models, monkeypatch):
    reg = ModelRegistry(tmp_path)
    id_a, id_b = reg.save(_fresh(two_models[0])), reg.save(_fresh(two_models[1]))
    assert reg.active() is None and reg.load_active() is None
    reg.set_active(id_a)
    assert reg.active() == id_a and (tmp_path / "ACTIVE").read_text().strip() == id_a
    assert reg.load_active().model_id == id_a

    # A crash between writing the new pointer and the rename leaves the old one intact.
    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        reg.set_active(id_b)
    monkeypatch.undo()
    assert reg.active() == id_a

    reg.set_active(id_b)
    assert reg.active() == id_b
    with pytest.raises(ModelNotFound):
        reg.set_active("variation-20000101T000000-000000")
    assert reg.active() == id_b


def test_shadow_pointer(tmp_path, two_models):
    reg = ModelRegistry(tmp_path)
    id_a = reg.save(_fresh(two_models[0]))
    assert reg.shadow() is None
    reg.set_shadow(id_a)
    assert reg.shadow() == id_a and reg.active() is None
    reg.set_shadow(None)
    assert reg.shadow() is None


def test_corrupt_model_json_gives_a_clear_error(tmp_path, two_models):
    reg = ModelRegistry(tmp_path)
    model_id = reg.save(_fresh(two_models[0]))
    reg.set_active(model_id)
    path = tmp_path / model_id / "model.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(CorruptModel, match=re.escape(str(path))):
        reg.load(model_id)
    with pytest.raises(CorruptModel):
        reg.set_active(model_id)
    path.unlink()
    with pytest.raises(CorruptModel, match=re.escape(str(path)) + ": missing"):
        reg.load(model_id)


def test_tampered_files_are_caught(tmp_path, two_models):
    reg = ModelRegistry(tmp_path)
    model_id = reg.save(_fresh(two_models[0]))
    npz = tmp_path / model_id / "model.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(CorruptModel, match=re.escape(str(npz)) + ".*hash mismatch"):
        reg.load(model_id)

    model_id = reg.save(_fresh(two_models[1]))
    path = tmp_path / model_id / "model.json"
    meta = json.loads(path.read_text())
    meta["threshold"] = 99.0  # would silently pass every part
    path.write_text(json.dumps(meta))
    with pytest.raises(CorruptModel, match="content hash mismatch"):
        reg.load(model_id)

    with pytest.raises(ModelNotFound, match="no model 'nope'"):
        reg.load("nope")
    with pytest.raises(ModelNotFound):
        reg.load("../etc")


class _ConstantDetector(Detector):
    """A stand-in for another model family (PatchCore later)."""

    model_type = "constant"

    def __init__(self, value: float, model_id: str = "constant-20260101T000000-abcdef") -> None:
        self.value, self.model_id, self.model_version = value, model_id, ""
        self.model_hash = f"{value:.6f}"

    def to_state(self):
        return {"value": np.array([self.value])}, {"model_hash": self.model_hash}

    @classmethod
    def from_state(cls, arrays, meta):
        return cls(float(arrays["value"][0]), meta["model_id"])

    def detect(self, image, *, roi=None, alignment=None) -> DetectionResult:
        return DetectionResult(False, 1.0, self.value, 1.0, [], self.model_id, self.model_version)


def test_loaders_are_pluggable_by_model_type(tmp_path):
    reg = ModelRegistry(tmp_path, loaders={"constant": _ConstantDetector.from_state})
    model_id = reg.save(_ConstantDetector(0.25))
    loaded = reg.load(model_id)
    assert isinstance(loaded, _ConstantDetector) and loaded.value == 0.25 and loaded.model_version == "1"
    with pytest.raises(ModelStoreError, match="no loader for model_type 'constant'"):
        ModelRegistry(tmp_path).load(model_id)
