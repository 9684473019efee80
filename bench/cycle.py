"""Cycle latency and throughput: 1280x1024 Mono8 frames from the simulated camera, variation model.

Runs the real station runtime (SQLite in WAL + synchronous=FULL, fsynced PNG images, the
outbox and audit rows) in a temporary data dir and prints per-stage latency (p50, p99, in
ms) and sustained throughput. The baseline measured in the same run is the bare cost of
the image write + fsync alone (what durability costs at the least), so the cycle's
overhead beyond it can be read as a ratio on a noisy shared machine.

    python bench/cycle.py [--count 300] [--defect-rate 0.2] [--json]

With --json the last line is one JSON object with the keys:
  frames, width, height, pixel_format, defect_rate,
  capture_p50_ms, capture_p99_ms, checks_p50_ms, checks_p99_ms, detect_p50_ms, detect_p99_ms,
  record_p50_ms, record_p99_ms, commit_p50_ms, commit_p99_ms, total_p50_ms, total_p99_ms,
  throughput_fps, baseline_image_write_p50_ms, total_over_baseline_p50,
  targets: {total_p50_ms: 30, total_p99_ms: 60, checks_p50_ms: 5, commit_p99_ms: 10}, targets_met
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station.config import parse_config  # noqa: E402
from station.runtime import StationRuntime  # noqa: E402
from station.store.images import ImageStore  # noqa: E402

TARGETS = {"total_p50_ms": 30.0, "total_p99_ms": 60.0, "checks_p50_ms": 5.0, "commit_p99_ms": 10.0}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def config(defect_rate: float):
    data = {
        "schema_version": 1,
        "camera": {"type": "sim", "width": 1280, "height": 1024, "pixel_format": "Mono8", "seed": 1,
                   "defect_rate": defect_rate},
        "detector": {"type": "variation", "train_images": 40},
        "recipe": {"name": "bench"},
    }
    return parse_config(yaml.safe_dump(data), "bench.yaml")


def baseline_image_write(data_dir: Path, frames: list[np.ndarray]) -> list[float]:
    store = ImageStore(data_dir)
    out = []
    for img in frames:
        t0 = time.perf_counter()
        store.put(img)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=300, help="inspections to time (after 10 warm-up)")
    ap.add_argument("--defect-rate", type=float, default=0.2)
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ls-bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        rt = StationRuntime.open(config(args.defect_rate), tmp / "data",
                                 progress=lambda m: print(m, file=sys.stderr))
        print(f"bootstrap (calibrate + train): {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        try:
            list(rt.run(count=10))  # warm-up: caches, first-touch allocations
            stages: dict[str, list[float]] = {k: [] for k in ("capture", "checks", "detect", "record", "total")}
            commit: list[float] = []
            decisions: dict[str, int] = {}
            frames = []
            t_run = time.perf_counter()
            for out in rt.run(count=args.count):
                for k in stages:
                    if k in ("checks", "detect") and out.timings_ms.get(k, 0.0) == 0.0:
                        continue  # stage skipped (capture fault / spec fail)
                    stages[k].append(out.timings_ms[k])
                commit.append(rt.store.last_timings.get("commit_ms", float("nan")))
                decisions[out.decision.value] = decisions.get(out.decision.value, 0) + 1
                if out.frame is not None and len(frames) < 50:
                    frames.append(out.frame.image)
            elapsed = time.perf_counter() - t_run
        finally:
            rt.close()
        base = baseline_image_write(tmp / "baseline", frames)

    fig = {"frames": args.count, "width": 1280, "height": 1024, "pixel_format": "Mono8",
           "defect_rate": args.defect_rate, "decisions": decisions}
    for k, v in stages.items():
        fig[f"{k}_p50_ms"] = round(pct(v, 50), 3)
        fig[f"{k}_p99_ms"] = round(pct(v, 99), 3)
    fig["commit_p50_ms"] = round(pct(commit, 50), 3)
    fig["commit_p99_ms"] = round(pct(commit, 99), 3)
    fig["throughput_fps"] = round(args.count / elapsed, 2)
    fig["baseline_image_write_p50_ms"] = round(statistics.median(base), 3)
    fig["total_over_baseline_p50"] = round(fig["total_p50_ms"] / fig["baseline_image_write_p50_ms"], 2)
    fig["targets"] = TARGETS
    fig["targets_met"] = {k: fig[k] <= v for k, v in TARGETS.items()}

    print(f"{'stage':<8} {'p50 ms':>8} {'p99 ms':>8}")
    for k in ("capture", "checks", "detect", "record", "commit", "total"):
        print(f"{k:<8} {fig[f'{k}_p50_ms']:>8.2f} {fig[f'{k}_p99_ms']:>8.2f}")
    print(f"throughput {fig['throughput_fps']:.1f} inspections/s over {args.count} "
          f"(decisions: {decisions})")
    print(f"baseline image write+fsync p50 {fig['baseline_image_write_p50_ms']:.2f} ms; "
          f"total/baseline {fig['total_over_baseline_p50']:.2f}x")
    print("targets: " + ", ".join(f"{k} <= {v} {'OK' if fig['targets_met'][k] else 'MISSED'}"
                                  for k, v in TARGETS.items()))
    if args.json:
        print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
