"""Micro-benchmark of the Record step (prints numbers; not a pass/fail test).

    .venv/bin/python bench/record.py [--n 300] [--data-dir DIR] [--compact] [--heatmap]

Measures, on a real SQLite file with WAL + synchronous=FULL:
  (a) image: PNG encode + write + fsync + rename + dir fsync, 1280x1024 Mono8
  (b) commit: the one transaction (inspection, spec results, audit entry, outbox rows)
  (c) total: record_inspection end to end (image + commit)
Targets: commit p99 <= 10 ms, total p50 <= 12 ms.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station.store.images import ImageStore, PngOptions  # noqa: E402
from station.store.record import InspectionRecord  # noqa: E402
from station.store.station_store import StationStore  # noqa: E402

H, W = 1024, 1280
DECISIONS = ("pass", "pass", "pass", "reject", "review", "check_capture")


def part_image(rng: np.random.Generator) -> np.ndarray:
    """A camera-like Mono8 frame: lit background, a part, sensor noise."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = 90 + 40 * (xx / W) + 20 * (yy / H)
    cv2.circle(img, (W // 2, H // 2), 300, 180, -1)
    cv2.rectangle(img, (500, 400), (780, 620), 60, -1)
    img = img + rng.normal(0, 2.5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def record_for(i: int, rng: np.random.Generator) -> InspectionRecord:
    decision = DECISIONS[i % len(DECISIONS)]
    now = time.time()
    return InspectionRecord(
        station="station1", recipe="demo", part_id=f"P{i:06d}", lot="L1",
        decision=decision, started_at=now - 0.03, finished_at=now,
        config_hash="c" * 16, calibration_version="cal-3", model_id="padim",
        model_version="7", model_hash="m" * 16,
        camera={"serial": "SIM-1", "pixel_format": "Mono8", "exposure_us": 5000.0,
                "gain_db": 0.0, "trigger_id": i, "trigger_mode": "software"},
        score=float(rng.random()), is_anomalous=decision == "reject", confidence=0.9,
        detection={"DetectAnomalyResult": {"IsAnomalous": decision == "reject", "Confidence": 0.9,
                                           "Anomalies": [{"Name": "background", "PixelAnomaly":
                                                          {"TotalPercentageArea": 0.99, "Color": "#FFFFFF"}}]},
                   "score": 0.3, "threshold": 0.5},
        spec_checks=[{"name": n, "value": float(rng.random()) * 100, "low": 10.0, "high": 90.0,
                      "passed": True, "unit": "DN", "message": ""}
                     for n in ("brightness", "clipping", "contrast", "focus", "position", "noise")],
        timings_ms={"capture": 12.0, "checks": 4.0, "detect": 8.0},
    )


def pct(xs: list[float]) -> str:
    a = np.asarray(xs)
    return (f"p50 {np.percentile(a, 50):6.2f} ms  p99 {np.percentile(a, 99):6.2f} ms  "
            f"max {a.max():6.2f} ms  (n={len(a)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temp dir on /tmp's disk")
    ap.add_argument("--compact", action="store_true", help="PngOptions.compact() instead of fast")
    ap.add_argument("--heatmap", action="store_true", help="also store a heatmap per record")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    base = part_image(rng)
    png = PngOptions.compact() if args.compact else PngOptions.fast()

    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        root = Path(tmp)
        # (a) the image layer alone
        images = ImageStore(root / "images-only", png=png)
        t_img, sizes = [], []
        for i in range(args.n):
            img = base.copy()
            img[0, :8] = np.frombuffer(i.to_bytes(8, "little"), np.uint8)  # unique content
            t0 = time.perf_counter()
            s = images.put(img)
            t_img.append((time.perf_counter() - t0) * 1e3)
            sizes.append(s.nbytes)
        enc = []
        for _ in range(50):
            t0 = time.perf_counter()
            ImageStore.encode(base, png)
            enc.append((time.perf_counter() - t0) * 1e3)

        # (b, c) the whole record through the store
        store = StationStore(root / "station", png=png)
        heat = cv2.GaussianBlur(rng.random((H, W)).astype(np.float32), (0, 0), 25)
        heat = (heat - heat.min()) / (np.ptp(heat) + 1e-9)
        t_commit, t_total, t_image, t_fault = [], [], [], []
        for i in range(args.n):
            img = base.copy()
            img[1, :8] = np.frombuffer(i.to_bytes(8, "little"), np.uint8)
            rec = record_for(i, rng)
            if i % 25 == 24:  # a capture fault: no image
                rec.decision, rec.fault = "check_capture", {"kind": "timeout", "message": "no frame"}
                store.record_inspection(rec, None)
                t_fault.append(store.last_timings["total_ms"])
                continue
            store.record_inspection(rec, img, heat if args.heatmap else None)
            t = store.last_timings
            t_commit.append(t["commit_ms"])
            t_total.append(t["total_ms"])
            t_image.append(t["image_ms"])
        info = store.storage_info()
        store.close()

    print(f"data dir on: {args.data_dir or tempfile.gettempdir()}   "
          f"journal_mode={info['journal_mode']} synchronous={info['synchronous']}   "
          f"png={png}")
    print(f"PNG encode only 1280x1024 Mono8       {pct(enc)}")
    print(f"(a) image encode+write+fsync           {pct(t_img)}   {np.mean(sizes) / 1e6:.2f} MB/file")
    print(f"(b) DB commit alone (1 transaction)    {pct(t_commit)}")
    print(f"    image step inside record           {pct(t_image)}")
    print(f"(c) whole record (image + commit)      {pct(t_total)}")
    print(f"    capture-fault record (no image)    {pct(t_fault)}")


if __name__ == "__main__":
    main()
