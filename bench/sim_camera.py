"""Grab latency of the simulated camera: prints p50 / p99 milliseconds per grab.

    .venv/bin/python bench/sim_camera.py [--frames 500] [--pixel-format Mono8] [--defect-rate 0.2]

Times ``grab()`` only (software trigger), after one warm-up grab; the first ``open()``
renders the part and is reported separately.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from station.capture.base import TriggerMode
from station.capture.sim_camera import SimCamera


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--pixel-format", default="Mono8", choices=("Mono8", "Mono12", "Mono16", "BGR8"))
    ap.add_argument("--defect-rate", type=float, default=0.2)
    args = ap.parse_args()

    cam = SimCamera(width=args.width, height=args.height, pixel_format=args.pixel_format,
                    defect_rate=args.defect_rate)
    t0 = time.perf_counter()
    cam.open()
    open_ms = (time.perf_counter() - t0) * 1000
    cam.arm(TriggerMode.SOFTWARE)
    cam.grab()
    times = np.empty(args.frames)
    for i in range(args.frames):
        t = time.perf_counter()
        cam.grab()
        times[i] = (time.perf_counter() - t) * 1000
    cam.close()
    print(f"sim_camera {args.width}x{args.height} {args.pixel_format} defect_rate={args.defect_rate} "
          f"frames={args.frames}")
    print(f"open_ms {open_ms:.1f}")
    print(f"grab_p50_ms {np.percentile(times, 50):.2f}")
    print(f"grab_p99_ms {np.percentile(times, 99):.2f}")


if __name__ == "__main__":
    main()
