"""What shadow mode costs the cycle: the same station with and without a SHADOW model.

1280x1024 Mono8 sim frames, variation models, the real runtime (SQLite WAL + FULL, fsynced
PNGs). Runs alternating blocks without and with a shadow model (a second variation model
trained on other good parts), so machine noise hits both alike, and prints detect and
total p50 / p99 for each and their ratio (shadow / no shadow).

    python bench/shadow.py [--count 200] [--rounds 2] [--json]

With --json the last line is one JSON object: frames_per_mode, no_shadow / shadow
({detect_p50_ms, detect_p99_ms, total_p50_ms, total_p99_ms}), detect_p50_ratio,
total_p50_ratio, total_p99_ratio, shadow_skipped (parts the shadow was still busy or late).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.profile import ProfileStore  # noqa: E402
from calibration.spec import check_frame  # noqa: E402
from station.config import parse_config  # noqa: E402
from station.detect.registry import ModelRegistry  # noqa: E402
from station.detect.variation import VariationModel  # noqa: E402
from station.runtime import StationRuntime  # noqa: E402


def config():
    data = {"schema_version": 1,
            "camera": {"type": "sim", "width": 1280, "height": 1024, "pixel_format": "Mono8", "seed": 1,
                       "defect_rate": 0.2},
            "detector": {"type": "variation", "train_images": 40}, "recipe": {"name": "bench"}}
    return parse_config(yaml.safe_dump(data), "bench.yaml")


def pct(v: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(v), q)), 3) if v else float("nan")


def run_block(data: Path, count: int, sink: dict[str, list[float]]) -> int:
    rt = StationRuntime.open(config(), data, progress=lambda m: print(m, file=sys.stderr))
    skipped = 0
    try:
        list(rt.run(count=5))  # warm-up
        for out in rt.run(count=count):
            if out.timings_ms.get("detect", 0.0) == 0.0:
                continue
            sink["detect"].append(out.timings_ms["detect"])
            sink["total"].append(out.timings_ms["total"])
            sh = out.detection.extra.get("shadow") if out.detection else None
            skipped += bool(sh and ("skipped" in sh or "error" in sh))
            if sh and "waited_ms" in sh:
                sink.setdefault("waited", []).append(sh["waited_ms"])
                sink.setdefault("shadow_latency", []).append(sh["latency_ms"])
    finally:
        rt.close()
    return skipped


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200, help="timed inspections per mode")
    ap.add_argument("--rounds", type=int, default=2, help="alternating blocks per mode")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ls-bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        data = Path(tmp) / "data"
        rt = StationRuntime.open(config(), data, progress=lambda m: print(m, file=sys.stderr))
        profile = ProfileStore(data / "calibration").latest(rt.camera.describe().serial, "bench")
        images = rt.camera.good_images(40, start=200_000)
        t0 = time.perf_counter()
        shadow = VariationModel.train(images, roi=profile.roi,
                                      alignments=[check_frame(profile, i).alignment for i in images])
        print(f"shadow model trained in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        rt.close()
        registry = ModelRegistry(data / "models")
        shadow_id = registry.save(shadow)
        modes = {"no_shadow": {"detect": [], "total": []}, "shadow": {"detect": [], "total": []}}
        skipped = 0
        per_block = max(1, args.count // args.rounds)
        for _ in range(args.rounds):
            for mode in ("no_shadow", "shadow"):
                registry.set_shadow(shadow_id if mode == "shadow" else None)
                s = run_block(data, per_block, modes[mode])
                skipped += s if mode == "shadow" else 0
    fig: dict = {"frames_per_mode": per_block * args.rounds, "shadow_skipped": skipped}
    for mode, d in modes.items():
        fig[mode] = {f"{k}_p{q}_ms": pct(v, q) for k, v in d.items() for q in (50, 99)}
    a, b = fig["no_shadow"], fig["shadow"]
    fig["detect_p50_ratio"] = round(b["detect_p50_ms"] / a["detect_p50_ms"], 3)
    fig["total_p50_ratio"] = round(b["total_p50_ms"] / a["total_p50_ms"], 3)
    fig["total_p99_ratio"] = round(b["total_p99_ms"] / a["total_p99_ms"], 3)
    print(f"{'mode':<10} {'detect p50':>10} {'detect p99':>10} {'total p50':>10} {'total p99':>10}")
    for mode in ("no_shadow", "shadow"):
        m = fig[mode]
        print(f"{mode:<10} {m['detect_p50_ms']:>10.2f} {m['detect_p99_ms']:>10.2f} "
              f"{m['total_p50_ms']:>10.2f} {m['total_p99_ms']:>10.2f}")
    print(f"shadow / no shadow: detect p50 {fig['detect_p50_ratio']}x, total p50 {fig['total_p50_ratio']}x, "
          f"total p99 {fig['total_p99_ratio']}x; shadow late/busy on {skipped} parts")
    if args.json:
        print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
