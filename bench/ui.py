"""The operator screen under load: live-view display rate, GUI-thread stalls, verdict latency.

A real station on the simulated camera at 1280x1024 (a fresh temp data dir: calibrated
and trained first), the real window with the operator screen, signed in. Two phases in
one run:

1. baseline: the live view fed by a 30 fps preview stream (a second simulated camera
   standing in for a free-running preview), the line stopped;
2. load: the same, while the line inspects at ``--rate`` parts/s on its own thread.

Printed: frames painted per second (distinct frames that reached the screen), the GUI
thread's longest stall and p99 lateness (a 5 ms heartbeat timer: how late each tick came),
and how long after the record committed the verdict was on the banner (p50/p99), with the
load/baseline ratio for the stall. Targets: >= 25 fps displayed, no stall > 50 ms, verdict
on screen <= 100 ms after commit. ``--json``: the last line is one JSON object.

    python bench/ui.py                    # offscreen unless DISPLAY is set
    xvfb-run -a -s "-screen 0 1920x1080x24" python bench/ui.py --platform xcb
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEARTBEAT_MS = 5


def _json_safe(value):
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


def config_text(width: int, height: int) -> str:
    return f"""
schema_version: 1
station: {{plant: bench, line: l1, station: s1, lot: BENCH}}
camera: {{type: sim, width: {width}, height: {height}, seed: 5, defect_rate: 0.25,
          fault_rates: {{dim: 0.02, blur: 0.02}}}}
detector: {{type: variation, train_images: 30, downscale: 2}}
calibration: {{calibration_images: 16}}
ui: {{live_view_fps: 30, idle_signout_min: 600}}
"""


class Heartbeat:
    """A 5 ms precise timer on the GUI thread; lateness = gap between ticks - 5 ms."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.gaps: list[float] = []
        self._last = 0.0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.gaps.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self._last) * 1000.0)
        self._last = now

    @property
    def lateness(self) -> list[float]:
        return [max(0.0, g - HEARTBEAT_MS) for g in self.gaps]


def preview_feeder(width: int, height: int, fps: float, slot, stop: threading.Event) -> threading.Thread:
    from station.capture.base import TriggerMode
    from station.capture.sim_camera import SimCamera

    def run() -> None:
        cam = SimCamera(width=width, height=height, seed=99, defect_rate=0.0)
        cam.open()
        cam.arm(TriggerMode.SOFTWARE)
        period = 1.0 / fps
        nxt = time.perf_counter()
        try:
            while not stop.is_set():
                slot.put(cam.grab(1.0).image)
                nxt += period
                stop.wait(max(0.0, nxt - time.perf_counter()))
        finally:
            cam.disarm()
            cam.close()

    t = threading.Thread(target=run, name="bench-preview", daemon=True)
    t.start()
    return t


