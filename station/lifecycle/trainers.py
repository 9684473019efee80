"""Training a model from a dataset version: one entry per model type in :data:`TRAINERS`.

A trainer takes the good images of the train split (a lazy sequence: images are read from
the dataset's blob store, hash-checked, when the model asks for them) and returns a model
the registry can save. After training, the threshold is re-chosen on the validation split
(:mod:`station.lifecycle.threshold`) and the model is saved with its lineage: dataset
name, version and manifest hash, model type and parameters.
"""
from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.roi import Roi
from station.datasets.store import Dataset, DatasetEntry, DatasetStore
from station.detect.registry import ModelRegistry
from station.lifecycle.align import Aligner, aligner_from_profile, load_profile
from station.lifecycle.threshold import ThresholdChoice, select_threshold

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class TrainError(ValueError):
    """The model cannot be trained from this dataset as asked."""


class LazyImages(Sequence[np.ndarray]):
    """Dataset images read on access, with a progress tick per read."""

    def __init__(self, store: DatasetStore, entries: Sequence[DatasetEntry], on_read: Callable[[], None] | None = None):
        self.store, self.entries, self.on_read = store, list(entries), on_read

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        img = self.store.read_image(self.entries[i])
        if self.on_read is not None:
            self.on_read()
        return img


@dataclass(frozen=True)
class Trainer:
    """How to train one model type: ``train(module, images, params, progress, roi, alignments) -> model``."""

    model_type: str
    module: str  # imported on use, so a model family that is not installed fails only when asked for
    train: Callable[..., Any]
    passes: int  # how often the trainer reads the image sequence (for the progress bar)


def _train_variation(mod: Any, images: Sequence[np.ndarray], params: dict[str, Any], progress: Progress,
                     roi: Roi | None, alignments: list | None) -> Any:
    return mod.VariationModel.train(images, roi=roi, alignments=alignments,
                                    params=mod.VariationParams.from_dict(params))


def _train_patchcore(mod: Any, images: Sequence[np.ndarray], params: dict[str, Any], progress: Progress,
                     roi: Roi | None, alignments: list | None) -> Any:
    return mod.PatchCoreModel.train(images, roi=roi, alignments=alignments, params=mod.PatchCoreParams.from_dict(params),
                                    progress=lambda done, total: progress("training", done, total))


TRAINERS: dict[str, Trainer] = {
    "variation": Trainer("variation", "station.detect.variation", _train_variation, passes=2),
    "patchcore": Trainer("patchcore", "station.detect.patchcore", _train_patchcore, passes=2),  # features, then held-out scoring
}


def with_threshold(model: Any, threshold: float, choice: ThresholdChoice) -> Any:
    """The same model with another threshold (a new model: the threshold is part of its hash)."""
    arrays, meta = model.to_state()
    if "threshold" not in meta:
        return model
    meta = {**meta, "threshold": float(threshold), "model_id": None, "model_hash": None}
    training = dict(meta.get("training") or {})
    training["model_threshold"] = float(model.threshold)
    training["threshold_selection"] = choice.to_json()
    training["threshold_rule"] = choice.rule
    meta["training"] = training
    return type(model).from_state(arrays, meta)


def choose_threshold(model: Any, store: DatasetStore, validation: Sequence[DatasetEntry],
                     aligner: Aligner | None = None) -> ThresholdChoice:
    good, bad = [], []
    for e in validation:
        img = store.read_image(e)
        score = float(model.detect(img, alignment=aligner(img) if aligner else None).score)
        (good if e.is_good else bad).append(score)
    return select_threshold(good, bad, float(model.threshold))


def train_from_dataset(store: DatasetStore, dataset: Dataset, registry: ModelRegistry, *, model_type: str,
                       params: dict[str, Any] | None = None, progress: Progress | None = None,
                       calibration: str | None = None) -> tuple[str, Any, ThresholdChoice]:
    """Train, choose the threshold, save with lineage; return (model id, model, threshold choice).

    ``calibration`` (a profile label, ``SERIAL/RECIPE@vN``) registers every image to that
    profile's reference and uses its ROI, as the live cycle does: use it for datasets of
    the station's own captures, so the model's scores mean the same offline and online.
    """
    trainer = TRAINERS.get(model_type)
    if trainer is None:
        raise TrainError(f"unknown model type {model_type!r} (known: {', '.join(sorted(TRAINERS))})")
    try:
        mod = importlib.import_module(trainer.module)
    except ImportError as e:
        raise TrainError(f"model type {model_type!r} is not available in this install: {e}") from e
    progress = progress or (lambda stage, done, total: None)
    goods = [e for e in dataset.split("train") if e.is_good]
    if not goods:
        raise TrainError(f"dataset {dataset.info.ref} has no good images in its train split")
    aligner = roi = alignments = None
    if calibration:
        profile = load_profile(store.root.parent, calibration)
        aligner, roi, calibration = aligner_from_profile(profile), profile.roi, profile.label
        alignments = [aligner(img) for img in LazyImages(store, goods)]
    total = len(goods) * trainer.passes
    done = [0]

    def tick() -> None:
        done[0] += 1
        progress("reading images", min(done[0], total), total)

    t0 = time.perf_counter()
    try:
        model = trainer.train(mod, LazyImages(store, goods, tick), dict(params or {}), progress, roi, alignments)
    except ValueError as e:  # bad parameters, too few images, mixed image sizes
        raise TrainError(f"cannot train {model_type} on {dataset.info.ref}: {e}") from e
    train_s = time.perf_counter() - t0
    validation = dataset.split("validation")
    progress("choosing threshold", 0, len(validation))
    choice = choose_threshold(model, store, validation, aligner)
    model = with_threshold(model, choice.value, choice)  # records the choice even when the value stays
    progress("choosing threshold", len(validation), len(validation))
    info = dataset.info
    lineage = {
        "name": info.name, "version": info.version, "ref": info.ref, "manifest_sha256": info.manifest_sha256,
        "train_images": len(goods), "params": dict(params or {}), "model_type": model_type,
        "train_seconds": round(train_s, 3), "threshold": choice.to_json(),
        **({"calibration": calibration} if calibration else {}),
    }
    model_id = registry.save(model, dataset=lineage)
    return model_id, model, choice
