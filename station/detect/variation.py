"""Golden-template variation model (after HALCON's variation model).

Training warps every good image into reference coordinates at a reduced resolution and
learns, per pixel, the mean grey value and its spread (standard deviation, or a robust
MAD-based spread). The tolerance band of a pixel is ``mean +- max(a_abs, b_rel * spread)``
(``a_abs`` as a fraction of the full grey range, so 8- and 16-bit models share defaults).

Inference warps the frame the same way (alignment and downscale in one ``cv2.warpAffine``)
and computes the *normalised deviation* ``n = |pixel - mean| / tolerance``: 1.0 is the edge
of the band. A ``smooth`` x ``smooth`` (3x3) box blur of ``n`` suppresses single-pixel noise (a lone outlier keeps
1/9 of its value, a one-pixel-wide scratch 1/3, a blob of 3x3 or more all of it).

**Image score**: the highest level ``L`` such that a ``k x k`` square (``k*k >= min_area``
model pixels) lies wholly above ``L`` in the smoothed map, i.e. the maximum of the smoothed
map after a ``k x k`` grey erosion. It is the quantity a small defect moves most and noise
moves least: a high percentile would dilute a defect covering 0.01 % of the part, and an
area-weighted excess sum is 0 on every good image (no threshold can be learned from it)
and ranks defects by size rather than severity. Because of the erosion, a score above the
threshold always comes with a connected region of at least ``min_area`` pixels above it,
so the verdict and the mask agree.

**Threshold**: ``max(good scores) * margin`` (``margin`` 1.25 by default), where the good
scores come from k-fold leave-some-out: each fold of training images is scored by a model
built from the other folds, so no image is scored by statistics it helped make (in-sample
scores are biased low because every pixel's own deviation inflates its own spread). The
threshold never drops below ``min_threshold``. The distribution of these held-out scores is
kept in ``training["good_scores"]``.

**Mask**: connected regions of the smoothed map above the decision threshold with at least
``min_area`` pixels (empty when the image is not anomalous). ``TotalPercentageArea`` is the
mask area as a fraction of the ROI. The regions are cut at the learned threshold rather
than at the band edge (1.0): with the default ``b_rel`` the threshold is typically 0.6-0.9
band units, and cutting the mask at another level than the verdict would report anomalous
parts with an empty mask (or, with a threshold above 1, good parts with anomaly area).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import cv2
import numpy as np

from calibration.roi import Roi
from station.detect.base import (
    ANOMALY_COLORS,
    BACKGROUND,
    Anomaly,
    DetectionResult,
    Detector,
    ParamsMixin,
    confidence_from_score,
    confidence_scale,
)

MODEL_TYPE = "variation"
MIN_TRAIN_IMAGES = 10
_SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


@dataclass(frozen=True)
class VariationParams(ParamsMixin):
    """Training and inference parameters of a :class:`VariationModel`."""

    downscale: int = 2  # model grid = reference / downscale (area-averaged)
    a_abs: float = 0.02  # minimum half-width of the band, fraction of full scale
    b_rel: float = 4.0  # band half-width in multiples of the per-pixel spread
    spread: str = "std"  # "std" or "mad" (robust: median centre, 1.4826 * MAD)
    spread_smooth: int = 3  # box size smoothing the variance image (1 = off)
    smooth: int = 3  # box blur of the deviation map (1 = off)
    min_area: int = 16  # smallest reported region, in reference pixels
    margin: float = 1.25  # threshold = max(held-out good scores) * margin
    min_threshold: float = 0.2  # floor of the threshold, in band units
    cv_folds: int = 5  # folds of the leave-some-out threshold estimate
    # Significant bits (Mono12 in uint16 = 12). None: 8 for uint8; for uint16 the smallest
    # of 10/12/14/16 bits holding the training data (a too-small guess only makes a_abs
    # stricter, a too-large one would make it 16x too lax for unshifted Mono12).
    bit_depth: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.downscale, int) and 1 <= self.downscale <= 8):
            problems.append(f"downscale must be an int in 1..8, got {self.downscale!r}")
        if not self.a_abs >= 0:
            problems.append(f"a_abs must be >= 0, got {self.a_abs!r}")
        if not self.b_rel > 0:
            problems.append(f"b_rel must be > 0, got {self.b_rel!r}")
        if self.spread not in ("std", "mad"):
            problems.append(f"spread must be 'std' or 'mad', got {self.spread!r}")
        for name in ("spread_smooth", "smooth", "min_area"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                problems.append(f"{name} must be an int >= 1, got {v!r}")
        if not self.margin >= 1.0:
            problems.append(f"margin must be >= 1, got {self.margin!r}")
        if not self.min_threshold > 0:
            problems.append(f"min_threshold must be > 0, got {self.min_threshold!r}")
        if not (isinstance(self.cv_folds, int) and self.cv_folds >= 2):
            problems.append(f"cv_folds must be an int >= 2, got {self.cv_folds!r}")
        if self.bit_depth is not None and not (isinstance(self.bit_depth, int) and 1 <= self.bit_depth <= 16):
            problems.append(f"bit_depth must be None or an int in 1..16, got {self.bit_depth!r}")
        if problems:
            raise ValueError("invalid VariationParams: " + "; ".join(problems))

    @property
    def area_kernel(self) -> int:
        """Side of the square the score erosion uses, in model pixels."""
        model_px = max(1, math.ceil(self.min_area / self.downscale**2))
        return max(1, math.ceil(math.sqrt(model_px)))



# --------------------------------------------------------------------------- geometry


def _to_grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected an HxW or HxWx{{1,3,4}} image, got shape {image.shape}")


def _affine3(alignment: np.ndarray | None) -> np.ndarray:
    if alignment is None:
        return np.eye(3)
    a = np.asarray(alignment, dtype=np.float64)
    if a.shape == (3, 3):
        if not np.allclose(a[2], (0.0, 0.0, 1.0)):
            raise ValueError(f"alignment must be affine; 3x3 last row is {a[2].tolist()}")
        return a
    if a.shape != (2, 3):
        raise ValueError(f"alignment must be a 2x3 affine matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("alignment contains non-finite values")
    return np.vstack([a, (0.0, 0.0, 1.0)])


def _grid_shape(ref_shape: tuple[int, int], downscale: int) -> tuple[int, int]:
    return -(-ref_shape[0] // downscale), -(-ref_shape[1] // downscale)


def _roi_window(roi: Roi, downscale: int) -> tuple[int, int, int, int]:
    """ROI on the model grid as (x0, y0, x1, y1), covering every touched grid pixel."""
    return (
        roi.x // downscale,
        roi.y // downscale,
        -(-(roi.x + roi.width) // downscale),
        -(-(roi.y + roi.height) // downscale),
    )


def _frame_to_window(alignment: np.ndarray | None, downscale: int, x0: int, y0: int) -> np.ndarray:
    """3x3 affine from frame pixels to the model-grid window starting at (x0, y0).

    Grid pixel u covers reference pixels [u*s, (u+1)*s): its centre is x = (u + 0.5) * s - 0.5.
    At s = 2 a bilinear sample there is exactly the mean of the 2x2 block (INTER_AREA),
    so the warp does alignment and area downscaling in one pass.
    """
    s = float(downscale)
    off = 0.5 / s - 0.5
    scale = np.array([[1 / s, 0, off - x0], [0, 1 / s, off - y0], [0, 0, 1.0]])
    return scale @ _affine3(alignment)


class _Warper:
    """Warps frames onto a model-grid window; knows which output pixels saw the frame."""

    def __init__(self, downscale: int) -> None:
        self.downscale = downscale
        self._ones: dict[tuple[int, int], np.ndarray] = {}

    def warp(
        self, grey: np.ndarray, m3: np.ndarray, size: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        w, h = size
        if self.downscale > 2:
            # Past 2x a bilinear sample no longer covers the block: box-filter first so
            # the sample is still a block mean (area downscale) and noise stays averaged.
            grey = cv2.blur(grey, (self.downscale, self.downscale), borderType=cv2.BORDER_REPLICATE)
        inv = np.linalg.inv(m3)[:2]  # window -> frame
        out = cv2.warpAffine(
            grey, inv, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        fh, fw = grey.shape
        corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float)
        fxy = corners @ inv.T
        if (fxy[:, 0].min() >= -0.5 and fxy[:, 0].max() <= fw - 0.5
                and fxy[:, 1].min() >= -0.5 and fxy[:, 1].max() <= fh - 0.5):
            return out, None  # the window lies wholly inside the frame (the usual case)
        ones = self._ones.get((fh, fw))
        if ones is None:
            ones = self._ones.setdefault((fh, fw), np.ones((fh, fw), np.uint8))
        valid = cv2.warpAffine(
            ones, inv, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
        return out, valid


def _smoothed_deviation(
    grid: np.ndarray, valid: np.ndarray | None, mean: np.ndarray, inv_tol: np.ndarray, smooth: int
) -> np.ndarray:
    """|grid - mean| / tolerance, blurred; 1.0 = the edge of the tolerance band."""
    dev = cv2.absdiff(grid.astype(np.float32), mean)
    cv2.multiply(dev, inv_tol, dst=dev)
    if valid is not None:
        np.multiply(dev, valid, out=dev, casting="unsafe")
    if smooth > 1:
        dev = cv2.blur(dev, (smooth, smooth), borderType=cv2.BORDER_REPLICATE)
    return dev


def _score_map(dev: np.ndarray, kernel: np.ndarray | None) -> tuple[float, tuple[int, int]]:
    eroded = cv2.erode(dev, kernel, borderType=cv2.BORDER_REPLICATE) if kernel is not None else dev
    _, peak, _, loc = cv2.minMaxLoc(eroded)
    return float(peak), loc


# --------------------------------------------------------------------------- statistics


class _FoldSums:
    """Per-fold running sums of warped training images (memory O(folds), not O(images)).

    Sums are taken around the first image (per pixel) in float64, so the one-pass
    variance does not lose precision even for 16-bit data.
    """

    def __init__(self, folds: int, shape: tuple[int, int]) -> None:
        self.s1 = np.zeros((folds, *shape))
        self.s2 = np.zeros((folds, *shape))
        self.n = np.zeros((folds, *shape), np.int32)
        self.shift: np.ndarray | None = None

    def add(self, fold: int, grid: np.ndarray, valid: np.ndarray | None) -> None:
        if self.shift is None:
            self.shift = grid.astype(np.float64)
        g = grid.astype(np.float64) - self.shift
        if valid is None:
            self.n[fold] += 1
        else:
            g *= valid
            self.n[fold] += valid
        self.s1[fold] += g
        self.s2[fold] += g * g

    def stats(self, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, std (ddof 1) and count of every fold but ``exclude``."""
        s1, s2, n = self.s1.sum(axis=0), self.s2.sum(axis=0), self.n.sum(axis=0)
        if exclude is not None:
            s1, s2, n = s1 - self.s1[exclude], s2 - self.s2[exclude], n - self.n[exclude]
        nn = np.maximum(n, 1)
        mean = s1 / nn
        var = np.maximum(s2 - s1 * mean, 0.0) / np.maximum(n - 1, 1)
        return mean + self.shift, np.sqrt(var), n


