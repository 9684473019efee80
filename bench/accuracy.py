"""Accuracy and speed of the anomaly models on a real data set (BSData ball screw drives).

    .venv/bin/python bench/accuracy.py [--data DIR] [--n-train N] [--json] [--param key=value ...]

Trains the PatchCore model and the variation model on ``train/good`` of a folder in the
common anomaly layout (default ``../shared/datasets/bsdata/ball_screw_drive``, listed by the
``manifest.csv`` beside it; images are read in place, never copied), evaluates both on
``test/*`` with the masks in ``ground_truth/`` and prints per model: image AUROC, pixel
AUROC, PRO (per-region overlap up to 30 % FPR), precision / recall / F1 and the confusion
matrix at the model's own threshold, training time, and detect() latency p50 / p99 on the
test images. It then times PatchCore separately on 1280x1024 Mono8 frames from the
simulated camera (the size the latency target is set for), with a matrix-product
baseline measured in the same run so numbers from a noisy machine can be compared.

Pixel metrics use the detectors' heatmaps (as ``linestation evaluate`` does), compared with
the masks at ``--map-side`` pixels on the long side. The variation model is a golden
template that expects registered parts; BSData images are not registered, so it runs with
identity alignment here (stated in the output): its numbers show what it does without a
registration step, not its best case. With ``--json`` the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from station.capture.sim_camera import SimCamera, render_good  # noqa: E402
from station.detect.metrics import (  # noqa: E402
    auroc,
    latency_summary,
    pixel_auroc,
    precision_recall_f1,
    pro_score,
)
from station.detect.patchcore import PatchCoreModel, PatchCoreParams  # noqa: E402
from station.detect.variation import VariationModel, VariationParams  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "bsdata" / "ball_screw_drive"


class LazyImages:
    """Images decoded on access (training reads them twice; 500 BSData frames are 800 MB)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        img = cv2.imread(str(self.paths[i]), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"{self.paths[i]}: not a readable image")
        return img


def read_manifest(data: Path) -> dict[str, list[tuple[Path, Path | None]]]:
    """``{"train": [(image, None)], "test_good": [...], "test_defect": [(image, mask)]}``."""
    manifest = data.parent / "manifest.csv"
    out: dict[str, list[tuple[Path, Path | None]]] = {"train": [], "test_good": [], "test_defect": []}
    if manifest.is_file():
        with open(manifest, newline="") as f:
            for row in csv.DictReader(f):
                if not row["path"].startswith(data.name + "/"):
                    continue
                p = data.parent / row["path"]
                if row["split"] == "train" and row["label"] == "good":
                    out["train"].append((p, None))
                elif row["split"] == "test" and row["label"] == "good":
                    out["test_good"].append((p, None))
                elif row["split"] == "test" and row["label"] == "defect":
                    out["test_defect"].append((p, data.parent / row["mask"] if row["mask"] else None))
    else:  # plain anomaly layout without a manifest
        out["train"] = [(p, None) for p in sorted((data / "train" / "good").iterdir())]
        out["test_good"] = [(p, None) for p in sorted((data / "test" / "good").iterdir())]
        for d in sorted((data / "test").iterdir()):
            if d.name != "good":
                for p in sorted(d.iterdir()):
                    m = data / "ground_truth" / d.name / f"{p.stem}_mask.png"
                    out["test_defect"].append((p, m if m.exists() else None))
    for k in out:
        out[k].sort()
    return out


def _small(a: np.ndarray, side: int, interp: int) -> np.ndarray:
    h, w = a.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return a
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def evaluate(model, tests: list[tuple[Path, Path | None, int]], map_side: int) -> dict[str, Any]:
    labels, scores, maps, masks, times = [], [], [], [], []
    for img, _ in zip(LazyImages([p for p, _, _ in tests[:3]]), range(3)):
        model.detect(img)  # warm-up
    for (path, mask_path, label) in tests:
        img = LazyImages([path])[0]
        t = time.perf_counter()
        r = model.detect(img)
        times.append(time.perf_counter() - t)
        labels.append(label)
        scores.append(r.score)
        maps.append(_small(r.heatmap.astype(np.float32), map_side, cv2.INTER_AREA))
        if mask_path is not None:
            m = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
            if m is None or m.shape != img.shape[:2]:
                raise ValueError(f"{mask_path}: unreadable or not the size of {path}")
        else:
            m = np.zeros(img.shape[:2], np.uint8)
        masks.append(_small(m, map_side, cv2.INTER_NEAREST))
    counts = precision_recall_f1(labels, scores, model.threshold)
    lat = latency_summary(times)
    # For context only: the best F1 any threshold would reach on this test set (an oracle).
    best_f1 = max(precision_recall_f1(labels, scores, t).f1 for t in sorted(set(scores))[:-1] or [model.threshold])
    return {
        "image_auroc": auroc(labels, scores),
        "pixel_auroc": pixel_auroc(maps, masks),
        "pro_30": pro_score(maps, masks, max_fpr=0.3),
        "precision": counts.precision,
        "recall": counts.recall,
        "f1": counts.f1,
        "confusion_matrix": counts.matrix(),
        "f1_best_threshold_oracle": best_f1,
        "threshold": model.threshold,
        "latency_ms_p50": lat["p50"],
        "latency_ms_p99": lat["p99"],
        "n_test": len(tests),
    }


