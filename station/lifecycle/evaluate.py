"""Evaluating a model on one split of a dataset version: the numbers the gate reads.

``evaluate_model`` runs the model on every image of the split exactly as the station does
(one ``detect`` call per image, timed) and returns one JSON-able dict:

- ``image_auroc``: ranking of image scores, defect vs good (null if a class is missing);
- ``pixel_auroc``: the heatmaps against the defect masks over every image of the split
  (good images count with an empty mask); null when the split has no masks or the model
  gives no heatmap;
- ``precision``, ``recall``, ``f1``, ``false_reject_rate`` and ``confusion_matrix`` of
  the model's own verdict (``IsAnomalous``: score above its threshold);
- ``latency_ms_p50`` / ``latency_ms_p99`` of ``detect``;
- ``threshold``: its value and how it was chosen (see :mod:`station.lifecycle.threshold`);
- ``scores``: every good and defect score (the reference distribution score-drift
  monitoring compares the line's recent scores against).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import cv2
import numpy as np

from station.datasets.store import Dataset, DatasetStore
from station.detect.metrics import auroc, binary_counts, latency_summary, pixel_auroc
from station.lifecycle.threshold import FALLBACK_RULE

MAP_MAX_SIDE = 256  # heatmaps and masks are compared at this size (bounded memory, same ranking)


def _small(a: np.ndarray, interpolation: int) -> np.ndarray:
    h, w = a.shape[:2]
    s = MAP_MAX_SIDE / max(h, w)
    if s >= 1:
        return a
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interpolation)


def threshold_info(model: Any) -> dict[str, Any]:
    training = getattr(model, "training", None) or {}
    sel = training.get("threshold_selection")
    return {
        "value": float(model.threshold),
        "rule": training.get("threshold_rule", FALLBACK_RULE),
        "selection": sel,
        "explanation": (
            "A part is called defective when its image score is above the threshold. At training "
            "time the threshold is chosen for the lowest false-reject rate that misses no defect in "
            "the validation split: the model's own threshold (learned from held-out good images "
            "only: max held-out good score x margin) when it already achieves that, as it is the "
            "more sensitive choice, else halfway between the lowest validation defect score and the "
            "highest good score below it. Without validation defects the model's own threshold stays."
        ),
    }


def evaluate_model(model: Any, store: DatasetStore, dataset: Dataset, *, split: str = "test",
                   progress: Callable[[int, int], None] | None = None,
                   aligner: Callable[[np.ndarray], np.ndarray | None] | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``split`` of ``dataset``; raise ValueError if the split is empty.

    ``aligner`` registers each image as the live cycle does (for models trained on
    registered frames, see :mod:`station.lifecycle.align`); it is not timed.
    """
    entries = dataset.split(split)
    if not entries:
        raise ValueError(f"dataset {dataset.info.ref} has no {split!r} images "
                         f"(counts: {dataset.info.counts.get(split)})")
    labels, scores, verdicts, latencies = [], [], [], []
    maps, masks = [], []
    has_masks = any(e.mask is not None for e in entries)
    per_class: dict[str, list[int]] = {}
    for i, e in enumerate(entries, 1):
        img = store.read_image(e)
        alignment = aligner(img) if aligner is not None else None
        t0 = time.perf_counter()
        res = model.detect(img, alignment=alignment)
        latencies.append(time.perf_counter() - t0)
        labels.append(0 if e.is_good else 1)
        scores.append(float(res.score))
        verdicts.append(bool(res.is_anomalous))
        per_class.setdefault(e.label, []).append(int(res.is_anomalous))
        if has_masks and res.heatmap is not None:
            mask = store.read_mask(e)
            if mask is None:
                mask = np.zeros(img.shape[:2], bool)
            maps.append(_small(np.asarray(res.heatmap, np.float32), cv2.INTER_AREA))
            masks.append(_small(mask.astype(np.uint8), cv2.INTER_NEAREST))
        if progress is not None:
            progress(i, len(entries))
    y = np.asarray(labels)
    both = 0 < int(y.sum()) < len(y)
    counts = binary_counts(y, verdicts)
    pix = None
    if maps and len(maps) == len(entries) and any(m.any() for m in masks):
        pix = pixel_auroc(maps, masks)
    lat = latency_summary(latencies)
    return {
        "model": model.model_id,
        "model_type": getattr(model, "model_type", ""),
        "model_hash": model.model_hash,
        "dataset": dataset.info.ref,
        "dataset_manifest_sha256": dataset.info.manifest_sha256,
        "split": split,
        "registered": aligner is not None,
        "n_images": len(entries),
        "n_good": int(len(y) - y.sum()),
        "n_defect": int(y.sum()),
        "image_auroc": auroc(y, scores) if both else None,
        "pixel_auroc": pix,
        "precision": counts.precision,
        "recall": counts.recall,
        "f1": counts.f1,
        "false_reject_rate": counts.false_reject_rate,
        "confusion_matrix": {"tp": counts.tp, "fp": counts.fp, "tn": counts.tn, "fn": counts.fn,
                             "matrix": counts.matrix(),
                             "layout": "[[good called good, good called defect], "
                                       "[defect called good, defect called defect]]"},
        "flagged_by_class": {k: {"flagged": sum(v), "of": len(v)} for k, v in sorted(per_class.items())},
        "latency_ms_p50": lat["p50"],
        "latency_ms_p99": lat["p99"],
        "threshold": threshold_info(model),
        "scores": {"good": [round(s, 6) for s, l in zip(scores, labels) if l == 0],
                   "defect": [round(s, 6) for s, l in zip(scores, labels) if l == 1]},
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
