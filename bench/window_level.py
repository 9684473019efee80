"""Window / level cost: mapping one uint16 frame to 8 bits for the screen.

The live view maps every new 16-bit frame, and every drag step re-maps the frame on screen,
on the GUI thread; this measures what that costs at two detector sizes, against a plain
copy of an 8-bit frame of the same size (what an 8-bit camera costs the view: the baseline).

Measured, in one run, on random frames (the cost does not depend on the content):

- ``cv2``: ``cv2.subtract`` (saturating) then ``cv2.convertScaleAbs`` - what
  :func:`station.display_window.apply_window` uses;
- ``numpy_take``: ``numpy.take`` on a 65536-entry uint8 table (:func:`window_lut`);
- ``copy8``: ``numpy.copyto`` of an 8-bit frame (the baseline).

``cv2.LUT`` is not measured: it only takes 8-bit input. Printed: median and p99 in ms,
and each method's median as a multiple of the baseline's. ``--json``: the last line is one
JSON object with those figures.

    .venv/bin/python bench/window_level.py [--repeats 200] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from station.display_window import GreyWindow, apply_window, window_lut  # noqa: E402

SIZES = ((1280, 1024), (2048, 2048))


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up (first-call allocations, OpenCV thread pool)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def measure(width: int, height: int, repeats: int, seed: int = 0) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    frame16 = rng.integers(0, 65536, (height, width), dtype=np.uint16)
    frame8 = rng.integers(0, 256, (height, width), dtype=np.uint8)
    window = GreyWindow(4000, 52000)
    lut = window_lut(window)
    out8 = np.empty((height, width), np.uint8)
    assert np.array_equal(apply_window(frame16, window), np.take(lut, frame16))  # same picture
    methods = {
        "copy8": lambda: np.copyto(out8, frame8),
        "cv2": lambda: apply_window(frame16, window),
        "numpy_take": lambda: np.take(lut, frame16, out=out8),
    }
    # interleave the methods round by round: a busy neighbour on the shared cores slows
    # all of them alike instead of whichever happened to run at that moment
    samples: dict[str, list[float]] = {k: [] for k in methods}
    rounds = 10
    for _ in range(rounds):
        for name, fn in methods.items():
            samples[name].extend(timed(fn, max(1, repeats // rounds)))
    base = statistics.median(samples["copy8"])
    result = {}
    for name, ts in samples.items():
        med = statistics.median(ts)
        result[name] = {"median_ms": round(med, 4), "p99_ms": round(pct(ts, 99), 4),
                        "x_baseline": round(med / base, 2) if base > 0 else None}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = p.parse_args(argv)
    report: dict[str, object] = {"repeats": args.repeats, "window": [4000, 52000]}
    for w, h in SIZES:
        r = measure(w, h, args.repeats)
        report[f"{w}x{h}"] = r
        print(f"{w}x{h} uint16 -> uint8 (median / p99 ms, x = median vs the 8-bit copy)")
        for name, v in r.items():
            print(f"  {name:11s} {v['median_ms']:8.3f} / {v['p99_ms']:8.3f}   x{v['x_baseline']}")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
