"""Latency of the capture-spec checks: prints p50 / p99 milliseconds of ``check_frame``.

    .venv/bin/python bench/spec_checks.py [--frames 500] [--pixel-format Mono8] [--threads N]

Calibrates a profile from 8 synthetic good parts (``calibration.synthetic``), then times
``check_frame`` (all seven checks, registration included) on a rotating set of 16 distinct
frames: good parts with fixture play plus one of each capture fault, so the iterations the
registration needs vary as they do on a line. Registration alone is reported as well.
``--threads`` sets cv2's thread count (default: cv2's own choice).
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from calibration.calibrate import calibrate
from calibration.roi import Roi
from calibration.spec import _compiled, check_frame
from calibration.synthetic import Capture, capture, good_captures, render_scene

FORMATS = {"Mono8": (8, False), "Mono12": (12, False), "Mono16": (16, False), "BGR8": (8, True)}


def _percentiles(times: np.ndarray) -> str:
    return f"p50_ms {np.percentile(times, 50):.2f}  p99_ms {np.percentile(times, 99):.2f}  max_ms {times.max():.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--pixel-format", default="Mono8", choices=tuple(FORMATS))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    bits, bgr = FORMATS[args.pixel_format]

    scene = render_scene((args.height, args.width))
    render = lambda cap: capture(scene, cap, bit_depth=bits, bgr=bgr)  # noqa: E731
    roi = Roi(args.width * 3 // 16, args.height * 3 // 16, args.width * 5 // 8, args.height * 5 // 8)
    t0 = time.perf_counter()
    profile = calibrate([render(c) for c in good_captures(8)], "BENCH-0001", "bench", roi=roi, bit_depth=bits)
    calibrate_ms = (time.perf_counter() - t0) * 1000

    frames = [render(c) for c in good_captures(9, seed=500, jitter_px=4.0, jitter_deg=0.5)]
    frames += [render(c) for c in (Capture(gain=0.6), Capture(gain=1.5), Capture(contrast=0.3),
                                   Capture(blur_sigma=3.0), Capture(dx=30.0), Capture(angle_deg=3.0),
                                   Capture(noise=0.05))]
    for f in frames:  # warm-up: builds the registrar and the profile's content hash once
        check_frame(profile, f)

    times = np.empty(args.frames)
    for i in range(args.frames):
        frame = frames[i % len(frames)]
        t = time.perf_counter()
        check_frame(profile, frame)
        times[i] = (time.perf_counter() - t) * 1000

    registrar = _compiled(profile).registrar
    greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 else f for f in frames]
    reg_times = np.empty(args.frames)
    for i in range(args.frames):
        grey = greys[i % len(greys)]
        t = time.perf_counter()
        registrar.register(grey)
        reg_times[i] = (time.perf_counter() - t) * 1000

    print(f"spec_checks {args.width}x{args.height} {args.pixel_format} frames={args.frames} "
          f"cv2_threads={cv2.getNumThreads()}")
    print(f"calibrate_8_images_ms {calibrate_ms:.0f}")
    print(f"check_frame   {_percentiles(times)}")
    print(f"  registration {_percentiles(reg_times)}")


if __name__ == "__main__":
    main()