def frame_latency(params: PatchCoreParams, n: int) -> dict[str, Any]:
    """PatchCore detect() on 1280x1024 Mono8 sim frames (20% with defects)."""
    good = render_good(40, seed=1, width=1280, height=1024)  # enough patches for a full-size bank
    model = PatchCoreModel.train(good, params=params)
    cam = SimCamera(width=1280, height=1024, defect_rate=0.2, seed=2)
    frames = [cam.render(i, fault=None)[0] for i in range(16)]
    for f in frames[:4]:
        model.detect(f)
    times = []
    for i in range(n):
        t = time.perf_counter()
        model.detect(frames[i % len(frames)])
        times.append(time.perf_counter() - t)
    # Baseline on the same machine in the same run: one 1024^3 float32 matrix product.
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    base = []
    for _ in range(9):
        t = time.perf_counter()
        a @ a
        base.append(time.perf_counter() - t)
    lat = latency_summary(times)
    base_ms = float(np.median(base) * 1000)
    return {"frame": "1280x1024 Mono8", "latency_ms_p50": lat["p50"], "latency_ms_p99": lat["p99"], "n": n,
            "baseline_matmul1024_ms": base_ms, "p50_over_baseline": lat["p50"] / base_ms,
            "bank_size": model.training["bank_size"], "window": model.training["window"]}


def parse_params(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = json.loads(v) if v not in ("",) else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n-train", type=int, default=0, help="use the first N training images (0 = all)")
    ap.add_argument("--n-test", type=int, default=0, help="use every k-th test image to keep N (0 = all)")
    ap.add_argument("--param", action="append", default=[], help="PatchCoreParams override, key=JSON value")
    ap.add_argument("--map-side", type=int, default=512)
    ap.add_argument("--frames", type=int, default=100, help="1280x1024 frames to time (0 = skip)")
    ap.add_argument("--skip-variation", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    if not args.data.is_dir():
        print(f"no data set at {args.data}", file=sys.stderr)
        return 2
    split = read_manifest(args.data)
    train = [p for p, _ in split["train"]]
    if args.n_train:
        train = train[: args.n_train]
    tests = [(p, None, 0) for p, _ in split["test_good"]] + [(p, m, 1) for p, m in split["test_defect"]]
    if args.n_test and args.n_test < len(tests):
        tests = tests[:: max(1, len(tests) // args.n_test)]
    params = PatchCoreParams.from_dict({**PatchCoreParams().to_dict(), **parse_params(args.param)})
    fig: dict[str, Any] = {"data": str(args.data), "n_train": len(train), "cpus": os.cpu_count(),
                           "patchcore_params": params.to_dict()}
    print(f"data {args.data}: {len(train)} train good, {len(split['test_good'])} test good, "
          f"{len(split['test_defect'])} test defect; cpus {os.cpu_count()}")

    runs = [("patchcore", lambda imgs: PatchCoreModel.train(imgs, params=params))]
    if not args.skip_variation:
        runs.append(("variation", lambda imgs: VariationModel.train(imgs, params=VariationParams())))
    for name, trainer in runs:
        t0 = time.perf_counter()
        model = trainer(LazyImages(train))
        train_s = time.perf_counter() - t0
        res = evaluate(model, tests, args.map_side)
        res["train_seconds"] = train_s
        if name == "patchcore":
            res["bank_size"] = model.training["bank_size"]
            res["model_bytes"] = int(sum(a.nbytes for a in model.to_state()[0].values()))
        else:
            res["alignment"] = "identity (BSData images are not registered)"
        fig[name] = res
        note = f"  [{res['alignment']}]" if "alignment" in res else ""
        print(f"{name:9s}: image AUROC {res['image_auroc']:.4f}  pixel AUROC {res['pixel_auroc']:.4f}  "
              f"PRO30 {res['pro_30']:.4f}  F1 {res['f1']:.3f} (P {res['precision']:.3f} R {res['recall']:.3f}, "
              f"[[tn fp] [fn tp]] {res['confusion_matrix']}; oracle-threshold F1 {res['f1_best_threshold_oracle']:.3f})  train {train_s:.1f} s  "
              f"detect p50 {res['latency_ms_p50']:.1f} ms p99 {res['latency_ms_p99']:.1f} ms{note}")
    if args.frames:
        fl = frame_latency(params, args.frames)
        fig["patchcore_1280x1024"] = fl
        print(f"patchcore on 1280x1024 Mono8: detect p50 {fl['latency_ms_p50']:.1f} ms  p99 "
              f"{fl['latency_ms_p99']:.1f} ms (n={fl['n']}); baseline 1024^3 matmul {fl['baseline_matmul1024_ms']:.1f} ms, "
              f"p50/baseline {fl['p50_over_baseline']:.2f}")
    if args.json:
        print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
