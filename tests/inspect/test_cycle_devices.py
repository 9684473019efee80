"""The cycle on other drivers: pylon's camera emulation and a replay folder with bad files.

Both stations are calibrated and trained on rendered good parts (as a technician would on
parts they confirmed), then run through the same runtime as the demo.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from calibration.calibrate import calibrate
from calibration.profile import ProfileStore
from calibration.spec import check_frame
from station.capture.sim_camera import render_good
from station.config import parse_config
from station.detect.registry import ModelRegistry
from station.detect.variation import VariationModel
from station.inspect.bootstrap import BootstrapError
from station.inspect.cycle import CycleState
from station.inspect.decide import Decision
from station.runtime import StationRuntime

W, H = 640, 512


@pytest.fixture(scope="module")
def good_parts() -> list[np.ndarray]:
    return render_good(40, seed=11, width=W, height=H)


def _prepare(data_dir: Path, serial: str, images: list[np.ndarray]) -> None:
    """What the calibration wizard and `train` do: a profile and an active model."""
    profile = ProfileStore(data_dir / "calibration").save(calibrate(images[:16], serial, "t"))
    train = images[16:]
    model = VariationModel.train(train, roi=profile.roi,
                                 alignments=[check_frame(profile, im).alignment for im in train])
    registry = ModelRegistry(data_dir / "models")
    registry.set_active(registry.save(model))


def _config(camera: dict):
    data = {"schema_version": 1, "station": {"station": "s1", "lot": "L"}, "camera": camera,
            "recipe": {"name": "t"}, "calibration": {"auto_calibrate": False}}
    return parse_config(yaml.safe_dump(data), "test.yaml")


def test_a_real_camera_without_calibration_refuses_to_start_with_a_clear_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PYLON_CAMEMU", "1")
    cfg = _config({"type": "pylon", "serial": "0815-0000", "width": W, "height": H})
    with pytest.raises(BootstrapError, match="0815-0000.*calibration"):
        StationRuntime.open(cfg, tmp_path)


def test_pylon_emulation_failed_buffers_are_recorded_and_the_cycle_continues(tmp_path, monkeypatch, good_parts):
    monkeypatch.setenv("PYLON_CAMEMU", "1")
    folder = tmp_path / "emu"
    folder.mkdir()
    for i, image in enumerate(good_parts[:4]):
        cv2.imwrite(str(folder / f"part_{i}.png"), image)
    _prepare(tmp_path / "data", "0815-0000", good_parts)
    cfg = _config({"type": "pylon", "serial": "0815-0000", "width": W, "height": H,
                   "emulation_image_folder": str(folder), "timeout_s": 2.0})
    rt = StationRuntime.open(cfg, tmp_path / "data")
    try:
        first = list(rt.run(count=2))
        assert [o.decision for o in first] == [Decision.PASS, Decision.PASS]
        rt.camera.inject_failed_buffers(2)
        rest = list(rt.run(count=4))
        faults = [o.fault["kind"] for o in rest if o.fault]
        assert faults == ["failed_buffer", "failed_buffer"]
        assert [o.decision for o in rest[2:]] == [Decision.PASS, Decision.PASS]
        assert rt.cycle.state is CycleState.ARMED
        assert rt.store.count() == 6 and rt.store.count("check_capture") == 2
        docs = rt.store.recent(6)
        assert {d["camera"]["serial"] for d in docs if d["camera"]} == {"0815-0000"}
    finally:
        rt.close()


def test_replay_folder_with_bad_files_records_each_as_a_capture_fault(tmp_path, good_parts):
    folder = tmp_path / "replay"
    folder.mkdir()
    png = cv2.imencode(".png", good_parts[0])[1].tobytes()
    files = {
        "01_good.png": png,
        "02_corrupt.png": b"\x89PNG\r\n\x1a\n" + b"garbage" * 100,
        "03_truncated.png": png[: len(png) // 2],
        "04_empty.png": b"",
        "05_wrong_size.png": cv2.imencode(".png", good_parts[1][: H // 2, : W // 2])[1].tobytes(),
        "06_wrong_depth.png": cv2.imencode(".png", good_parts[2].astype(np.uint16) * 256)[1].tobytes(),
        "07_good.png": cv2.imencode(".png", good_parts[3])[1].tobytes(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    _prepare(tmp_path / "data", "REPLAY", good_parts)
    cfg = _config({"type": "replay", "folder": str(folder), "width": W, "height": H,
                   "pixel_format": "Mono8"})
    rt = StationRuntime.open(cfg, tmp_path / "data")
    try:
        outcomes = list(rt.run(count=20))  # the folder ends after 7 files
    finally:
        rt.close()
    assert len(outcomes) == 7  # and then the source is exhausted: no record without a part
    assert rt.cycle.state is CycleState.IDLE
    kinds = [o.fault["kind"] if o.fault else o.decision.value for o in outcomes]
    assert kinds[0] == "pass" and kinds[6] == "pass"
    assert kinds[1:6] == ["bad_image"] * 5
    for name, o in zip(list(files)[1:6], outcomes[1:6]):
        assert name in o.fault["message"], o.fault
    assert all(o.decision is Decision.CHECK_CAPTURE for o in outcomes[1:6])
