"""X-ray ingest benchmark (prints numbers; not a pass/fail test).

    .venv/bin/python bench/xray_ingest.py [--n 200] [--size 512] [--format tiff|dicom] [--json]

The simulated detector writes ``n`` 16-bit radiographs into a watched folder (temporary
name, then rename); the station's cycle (X-ray spec checks, variation model on the grey
window, 16-bit PNG + original file + SQLite record, file filed away) inspects them.
Baseline, measured in the same run: the same radiographs as 16-bit PNGs through the same
cycle from the software-triggered replay driver (no folder watching, no claim, no original
kept). Printed: per-inspection cycle time (median, p99) of both, their ratio, and the
throughput of the watched folder. The machine is shared: quote medians and ratios.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.spec import ProfileSpecChecker  # noqa: E402
from calibration.xray_spec import calibrate_xray  # noqa: E402
from station.capture.base import PartContext, TriggerMode  # noqa: E402
from station.capture.replay_camera import ReplayCamera  # noqa: E402
from station.capture.sim_xray import SimXraySpec, SimXrayWriter, XrayPartRenderer  # noqa: E402
from station.capture.xray_camera import XrayFolderCamera  # noqa: E402
from station.detect.grey_window import GreyWindow, WindowedDetector  # noqa: E402
from station.detect.variation import VariationModel, VariationParams  # noqa: E402
from station.inspect.cycle import CycleContext, InspectionCycle  # noqa: E402
from station.inspect.decide import DecisionPolicy  # noqa: E402
from station.runtime import StoreRecorder, recorded_original  # noqa: E402
from station.store.station_store import StationStore  # noqa: E402


def run_cycle(camera, mode: TriggerMode, data_dir: Path, profile, detector, n: int) -> tuple[list[float], float]:
    with StationStore(data_dir) as store:
        if hasattr(camera, "set_recorded_check"):
            camera.set_recorded_check(recorded_original(store))
        camera.open()
        cycle = InspectionCycle(camera, ProfileSpecChecker(profile), detector, StoreRecorder(store), DecisionPolicy(),
                                CycleContext(station="bench", recipe="xr", config_hash="b", roi=profile.roi),
                                trigger_mode=mode, capture_timeout_s=5.0)
        if hasattr(camera, "on_recorded"):
            cycle.add_inspection_listener(camera.on_recorded)
        cycle.arm()
        t0 = time.perf_counter()
        outs = list(cycle.run((PartContext(part_id=f"B{i}") for i in range(n)), count=n))
        wall = time.perf_counter() - t0
        cycle.disarm()
        camera.close()
    assert len(outs) == n and all(o.fault is None for o in outs), [o.fault for o in outs if o.fault][:3]
    return [o.timings_ms["total"] for o in outs], wall


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"median_ms": round(float(np.median(a)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--format", choices=("tiff", "dicom"), default="tiff")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    spec = SimXraySpec(width=args.size, height=args.size, seed=1, defect_rate=0.0, file_format=args.format)
    renderer = XrayPartRenderer(spec)
    good = [renderer.render(10_000 + i, defect=None)[0] for i in range(12)]
    profile = calibrate_xray(good, "BENCH", "xr")
    window = GreyWindow(14000, 40000)
    model = VariationModel.train([window.apply(g) for g in good], roi=profile.roi,
                                 params=VariationParams(downscale=4, bit_depth=16))
    detector = WindowedDetector(model, window)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pngs, inbox = root / "pngs", root / "inbox"
        pngs.mkdir()
        inbox.mkdir()
        writer = SimXrayWriter(inbox, spec)
        for i in range(args.n):
            cv2.imwrite(str(pngs / f"p_{i:05d}.png"), renderer.render(i, defect=None)[0])
            writer.write_part(i, defect=None)
        base_ms, base_wall = run_cycle(ReplayCamera(pngs), TriggerMode.SOFTWARE, root / "d1", profile, detector, args.n)
        cam = XrayFolderCamera(inbox, serial="BENCH", poll_interval_s=0.002, settle_s=0.0)
        watched_ms, watched_wall = run_cycle(cam, TriggerMode.WATCHED_FOLDER, root / "d2", profile, detector, args.n)
    result = {
        "n": args.n, "size": args.size, "format": args.format,
        "baseline_replay_png": stats(base_ms), "watched_folder": stats(watched_ms),
        "ratio_median": round(float(np.median(watched_ms) / np.median(base_ms)), 3),
        "watched_files_per_s": round(args.n / watched_wall, 1),
        "baseline_files_per_s": round(args.n / base_wall, 1),
    }
    print(f"{args.n} radiographs {args.size}x{args.size} 16-bit {args.format}")
    print(f"  baseline (replay PNG, software trigger): median {result['baseline_replay_png']['median_ms']} ms, "
          f"p99 {result['baseline_replay_png']['p99_ms']} ms, {result['baseline_files_per_s']} files/s")
    print(f"  watched folder (claim, decode, keep original, file away): median {result['watched_folder']['median_ms']} ms, "
          f"p99 {result['watched_folder']['p99_ms']} ms, {result['watched_files_per_s']} files/s")
    print(f"  ratio (median, watched / baseline): {result['ratio_median']}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
