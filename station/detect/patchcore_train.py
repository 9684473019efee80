"""Training of :class:`~station.detect.patchcore.PatchCoreModel` (see that module for the method).

Steps and their share of ``progress(done, total)``: features of every image (one step
each), coreset selection (one step), held-out scoring of every image (one step each).
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from calibration.roi import Roi
from station.detect.onnx_backbone import OnnxBackbone, load_backbone
from station.detect.patchcore_features import (
    PatchFeaturizer,
    Window,
    channels_of,
    infer_bit_depth,
    layer_scales,
    to_input,
    window_image,
)
from station.detect.patchcore_search import NearestNeighbours, greedy_coreset

if TYPE_CHECKING:
    from station.detect.patchcore import PatchCoreModel, PatchCoreParams

_SCALE_SAMPLES = 8  # images whose features set the per-layer scale


def _validate(images: Sequence[np.ndarray], alignments, roi: Roi | None, min_images: int):
    n = len(images)
    if n < min_images:
        raise ValueError(f"need at least {min_images} good images to train, got {n}")
    first = np.asarray(images[0])
    channels_of(first)
    if alignments is None:
        alignments = [None] * n
    elif len(alignments) != n:
        raise ValueError(f"got {len(alignments)} alignments for {n} images")
    roi = roi or Roi.full(first.shape)
    if not roi.fits(first.shape):
        raise ValueError(f"ROI {roi.as_list()} does not fit the training images {first.shape[:2]}")
    return n, first, list(alignments), roi


def train_patchcore(
    cls: type[PatchCoreModel],
    images: Sequence[np.ndarray],
    *,
    roi: Roi | None,
    alignments: Sequence[np.ndarray | None] | None,
    params: PatchCoreParams,
    progress: Callable[[int, int], None] | None,
    backbone: OnnxBackbone | None,
) -> PatchCoreModel:
    """Build the model (called by :meth:`PatchCoreModel.train`)."""
    from station.detect.patchcore import MIN_TRAIN_IMAGES, _smooth

    t0 = time.perf_counter()
    n, first, alignments, roi = _validate(images, alignments, roi, MIN_TRAIN_IMAGES)
    backbone = backbone or load_backbone(threads=params.threads)
    total_steps = 2 * n + 1
    done = 0

    def tick(k: int = 1) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total_steps)

    top = int(first.max()) if first.dtype == np.uint16 else 255
    bits = params.bit_depth or infer_bit_depth(first.dtype, top)
    max_value = float((1 << bits) - 1)
    rng = np.random.default_rng(params.seed)
    win = Window.for_roi(roi, params.long_side, backbone.info.multiple_of)
    feat = PatchFeaturizer(backbone, aggregate=params.aggregate, layer_scale=None, projection=None)
    gh, gw = win.grid(feat.stride)
    per_image = gh * gw
    keep = min(per_image, max(1, math.ceil(params.pool_max / n)))

    def checked(i: int) -> np.ndarray:
        im = np.asarray(images[i])
        if im.shape != first.shape or im.dtype != first.dtype:
            raise ValueError(f"training image {i} is {im.shape} {im.dtype}, expected {first.shape} "
                             f"{first.dtype} like image 0")
        if im.dtype == np.uint16 and params.bit_depth is None and int(im.max()) > max_value:
            raise ValueError(f"training image {i} holds values above {int(max_value)} ({bits}-bit, "
                             "inferred from image 0); set PatchCoreParams.bit_depth")
        return im

    def raw_maps(i: int) -> list[np.ndarray]:
        return feat.run(to_input(window_image(checked(i), win, alignments[i]), win, max_value))

    # Pass 1: patch features. The per-layer scale comes from the first images; the random
    # projection is fixed by the seed, so it is the same at every inference.
    pending = [raw_maps(i) for i in range(min(n, _SCALE_SAMPLES))]
    feat.layer_scale = layer_scales([feat.layers(r, win) for r in pending])
    if params.proj_dim and params.proj_dim < feat.raw_dim:
        feat.projection = rng.normal(0.0, 1.0 / math.sqrt(params.proj_dim),
                                     (feat.raw_dim, params.proj_dim)).astype(np.float32)
    folds = min(params.folds, n)
    dim = feat.projection.shape[1] if feat.projection is not None else feat.raw_dim
    pool = np.empty((n * keep, dim), np.float32)
    pool_fold = np.empty(n * keep, np.int16)
    for i in range(n):
        f = feat.features(pending[i] if i < len(pending) else raw_maps(i), win)
        if keep < per_image:
            f = f[rng.choice(per_image, keep, replace=False)]
        pool[i * keep:(i + 1) * keep] = f
        pool_fold[i * keep:(i + 1) * keep] = i % folds
        tick()
    del pending

    # Coreset: the bank size follows all patches seen, the selection runs on the pool.
    def bank_size(n_img: int, pool_rows: int) -> int:
        return min(params.coreset_max, pool_rows, max(1, math.ceil(params.coreset_ratio * n_img * per_image)))

    idx = greedy_coreset(pool, bank_size(n, len(pool)), select_dim=params.select_dim, seed=params.seed)
    bank = pool[idx].astype(np.float16)
    tick()

    # Pass 2, held out: the images of fold f are scored against a bank built the same way
    # from the other folds only (its own coreset, so no image is scored by patches it
    # supplied, and the bank density matches what an unseen part meets).
    held_out = np.zeros(n)
    for f in range(folds):
        rest = pool_fold != f
        n_rest = n - len(range(f, n, folds))
        sub = pool[rest]
        rows = sub[greedy_coreset(sub, bank_size(n_rest, len(sub)), select_dim=params.select_dim,
                                  seed=params.seed + 1 + f)]
        rows = rows.astype(np.float16).astype(np.float32)  # the precision the model runs at
        nn = NearestNeighbours(rows, k=min(params.k, len(rows)))
        del sub
        for i in range(f, n, folds):
            feats = feat.features(raw_maps(i), win)
            dist = nn.distances(feats).reshape(gh, gw)
            held_out[i] = float(_smooth(dist, win, feat.stride, params.sigma).max())
            tick()
    del pool
    q = float(np.quantile(held_out, 1.0 - params.frr_target, method="higher"))
    threshold = max(q * params.margin, 1e-6)
    training: dict[str, Any] = {
        "n_images": n,
        "folds": folds,
        "bank_size": int(len(bank)),
        "patches_seen": int(n * per_image),
        "pool_size": int(n * keep),
        "window": {"size": list(win.size), "padded": list(win.padded), "grid": [gh, gw]},
        "good_scores": {"n": n, "mean": float(held_out.mean()), "std": float(held_out.std()),
                        "p99": float(np.percentile(held_out, 99)), "max": float(held_out.max()),
                        "values": [round(float(v), 6) for v in held_out]},
        "threshold_rule": f"quantile {1 - params.frr_target:g} (observed, 'higher') of the held-out good "
                          f"scores ({folds}-fold: each image against a bank built without its fold) "
                          f"* {params.margin}",
        "good_quantile": q,
        "bit_depth": bits,
        "train_seconds": round(time.perf_counter() - t0, 3),
    }
    return cls(bank=bank, layer_scale=feat.layer_scale, projection=feat.projection, params=params,
               threshold=threshold, reference_shape=first.shape, dtype=first.dtype, bit_depth=bits, roi=roi,
               n_images=n, training=training, backbone=backbone)
