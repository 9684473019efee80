"""The X-ray station assembled from its config (what ``linestation inspect --config
resources/xray-demo.yaml`` runs): the simulated detector writes into the watched folder,
the station calibrates X-ray specs and trains on the windowed radiographs on first run,
records 16-bit images with their original files, and carries on after a restart."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from station.config import ConfigError, parse_config
from station.detect.grey_window import GreyWindow, WindowedDetector
from station.detect.variation import VariationModel, VariationParams
from station.runtime import StationRuntime

DEMO = Path(__file__).resolve().parents[2] / "resources" / "xray-demo.yaml"


def demo_config(inbox: Path, **sim):
    """The demo config, made small and quick (variation model, fewer calibration images)."""
    data = yaml.safe_load(DEMO.read_text())
    data["camera"]["folder"] = str(inbox)
    data["camera"]["sim"].update({"width": 192, "height": 160, "rate_hz": 40, **sim})
    data["detector"] = {"type": "variation", "train_images": 12, "downscale": 2}
    data["calibration"]["calibration_images"] = 8
    return parse_config(yaml.safe_dump(data), "xray-test.yaml")


def test_xray_demo_station_records_16_bit_radiographs_and_resumes(tmp_path):
    inbox, data_dir = tmp_path / "inbox", tmp_path / "data"
    cfg = demo_config(inbox)
    assert cfg.recipe_kind() == "xray"
    rt = StationRuntime.open(cfg, data_dir)
    try:
        outs = list(rt.run(count=6))
        assert isinstance(rt.detector, WindowedDetector)
        from station.detect.registry import ModelRegistry

        registry = ModelRegistry(data_dir / "models")  # the model says which window it learnt
        assert registry.info(registry.active()).meta["dataset"]["grey_window"] == [14000, 40000]
    finally:
        rt.close()
    assert len(outs) == 6 and all(o.fault is None for o in outs)
    for out in outs:
        assert [c["name"] for c in out.spec_checks][:4] == ["grey_level", "snr", "saturation", "underexposed"]
        assert out.spec_passed, out.spec_checks
        assert out.detection.extra["grey_window"] == [14000, 40000]
    rt = StationRuntime.open(cfg, data_dir)  # a restart: same calibration and model, next parts
    try:
        outs2 = list(rt.run(count=3))
        docs = [rt.store.get(o.inspection_id) for o in outs + outs2]
        for doc, out in zip(docs, outs + outs2):
            png = cv2.imread(str(rt.store.image_path(out.inspection_id)), cv2.IMREAD_UNCHANGED)
            assert png.dtype == np.uint16 and np.array_equal(png, out.frame.image)
            kept = rt.store.data_dir / doc["meta"]["original"]["stored"]
            assert kept.suffix == ".tif" and kept.stat().st_size == doc["meta"]["original"]["bytes"]
        files = [d["meta"]["original"]["file"] for d in docs]
    finally:
        rt.close()
    assert outs2[0].context.part_id.endswith("000007")
    assert len(set(files)) == 9  # nine different radiographs, none twice
    assert sorted(os.listdir(inbox / "done")) == sorted(files)


def test_the_model_learns_and_sees_the_windowed_image():
    rng = np.random.default_rng(0)
    window = GreyWindow(20000, 30000)
    goods = [np.clip(rng.normal(25000, 300, (64, 64)), 0, 65535).astype(np.uint16) for _ in range(12)]
    model = VariationModel.train([window.apply(g) for g in goods], params=VariationParams(downscale=2, bit_depth=16))
    windowed = WindowedDetector(model, window)
    assert windowed.model_id == model.model_id and windowed.threshold == model.threshold
    good = np.clip(rng.normal(25000, 300, (64, 64)), 0, 65535).astype(np.uint16)
    bad = good.copy()
    bad[20:30, 20:30] -= 3000  # 3000 grey levels: a tenth of the window, 5 % of full scale
    assert not windowed.detect(good).is_anomalous
    result = windowed.detect(bad)
    assert result.is_anomalous and result.extra["grey_window"] == [20000, 30000]


def test_grey_window_maps_low_high_onto_the_full_range_and_clips():
    w = GreyWindow(1000, 3000)
    got = w.apply(np.array([[0, 999, 1000, 2000, 3000, 65535]], np.uint16))
    assert got.tolist() == [[0, 0, 0, 32768, 65535, 65535]]
    assert w.apply(np.array([[255]], np.uint8)).dtype == np.uint16
    with pytest.raises(ValueError):
        GreyWindow(3000, 3000)
    with pytest.raises(ValueError, match="float32"):
        w.apply(np.zeros((2, 2), np.float32))


def test_the_screens_and_the_model_share_one_grey_window():
    from station.display_window import GreyWindow as ShownWindow

    assert ShownWindow is GreyWindow  # one class: a recipe's window means the same everywhere
    w = GreyWindow.from_level_width(2000, 1000, 4095)
    assert (w.low, w.high, w.width, w.level) == (1500, 2500, 1000, 2000.0) and w.to_json() == [1500, 2500]
    with pytest.raises(ValueError, match="low < high"):
        GreyWindow(0, 70000)
    with pytest.raises(TypeError):
        GreyWindow(0.5, 10)


def test_bad_xray_config_names_the_key(tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data["recipe"]["grey_window"] = {"low": 5000, "high": 4000}
    data["camera"]["trigger"] = "software"
    data["camera"]["sim"]["bits"] = 10
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(data), "bad.yaml")
    paths = {i.path for i in info.value.issues}
    assert {"recipe.grey_window", "camera.trigger", "camera.sim.bits"} <= paths, paths


def test_12_bit_diconde_files_written_slowly_in_place(tmp_path):
    cfg = demo_config(tmp_path / "inbox", file_format="dicom", bits=12, write="slow")
    data = cfg.model_dump(mode="json")
    data["recipe"]["grey_window"] = {"low": 800, "high": 2600}  # the window is in the detector's grey levels
    data["recipe"]["display_presets"] = []
    data["camera"]["settle_s"] = 0.15
    cfg = parse_config(yaml.safe_dump(data), "xray-dicom.yaml")
    rt = StationRuntime.open(cfg, tmp_path / "data")
    try:
        outs = list(rt.run(count=3))
        docs = [rt.store.get(o.inspection_id) for o in outs]
    finally:
        rt.close()
    for out, doc in zip(outs, docs):
        assert out.fault is None and out.spec_passed, (out.fault, out.spec_checks)
        assert out.frame.pixel_format == "Mono12" and int(out.frame.image.max()) <= 4095
        assert doc["image"]["bit_depth"] == 12 and doc["meta"]["original"]["format"] == "dicom"
        assert doc["meta"]["dicom"]["component_name"] == "SIM-CASTING"


def test_a_grey_window_beyond_the_detectors_bit_depth_stops_the_start(tmp_path):
    from station.inspect.bootstrap import BootstrapError

    cfg = demo_config(tmp_path / "inbox", file_format="dicom", bits=12)  # window 14000..40000
    with pytest.raises(BootstrapError, match=r"grey_window 14000..40000 lies above the 12-bit images"):
        StationRuntime.open(cfg, tmp_path / "data")
    from station.detect.registry import ModelRegistry

    assert ModelRegistry(tmp_path / "data" / "models").active() is None  # nothing trained on black images