def run_phase(app, op, hb: Heartbeat, seconds: float) -> dict[str, float]:
    painted0, frames0, lat0 = op.live.painted, op.live.frames_set, len(op.latency_ms)
    hb.start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        app.processEvents()
        time.sleep(0.001)
    dt = time.perf_counter() - t0
    hb.stop()
    late = hb.lateness
    lat = op.latency_ms[lat0:]
    return {
        "seconds": round(dt, 2),
        "frames_painted_per_s": round((op.live.painted - painted0) / dt, 1),
        "frames_given_per_s": round((op.live.frames_set - frames0) / dt, 1),
        "stall_max_ms": round(max(late) if late else float("nan"), 1),
        "stall_p99_ms": round(pct(late, 99), 1),
        "heartbeats": len(late),
        "verdicts": len(lat),
        "verdict_latency_p50_ms": round(pct(lat, 50), 1),
        "verdict_latency_p99_ms": round(pct(lat, 99), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the loaded phase")
    ap.add_argument("--baseline-seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=float, default=10.0, help="parts per second inspected")
    ap.add_argument("--preview-fps", type=float, default=30.0, help="0: no preview stream (inspected frames only)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--platform", default=None, help="Qt platform (default: xcb with DISPLAY, else offscreen)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["QT_QPA_PLATFORM"] = args.platform or ("xcb" if os.environ.get("DISPLAY") else "offscreen")

    from PySide6.QtWidgets import QApplication

    from station.config import parse_config
    from station.runtime import StationRuntime
    from station.ui.app import build_context, configure_interpreter
    from station.ui.main_window import QtMainWindow
    from station.ui.pages import PAGES

    app = QApplication.instance() or QApplication([])
    cfg = parse_config(config_text(args.width, args.height), "bench-ui.yaml")
    cfg = cfg.model_copy(update={"ui": cfg.ui.model_copy(update={"run_rate_hz": args.rate})})
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr))
        rt = StationRuntime.open(cfg, Path(tmp), progress=log)
        ctx = build_context(rt)
        win = QtMainWindow(ctx, [p for p in PAGES if p.key == "operator"])
        win.resize(1920, 1080)
        win.show()
        secret = secrets.token_urlsafe(12)
        ctx.users.create_first_admin("bench", secret)
        win.sign_in_screen.signed_in.emit(ctx.users.sign_in("bench", secret))
        op = win.pages["operator"]
        configure_interpreter()  # as `linestation demo` / `run` do
        hb = Heartbeat()
        stop = threading.Event()
        feeder = (preview_feeder(args.width, args.height, args.preview_fps, ctx.line.preview, stop)
                  if args.preview_fps > 0 else None)
        try:
            run_phase(app, op, hb, 1.0)  # warm-up: first paints, caches
            base = run_phase(app, op, hb, args.baseline_seconds)
            op.start_line()
            load = run_phase(app, op, hb, args.seconds)
            op.stop_line()
            inspected = ctx.line.inspected
        finally:
            stop.set()
            if feeder is not None:
                feeder.join(5)
            win.close()
            rt.close()
    result = {
        "bench": "ui",
        "platform": os.environ["QT_QPA_PLATFORM"],
        "frame": f"{args.width}x{args.height}",
        "rate_parts_per_s": args.rate,
        "preview_fps": args.preview_fps,
        "inspected": inspected,
        "display_fps": load["frames_painted_per_s"],
        "stall_max_ms": load["stall_max_ms"],
        "stall_p99_ms": load["stall_p99_ms"],
        "verdict_latency_p50_ms": load["verdict_latency_p50_ms"],
        "verdict_latency_p99_ms": load["verdict_latency_p99_ms"],
        "baseline": base,
        "load": load,
        "stall_p99_ratio_vs_baseline": round(load["stall_p99_ms"] / base["stall_p99_ms"], 2)
        if base["stall_p99_ms"] else None,
        "targets_met": {
            "display_fps>=25": load["frames_painted_per_s"] >= 25,
            "stall<=50ms": load["stall_max_ms"] <= 50,
            "verdict_p99<=100ms": load["verdict_latency_p99_ms"] <= 100,
        },
    }
    if not args.json:
        print(f"platform {result['platform']}, frames {result['frame']}, inspecting at {args.rate}/s "
              f"({inspected} parts in {load['seconds']} s), preview {args.preview_fps} fps")
        for name, ph in (("baseline (line stopped)", base), ("load (line running)", load)):
            print(f"  {name:<24} painted {ph['frames_painted_per_s']:5.1f} fps  stall max {ph['stall_max_ms']:6.1f} ms"
                  f"  p99 {ph['stall_p99_ms']:5.1f} ms  verdict on screen p50 {ph['verdict_latency_p50_ms']} ms"
                  f"  p99 {ph['verdict_latency_p99_ms']} ms")
        print(f"  stall p99 load/baseline ratio: {result['stall_p99_ratio_vs_baseline']}")
        print(f"  targets: {result['targets_met']}")
    result = _json_safe(result)  # no NaN in the output: "not measured" is null
    print(json.dumps(result, separators=(",", ":"), allow_nan=False) if args.json else json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