def _median_stats(
    stack: np.ndarray, valid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust centre (median) and spread (1.4826 * MAD) of a stack of warped images."""
    if valid is None:
        centre = np.median(stack, axis=0)
        return centre, 1.4826 * np.median(np.abs(stack - centre), axis=0), np.full(stack.shape[1:], len(stack))
    data = np.where(valid.astype(bool), stack, np.nan)
    with warnings.catch_warnings():  # pixels no image saw are all-NaN: they stay unmodelled
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmedian(data, axis=0)
        spread = 1.4826 * np.nanmedian(np.abs(data - centre), axis=0)
    return centre, spread, valid.sum(axis=0)


def _finish_stats(
    centre: np.ndarray, spread: np.ndarray, count: np.ndarray, n_images: int, params: VariationParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centre = np.nan_to_num(centre).astype(np.float32)
    spread = np.nan_to_num(spread).astype(np.float32)
    count = np.minimum(count, np.iinfo(np.uint16).max).astype(np.uint16)
    if params.spread_smooth > 1:
        # Few images give a noisy spread estimate: average the variance over a small
        # neighbourhood (normalised, so unmodelled pixels do not pull it down).
        k = (params.spread_smooth, params.spread_smooth)
        w = (count >= _min_samples(n_images)).astype(np.float32)
        num = cv2.blur(spread * spread * w, k, borderType=cv2.BORDER_REPLICATE)
        den = cv2.blur(w, k, borderType=cv2.BORDER_REPLICATE)
        spread = np.sqrt(num / np.maximum(den, 1e-6)).astype(np.float32)
    return centre, spread, count


def _infer_bit_depth(dtype: np.dtype, top: int) -> int:
    if dtype == np.uint8:
        return 8
    return next(b for b in (10, 12, 14, 16) if top < (1 << b))


def _min_samples(n_images: int) -> int:
    """A pixel seen in fewer training images than this is not modelled (ignored)."""
    return max(3, n_images // 2)


def _inverse_tolerance(
    spread: np.ndarray, count: np.ndarray, n_images: int, params: VariationParams, max_value: float
) -> np.ndarray:
    tol = np.maximum(np.float32(params.a_abs * max_value), np.float32(params.b_rel) * spread)
    tol = np.maximum(tol, np.float32(1e-6 * max_value))
    inv = (1.0 / tol).astype(np.float32)
    inv[count < _min_samples(n_images)] = 0.0
    return inv


def _summary(scores: Sequence[float]) -> dict[str, float]:
    a = np.asarray(scores, dtype=np.float64)
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


# --------------------------------------------------------------------------- the model


class VariationModel(Detector):
    """Per-pixel golden template with tolerance band; see the module docstring."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        *,
        mean: np.ndarray,
        spread: np.ndarray,
        count: np.ndarray,
        params: VariationParams,
        threshold: float,
        reference_shape: tuple[int, ...],
        dtype: np.dtype | str,
        max_value: int,
        n_images: int,
        roi: Roi | None = None,
        training: dict[str, Any] | None = None,
        created_at: str | None = None,
        model_id: str | None = None,
        model_version: str = "",
    ) -> None:
        self.params = params
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.spread = np.ascontiguousarray(spread, dtype=np.float32)
        self.count = np.ascontiguousarray(count, dtype=np.uint16)
        self.threshold = float(threshold)
        self.reference_shape = tuple(int(v) for v in reference_shape)
        self.dtype = np.dtype(dtype)
        self.max_value = int(max_value)
        self.n_images = int(n_images)
        self.roi = roi or Roi.full(self.reference_shape)
        self.training = dict(training or {})
        self.created_at = created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        grid = _grid_shape(self.reference_shape[:2], params.downscale)
        for name, arr in (("mean", self.mean), ("spread", self.spread), ("count", self.count)):
            if arr.shape != grid:
                raise ValueError(f"{name} has shape {arr.shape}, expected model grid {grid}")
        if self.dtype not in _SUPPORTED_DTYPES:
            raise ValueError(f"unsupported dtype {self.dtype}; expected uint8 or uint16")
        if not self.roi.fits(self.reference_shape):
            raise ValueError(f"ROI {self.roi.as_list()} does not fit reference {self.reference_shape}")
        self._inv_tol = _inverse_tolerance(self.spread, self.count, self.n_images, params, self.max_value)
        k = params.area_kernel
        self._kernel = np.ones((k, k), np.uint8) if k > 1 else None
        self._min_area_px = max(1, math.ceil(params.min_area / params.downscale**2))
        self._warper = _Warper(params.downscale)
        self.model_hash = self._content_hash()
        if model_id is None:
            stamp = datetime.fromisoformat(self.created_at).strftime("%Y%m%dT%H%M%S")
            model_id = f"{MODEL_TYPE}-{stamp}-{self.model_hash[:6]}"
        self.model_id = model_id
        self.model_version = model_version

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        images: Sequence[np.ndarray],
        *,
        roi: Roi | None = None,
        alignments: Sequence[np.ndarray | None] | None = None,
        params: VariationParams | None = None,
    ) -> VariationModel:
        """Learn the model from aligned good images (``alignments[i]``: frame -> reference).

        The reference frame is the shape of the training images. ``roi`` (reference
        coordinates) becomes the model's default ROI and the region the threshold is
        learned on. ``images`` is read twice (statistics, then held-out scores), so a lazy
        sequence that loads on ``__getitem__`` keeps memory at a few grids for
        ``spread="std"``; ``spread="mad"`` holds every warped image (n x grid x 4 bytes).
        """
        t0 = time.perf_counter()
        params = params or VariationParams()
        n = len(images)
        if n < MIN_TRAIN_IMAGES:
            raise ValueError(f"need at least {MIN_TRAIN_IMAGES} good images to train, got {n}")
        first = np.asarray(images[0])
        if first.dtype not in _SUPPORTED_DTYPES:
            raise ValueError(f"training images must be uint8 or uint16, got {first.dtype}")
        _to_grey(first)  # validates the layout
        if alignments is None:
            alignments = [None] * n
        elif len(alignments) != n:
            raise ValueError(f"got {len(alignments)} alignments for {n} images")
        ref_shape = first.shape
        roi = roi or Roi.full(ref_shape)
        if not roi.fits(ref_shape):
            raise ValueError(f"ROI {roi.as_list()} does not fit the training images {ref_shape[:2]}")

        # Pass 1: warp every image onto the model grid and accumulate per-fold statistics
        # (std) or keep the grids (the robust spread needs medians).
        gh, gw = _grid_shape(ref_shape[:2], params.downscale)
        folds = min(params.cv_folds, n)
        warper = _Warper(params.downscale)
        robust = params.spread == "mad"
        sums = None if robust else _FoldSums(folds, (gh, gw))
        stack = np.empty((n, gh, gw), np.float32) if robust else None
        valids = np.ones((n, gh, gw), np.uint8) if robust else None
        any_invalid = False
        top = 0
        for i, (im, a) in enumerate(zip(images, alignments)):
            im = np.asarray(im)
            if im.shape != first.shape or im.dtype != first.dtype:
                raise ValueError(
                    f"training image {i} is {im.shape} {im.dtype}, expected {first.shape} "
                    f"{first.dtype} like image 0"
                )
            if im.dtype == np.uint16:
                top = max(top, int(im.max()))
            grid, valid = warper.warp(_to_grey(im), _frame_to_window(a, params.downscale, 0, 0), (gw, gh))
            if robust:
                stack[i] = grid
                if valid is not None:
                    valids[i] = valid
                    any_invalid = True
            else:
                sums.add(i % folds, grid, valid)
        bits = params.bit_depth or _infer_bit_depth(first.dtype, top)
        max_value = (1 << bits) - 1

        def fold_stats(exclude: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if not robust:
                stats = sums.stats(exclude)
            else:
                keep = np.arange(n) if exclude is None else np.flatnonzero(np.arange(n) % folds != exclude)
                stats = _median_stats(stack[keep], valids[keep] if any_invalid else None)
            m = n if exclude is None else n - len(range(exclude, n, folds))
            return _finish_stats(*stats, m, params)

        mean, spread, count = fold_stats(None)

        # Pass 2, leave-some-out: image i is scored by the model of the folds it is not in,
        # on the ROI window only.
        x0, y0, x1, y1 = _roi_window(roi, params.downscale)
        win = (slice(y0, y1), slice(x0, x1))
        fold_models = []
        for f in range(folds):
            fm, fs, fc = fold_stats(f)
            inv = _inverse_tolerance(fs, fc, n - len(range(f, n, folds)), params, max_value)
            fold_models.append((np.ascontiguousarray(fm[win]), np.ascontiguousarray(inv[win])))
        k = params.area_kernel
        kernel = np.ones((k, k), np.uint8) if k > 1 else None
        held_out = np.zeros(n)
        for i, (im, a) in enumerate(zip(images, alignments)):
            m3 = _frame_to_window(a, params.downscale, x0, y0)
            grid, valid = warper.warp(_to_grey(np.asarray(im)), m3, (x1 - x0, y1 - y0))
            fm, inv = fold_models[i % folds]
            held_out[i] = _score_map(_smoothed_deviation(grid, valid, fm, inv, params.smooth), kernel)[0]
        threshold = max(float(held_out.max()) * params.margin, params.min_threshold)
        modelled = float(np.mean(count[y0:y1, x0:x1] >= _min_samples(n)))
        training = {
            "n_images": n,
            "cv_folds": folds,
            "good_scores": _summary(held_out),
            "threshold_rule": f"max(held-out good scores) * {params.margin} "
            f"(floor {params.min_threshold})",
            "modelled_fraction": modelled,
            "bit_depth": bits,
            "train_seconds": round(time.perf_counter() - t0, 3),
        }
        if held_out.max() > 1.0:
            training["warning"] = (
                "held-out good images leave their tolerance band; check alignment or raise "
                "a_abs / b_rel"
            )
        return cls(
            mean=mean, spread=spread, count=count, params=params, threshold=threshold,
            reference_shape=ref_shape, dtype=first.dtype, max_value=max_value, n_images=n,
            roi=roi, training=training,
        )

    # ------------------------------------------------------------------ inference

    def detect(
        self,
        image: np.ndarray,
        *,
        roi: Roi | None = None,
        alignment: np.ndarray | None = None,
    ) -> DetectionResult:
        if not isinstance(image, np.ndarray):
            raise ValueError(f"expected a numpy image, got {type(image).__name__}")
        if image.shape != self.reference_shape or image.dtype != self.dtype:
            raise ValueError(
                f"image is {image.shape} {image.dtype}, model {self.model_id} expects "
                f"{self.reference_shape} {self.dtype}"
            )
        roi = roi or self.roi
        if not roi.fits(self.reference_shape):
            raise ValueError(f"ROI {roi.as_list()} does not fit reference {self.reference_shape[:2]}")
        p = self.params
        x0, y0, x1, y1 = _roi_window(roi, p.downscale)
        m3 = _frame_to_window(alignment, p.downscale, x0, y0)
        grey = _to_grey(image)
        grid, valid = self._warper.warp(grey, m3, (x1 - x0, y1 - y0))
        dev = _smoothed_deviation(
            grid, valid, self.mean[y0:y1, x0:x1], self._inv_tol[y0:y1, x0:x1], p.smooth
        )
        score, peak = _score_map(dev, self._kernel)
        thr = self.threshold
        anomalous = score > thr

        fh, fw = grey.shape
        mask = np.zeros((fh, fw), np.uint8)
        frac = 0.0
        if anomalous:
            region, (gx, gy) = self._regions(dev, thr, peak)
            frac = float(np.count_nonzero(region)) / float(dev.size)
            self._paint_mask(mask, region, gx, gy, m3)
        heatmap = self._heatmap(dev, thr, m3, (fh, fw))
        anomalies = [Anomaly(BACKGROUND, 1.0 - frac, ANOMALY_COLORS[BACKGROUND])]
        if frac > 0:
            anomalies.append(Anomaly("anomaly", frac, ANOMALY_COLORS["anomaly"]))
        # Peak of the eroded map -> centre of its k x k square -> frame pixel.
        k = self._kernel.shape[0] if self._kernel is not None else 1
        c = k // 2 - (k - 1) / 2
        px, py, _ = np.linalg.inv(m3) @ (peak[0] - c, peak[1] - c, 1.0)
        return DetectionResult(
            is_anomalous=bool(anomalous),
            confidence=confidence_from_score(score, thr, confidence_scale(thr, self.training)),
            score=score,
            threshold=thr,
            anomalies=anomalies,
            model_id=self.model_id,
            model_version=self.model_version,
            model_hash=self.model_hash,
            anomaly_mask=mask,
            heatmap=heatmap,
            extra={"model_type": MODEL_TYPE, "peak_xy": [round(float(px), 1), round(float(py), 1)]},
        )

    def _regions(
        self, dev: np.ndarray, level: float, peak: tuple[int, int]
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """Connected regions above ``level`` with at least min_area pixels (always the
        peak's), as a 0/255 crop of the grid window and the crop's offset."""
        above = cv2.compare(dev, level, cv2.CMP_GT)
        # Defects are small: label only the bounding box of what lies above the level.
        gx, gy, gw, gh = cv2.boundingRect(above)
        crop = above[gy : gy + gh, gx : gx + gw]
        n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
        lut = np.zeros(n, np.uint8)
        lut[1:][stats[1:, cv2.CC_STAT_AREA] >= self._min_area_px] = 255
        # The eroded peak sits on a k x k square above the level; its label is kept even
        # if min_area exceeds k*k, so an anomalous verdict never comes with an empty mask.
        # (cv2.erode's default anchor is k // 2: the square starts k // 2 before the peak.)
        k = self._kernel.shape[0] if self._kernel is not None else 1
        px, py = peak[0] - k // 2 - gx, peak[1] - k // 2 - gy
        for lab in np.unique(labels[max(py, 0) : py + k, max(px, 0) : px + k]):
            if lab:
                lut[lab] = 255
        return lut[labels], (gx, gy)

    def _heatmap(self, dev: np.ndarray, thr: float, m3: np.ndarray, frame_shape: tuple[int, int]) -> np.ndarray:
        """The smoothed map in frame pixels, 0..1 with 1 = twice the threshold.

        Warped onto a frame grid at model resolution, then upsampled by cv2.resize: the
        same result as one full-size warpAffine to within a bilinear step (the map is
        smooth) at a fraction of the cost (full-size float warps dominate detect time).
        """
        heat = cv2.multiply(dev, 0.5 / thr)
        cv2.min(heat, 1.0, dst=heat)
        fh, fw = frame_shape
        s = self.params.downscale
        if s == 1:
            return cv2.warpAffine(
                heat, m3[:2], (fw, fh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT, borderValue=0,
            )
        gh, gw = _grid_shape((fh, fw), s)
        sx, sy = fw / gw, fh / gh
        # frame-grid q -> frame p (inverse of cv2.resize's pixel-centre mapping) -> window
        up = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
        small = cv2.warpAffine(
            heat, (m3 @ up)[:2], (gw, gh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
        return cv2.resize(small, (fw, fh), interpolation=cv2.INTER_LINEAR)

    @staticmethod
    def _paint_mask(mask: np.ndarray, region: np.ndarray, gx: int, gy: int, m3: np.ndarray) -> None:
        """Draw a grid-window crop into the frame-sized ``mask``, warping only its bbox."""
        rh, rw = region.shape
        inv = np.linalg.inv(m3)
        corners = np.array(
            [[gx - 1, gy - 1, 1], [gx + rw, gy - 1, 1], [gx - 1, gy + rh, 1], [gx + rw, gy + rh, 1]], float
        ) @ inv[:2].T
        fh, fw = mask.shape
        bx0 = int(np.clip(np.floor(corners[:, 0].min()), 0, fw))
        by0 = int(np.clip(np.floor(corners[:, 1].min()), 0, fh))
        bx1 = int(np.clip(np.ceil(corners[:, 0].max()) + 1, 0, fw))
        by1 = int(np.clip(np.ceil(corners[:, 1].max()) + 1, 0, fh))
        if bx1 <= bx0 or by1 <= by0:
            return
        # frame sub-rect pixel q -> frame p = q + b -> window m3 p -> crop (minus gx, gy)
        sub = m3 @ np.array([[1, 0, bx0], [0, 1, by0], [0, 0, 1.0]])
        sub[0, 2] -= gx
        sub[1, 2] -= gy
        mask[by0:by1, bx0:bx1] = cv2.warpAffine(
            region, sub[:2], (bx1 - bx0, by1 - by0), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )

    # ------------------------------------------------------------------ persistence

    def _describe(self) -> dict[str, Any]:
        return {
            "model_type": MODEL_TYPE,
            "params": self.params.to_dict(),
            "threshold": self.threshold,
            "reference": {
                "shape": list(self.reference_shape),
                "dtype": str(self.dtype),
                "max_value": self.max_value,
            },
            "n_images": self.n_images,
            "roi": self.roi.as_list(),
        }

    def _content_hash(self) -> str:
        h = hashlib.sha256(json.dumps(self._describe(), sort_keys=True).encode())
        for name, arr in (("mean", self.mean), ("spread", self.spread), ("count", self.count)):
            h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    def to_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and JSON-able metadata that :meth:`from_state` rebuilds the model from."""
        meta = {
            **self._describe(),
            "training": self.training,
            "created_at": self.created_at,
            "model_id": self.model_id,
            "model_hash": self.model_hash,
        }
        return {"mean": self.mean, "spread": self.spread, "count": self.count}, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> VariationModel:
        """Rebuild a saved model; raises ValueError if its content hash does not match."""
        ref = meta["reference"]
        model = cls(
            mean=arrays["mean"],
            spread=arrays["spread"],
            count=arrays["count"],
            params=VariationParams.from_dict(meta["params"]),
            threshold=float(meta["threshold"]),
            reference_shape=tuple(ref["shape"]),
            dtype=ref["dtype"],
            max_value=int(ref["max_value"]),
            n_images=int(meta["n_images"]),
            roi=Roi(*meta["roi"]),
            training=meta.get("training", {}),
            created_at=meta["created_at"],
            model_id=meta["model_id"],
            model_version=str(meta.get("model_version", "")),
        )
        expected = meta.get("model_hash")
        if expected and expected != model.model_hash:
            raise ValueError(f"model content hash mismatch: recorded {expected}, computed {model.model_hash}")
        return model
