"""Benchmark the variation model on 1280x1024 Mono8 frames with alignment.

    .venv/bin/python bench/variation.py [--n-train 40] [--n-detect 300] [--downscale 2]

Prints the training time and detect() p50 / p99 in milliseconds for good and defective
frames (target: p50 <= 12 ms on a 2-core station PC).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from station.detect.variation import VariationModel, VariationParams  # noqa: E402

W, H = 1280, 1024


def reference() -> np.ndarray:
    img = np.full((H, W), 55.0, np.float32)
    cv2.rectangle(img, (240, 190), (1040, 830), 165.0, -1, cv2.LINE_AA)
    for i in range(10):
        cv2.line(img, (300, 260 + 50 * i), (480, 260 + 50 * i), 120.0, 6, cv2.LINE_AA)
    cv2.putText(img, "LS-0042", (560, 560), cv2.FONT_HERSHEY_SIMPLEX, 2.4, 90.0, 4, cv2.LINE_AA)
    cv2.circle(img, (900, 400), 80, 200.0, 6, cv2.LINE_AA)
    for x, y in ((400, 360), (880, 360), (400, 680), (880, 680)):
        cv2.circle(img, (x, y), 28, 30.0, -1, cv2.LINE_AA)
    xx = np.arange(W, dtype=np.float32)[None, :]
    return img * (0.9 + 0.2 * xx / W)


def alignment(rng: np.random.Generator) -> np.ndarray:
    a = cv2.getRotationMatrix2D((W / 2, H / 2), float(rng.uniform(-0.4, 0.4)), 1.0)
    a[:, 2] += rng.uniform(-3, 3, size=2)
    return a


def capture(ref: np.ndarray, a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = cv2.warpAffine(ref, a, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_REPLICATE)
    f += rng.normal(0, 2.5, f.shape).astype(np.float32)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"p50 {np.percentile(a, 50):6.2f} ms  p99 {np.percentile(a, 99):6.2f} ms  max {a.max():6.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-detect", type=int, default=300)
    ap.add_argument("--downscale", type=int, default=2)
    args = ap.parse_args()

    rng = np.random.default_rng(1)
    ref = reference()
    aligns = [alignment(rng) for _ in range(args.n_train)]
    train = [capture(ref, a, rng) for a in aligns]
    t0 = time.perf_counter()
    model = VariationModel.train(train, alignments=aligns, params=VariationParams(downscale=args.downscale))
    train_s = time.perf_counter() - t0

    bad_ref = ref.copy()
    cv2.line(bad_ref, (600, 700), (680, 730), 110.0, 3, cv2.LINE_AA)
    pool = [(capture(ref, a, rng), a) for a in (alignment(rng) for _ in range(16))]
    bad_pool = [(capture(bad_ref, a, rng), a) for a in (alignment(rng) for _ in range(16))]

    for img, a in pool[:5]:  # warm-up (allocations, OpenCV thread pool)
        model.detect(img, alignment=a)
    timings = {"good": [], "defective": []}
    verdicts = {"good": 0, "defective": 0}
    for i in range(args.n_detect):
        for kind, src in (("good", pool), ("defective", bad_pool)):
            img, a = src[i % len(src)]
            t = time.perf_counter()
            r = model.detect(img, alignment=a)
            timings[kind].append((time.perf_counter() - t) * 1000)
            verdicts[kind] += r.is_anomalous

    print(f"variation model, {W}x{H} Mono8, downscale {args.downscale}, "
          f"cv2 threads {cv2.getNumThreads()}, cpus {os.cpu_count()}")
    print(f"train: {args.n_train} images in {train_s:.2f} s "
          f"(threshold {model.threshold:.3f}, good scores {model.training['good_scores']})")
    for kind in ("good", "defective"):
        print(f"detect {kind:9s}: {percentiles(timings[kind])}  "
              f"anomalous {verdicts[kind]}/{args.n_detect}")


if __name__ == "__main__":
    main()
