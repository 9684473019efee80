"""A camera in Mono12 on a fresh data dir: the first-run calibration must record the
camera's 12 bits, not the 16 bits of the uint16 arrays it calibrated from, or every live
frame would be a "check capture" for a bit-depth mismatch."""
from __future__ import annotations

from pathlib import Path

import yaml

from station.config import parse_config
from station.runtime import StationRuntime

DEMO = Path(__file__).resolve().parents[2] / "resources" / "demo.yaml"


def test_mono12_sim_station_calibrates_at_12_bits_and_inspects(tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data["camera"].update({"pixel_format": "Mono12", "width": 320, "height": 256, "fault_rates": {},
                           "defect_rate": 0.0})
    data["detector"] = {"type": "variation", "train_images": 12}
    data["calibration"]["calibration_images"] = 8
    cfg = parse_config(yaml.safe_dump(data), "mono12.yaml")
    rt = StationRuntime.open(cfg, tmp_path / "data")
    try:
        outs = list(rt.run(count=4))
    finally:
        rt.close()
    assert len(outs) == 4
    for out in outs:
        assert out.frame.pixel_format == "Mono12" and int(out.frame.image.max()) <= 4095
        assert out.spec_passed, out.spec_checks
        assert out.decision.value != "check_capture"
