"""16 bits end to end through the inspection cycle, from the second 16-bit source: pylon's
own camera emulation (PYLON_CAMEMU) in Mono16 and Mono12, serving simulated radiographs
from a folder. The stored image must hold the very pixel values the camera delivered."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.spec import ProfileSpecChecker
from calibration.xray_spec import calibrate_xray
from station.capture.base import PartContext, TriggerMode
from station.capture.pylon_camera import PylonCamera
from station.capture.sim_xray import SimXraySpec, XrayPartRenderer
from station.detect.grey_window import GreyWindow, WindowedDetector
from station.detect.variation import VariationModel, VariationParams
from station.inspect.cycle import CycleContext, InspectionCycle
from station.inspect.decide import DecisionPolicy
from station.runtime import StoreRecorder
from station.store.station_store import StationStore

SPEC = SimXraySpec(width=128, height=96, seed=5, defect_rate=0.0)


@pytest.fixture(autouse=True)
def camemu(monkeypatch):
    monkeypatch.setenv("PYLON_CAMEMU", "1")


@pytest.mark.parametrize("pixel_format, shift", [("Mono16", 0), ("Mono12", 4)])
def test_pylon_emulation_16_bit_values_survive_to_the_stored_image(tmp_path, pixel_format, shift):
    renderer = XrayPartRenderer(SPEC)
    files = [renderer.render(i, defect=None)[0] for i in range(4)]
    folder = tmp_path / "emu"
    folder.mkdir()
    for i, image in enumerate(files):
        assert cv2.imwrite(str(folder / f"part_{i:02d}.png"), image)
    served = [f >> shift for f in files]  # the emulation delivers a 16-bit file in Mono12 as its top 12 bits
    bits = 16 - shift
    good = [renderer.render(1000 + i, defect=None)[0] >> shift for i in range(12)]
    profile = calibrate_xray(good, "0815-0000", "casting", bit_depth=bits)
    window = GreyWindow(int(0.2 * (1 << bits)), int(0.7 * (1 << bits)))
    model = VariationModel.train([window.apply(g) for g in good], roi=profile.roi,
                                 params=VariationParams(downscale=2, bit_depth=16))
    cam = PylonCamera(serial="0815-0000", pixel_format=pixel_format, width=SPEC.width, height=SPEC.height,
                      image_folder=folder)
    cam.open()
    try:
        with StationStore(tmp_path / "data") as store:
            cycle = InspectionCycle(cam, ProfileSpecChecker(profile), WindowedDetector(model, window),
                                    StoreRecorder(store), DecisionPolicy(),
                                    CycleContext(station="xr", recipe="casting", config_hash="t", roi=profile.roi),
                                    trigger_mode=TriggerMode.SOFTWARE, capture_timeout_s=2.0)
            cycle.arm()
            parts = (PartContext(part_id=f"P{i}") for i in range(len(served)))
            outs = list(cycle.run(parts, count=len(served)))
            for out, expected in zip(outs, served):
                assert out.fault is None and out.spec_passed, out.spec_checks
                assert out.frame.pixel_format == pixel_format and out.frame.bit_depth == bits
                assert out.detection.extra["grey_window"] == window.to_json()
                stored = cv2.imread(str(store.image_path(out.inspection_id)), cv2.IMREAD_UNCHANGED)
                assert stored.dtype == np.uint16 and np.array_equal(stored, expected)
                assert store.get(out.inspection_id)["image"]["bit_depth"] == bits
            assert int(max(int(e.max()) for e in served)) > 255
    finally:
        cam.close()
