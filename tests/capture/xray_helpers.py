"""Shared by the X-ray tests: a station cycle on a watched folder, with a real SQLite store."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from calibration.xray_spec import calibrate_xray
from calibration.spec import ProfileSpecChecker
from station.capture.base import PartContext, TriggerMode
from station.capture.sim_xray import SimXraySpec, XrayPartRenderer
from station.capture.xray_camera import XrayFolderCamera
from station.detect.base import Detector
from station.detect.variation import VariationModel, VariationParams
from station.inspect.cycle import CycleContext, InspectionCycle
from station.inspect.decide import DecisionPolicy
from station.runtime import StoreRecorder, recorded_original
from station.store.station_store import StationStore

SPEC = SimXraySpec(width=256, height=256, seed=3, defect_rate=0.0)
FAST = {"poll_interval_s": 0.005, "settle_s": 0.05}  # a watched folder that notices files quickly


def folder_camera(folder, *, cls=XrayFolderCamera, arm: bool = True, **kwargs) -> XrayFolderCamera:
    """An opened X-ray folder camera on ``folder`` with FAST polling (armed unless told not)."""
    cam = cls(folder, serial="XRAY-T", **{**FAST, **kwargs})
    cam.open()
    if arm:
        cam.arm(TriggerMode.WATCHED_FOLDER)
    return cam


def wait_for(cond, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


def good_radiographs(n: int, spec: SimXraySpec = SPEC, start: int = 1_000_000) -> list[np.ndarray]:
    r = XrayPartRenderer(spec)
    return [r.render(start + i, defect=None)[0] for i in range(n)]


def xray_model(spec: SimXraySpec = SPEC, n: int = 12) -> tuple:
    """A calibration profile and a (fast) variation model from good simulated radiographs."""
    good = good_radiographs(n, spec)
    profile = calibrate_xray(good, "XRAY-T", "casting")
    model = VariationModel.train(good_radiographs(n, spec, start=2_000_000), roi=profile.roi,
                                 params=VariationParams(downscale=4))
    return profile, model


def make_cycle(camera, store: StationStore, profile, model: Detector, timeout_s: float = 2.0) -> InspectionCycle:
    """The station's own cycle, wired as the runtime wires a watched folder."""
    camera.set_recorded_check(recorded_original(store))
    cycle = InspectionCycle(camera, ProfileSpecChecker(profile), model, StoreRecorder(store), DecisionPolicy(),
                            CycleContext(station="xray1", recipe="casting", config_hash="t", roi=profile.roi),
                            trigger_mode=TriggerMode.WATCHED_FOLDER, capture_timeout_s=timeout_s)
    cycle.add_inspection_listener(camera.on_recorded)
    return cycle


def contexts(prefix: str = "P"):
    n = 0
    while True:
        n += 1
        yield PartContext(part_id=f"{prefix}{n:05d}", lot="L1", recipe="casting")


def recorded_files(store: StationStore) -> list[str]:
    """The original file name of every recorded inspection that had an image."""
    with store.reader.connect() as conn:
        rows = conn.exec_driver_sql("SELECT record FROM inspections ORDER BY id").scalars().all()
    docs = [json.loads(r) if isinstance(r, str) else r for r in rows]
    return [d["meta"]["original"]["file"] for d in docs if (d.get("meta") or {}).get("original")]


def fault_records(store: StationStore) -> list[dict]:
    with store.reader.connect() as conn:
        rows = conn.exec_driver_sql("SELECT record FROM inspections WHERE decision = 'check_capture' ORDER BY id").scalars().all()
    return [json.loads(r) if isinstance(r, str) else r for r in rows]


def write_file(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` under a temporary name and rename it in (how vendor software does it)."""
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data)
    tmp.replace(folder / name)
    return folder / name
