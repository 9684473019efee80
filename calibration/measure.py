"""Image statistics behind the capture-spec checks, shared by calibration and checking.

Calibration measures its good images with exactly the code that later checks every frame,
so a limit derived from the good images means the same thing at run time.

Speed: a 1280x1024 Mono8 frame is measured in about a millisecond (plus registration),
because each statistic uses the cheapest image that still answers it:

- brightness: ``cv2.meanStdDev`` over the full-resolution ROI (exact, one pass);
- clipping: ``cv2.inRange`` + ``countNonZero`` over the full-resolution ROI (exact);
- contrast percentiles and the noise estimate: a 2x-strided sample of the ROI (a quarter
  of the pixels; independent pixels keep the sensor noise intact, which averaging would not);
- focus: a 2x2-averaged ROI, where the Laplacian sees edges rather than pixel noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.registration import Registrar, Registration, halve
from calibration.roi import Roi

# Immerkaer (1996) noise operator: the difference of two Laplacians. It cancels any
# locally planar signal, leaving mostly noise; for white noise of sigma s its output has
# standard deviation 6 s (sum of squared weights = 36).
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
# median(|N(0, 6 s)|) = 0.6745 * 6 s. The median (not Immerkaer's mean) ignores the
# minority of pixels on edges and texture, which the operator does not cancel.
_NOISE_MEDIAN_TO_SIGMA = 1.0 / (0.6745 * 6.0)
_CONTRAST_PERCENTILES = (0.05, 0.95)


@dataclass(frozen=True)
class Measurements:
    """What one image measures, in the units the tolerances use."""

    brightness: float  # mean of the ROI, fraction of full scale
    clipped_low: float  # share of ROI pixels at 0
    clipped_high: float  # share of ROI pixels at (or above) full scale
    contrast: float  # (p95 - p5) of the ROI, fraction of full scale
    sharpness: float  # var(Laplacian) / var(image) of the 2x-reduced ROI (see focus check)
    noise: float  # noise sigma, fraction of full scale
    registration: Registration
    roi: Roi  # where the ROI was measured, in frame coordinates

    @property
    def clipping(self) -> float:
        return self.clipped_low + self.clipped_high


def to_grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def roi_in_frame(roi: Roi, registration: Registration | None, shape: tuple[int, int]) -> Roi:
    """The reference ROI moved to where the part sits in this frame (translation only).

    Following the part keeps the ROI's statistics about the part when it is shifted (the
    position check reports the shift itself). Rotation is ignored: the checks accept only
    a few degrees, which moves a ROI corner by a few pixels. The ROI is clipped to the frame.
    """
    h, w = shape
    ox = oy = 0
    if registration is not None:
        cx, cy = roi.x + (roi.width - 1) / 2.0, roi.y + (roi.height - 1) / 2.0
        inv = cv2.invertAffineTransform(registration.matrix)  # reference -> frame
        fx = inv[0, 0] * cx + inv[0, 1] * cy + inv[0, 2]
        fy = inv[1, 0] * cx + inv[1, 1] * cy + inv[1, 2]
        ox, oy = int(round(fx - cx)), int(round(fy - cy))
    x0, y0 = max(0, roi.x + ox), max(0, roi.y + oy)
    x1, y1 = min(w, roi.x + ox + roi.width), min(h, roi.y + oy + roi.height)
    if x1 - x0 < 8 or y1 - y0 < 8:  # the part left the field of view: measure where it should be
        return roi
    return Roi(x0, y0, x1 - x0, y1 - y0)


def _percentiles(
    hist: np.ndarray, lo: float, bin_width: float, fractions: tuple[float, ...], interpolate: bool = True
) -> list[float]:
    """Percentiles from a histogram, interpolating linearly inside the bin if asked.

    Without interpolation a percentile is the value of its bin (right for integer
    values with one bin each: a constant image then has no spread at all).
    """
    cum = np.cumsum(hist)
    total = float(cum[-1])
    out = []
    for q in fractions:
        target = q * total
        i = int(np.searchsorted(cum, target, side="left"))
        i = min(i, len(hist) - 1)
        if not interpolate:
            out.append(lo + i * bin_width)
            continue
        below = float(cum[i - 1]) if i > 0 else 0.0
        inside = float(hist[i]) or 1.0
        out.append(lo + (i + (target - below) / inside) * bin_width)
    return out


def _noise_sigma(sample: np.ndarray) -> float:
    """Robust noise sigma (in pixel values) of a contiguous image sample."""
    if sample.dtype == np.uint8:
        # |response| saturates at 255 (sigma ~63 LSB): far past any sane limit anyway.
        response = cv2.convertScaleAbs(cv2.filter2D(sample, cv2.CV_16S, _NOISE_KERNEL))
        hist = cv2.calcHist([response], [0], None, [256], [0, 256]).ravel()
        # integer responses: bin k holds the value k, i.e. the interval [k - 0.5, k + 0.5)
        median = _percentiles(hist, -0.5, 1.0, (0.5,))[0]
        return max(0.0, median) * _NOISE_MEDIAN_TO_SIGMA
    response = np.abs(cv2.filter2D(sample, cv2.CV_32F, _NOISE_KERNEL))
    top = 3.0 * float(response.mean()) + 1e-6  # the median sits well below 3x the mean
    hist = cv2.calcHist([response], [0], None, [1024], [0, top]).ravel()
    if hist.sum() < 0.5 * response.size:
        return float(np.median(response)) * _NOISE_MEDIAN_TO_SIGMA
    hist[-1] += response.size - hist.sum()  # values >= top
    return _percentiles(hist, 0.0, top / 1024, (0.5,))[0] * _NOISE_MEDIAN_TO_SIGMA


def measure(
    grey: np.ndarray,
    full_scale: int,
    roi: Roi,
    registrar: Registrar,
    *,
    follow_min_quality: float = 0.5,
) -> Measurements:
    """Register ``grey`` (HxW uint8/uint16) and measure every statistic inside the ROI.

    The ROI follows the part when registration found it (quality >= ``follow_min_quality``).
    """
    registration = registrar.register(grey)
    found = registration.quality >= follow_min_quality
    r = roi_in_frame(roi, registration if found else None, grey.shape)
    patch = r.slice(grey)
    n = patch.shape[0] * patch.shape[1]
    fs = float(full_scale)

    mean, _std = cv2.meanStdDev(patch)
    brightness = float(mean[0, 0]) / fs
    # inRange on 16-bit accepts the bounds as plain numbers; values above full scale
    # (a Mono12 frame with stray high bits) count as clipped high.
    unclipped = cv2.countNonZero(cv2.inRange(patch, 1, full_scale - 1))
    at_zero = n - cv2.countNonZero(patch)
    clipped_low = at_zero / n
    clipped_high = max(0, n - unclipped - at_zero) / n

    sample = np.ascontiguousarray(patch[::2, ::2])
    bins = min(4096, full_scale + 1)  # one bin per value up to 12 bits
    width = (full_scale + 1) / bins
    hist = cv2.calcHist([sample], [0], None, [bins], [0, full_scale + 1]).ravel()
    hist[-1] += sample.size - hist.sum()  # above full scale (stray high bits): the top bin
    p_lo, p_hi = _percentiles(hist, 0.0, width, _CONTRAST_PERCENTILES, interpolate=width > 1)
    contrast = max(0.0, p_hi - p_lo) / fs

    noise = _noise_sigma(sample) / fs

    small = halve(patch)
    lap = cv2.Laplacian(small, cv2.CV_16S if small.dtype == np.uint8 else cv2.CV_32F)
    _, lap_std = cv2.meanStdDev(lap)
    _, img_std = cv2.meanStdDev(small)
    var_img = float(img_std[0, 0]) ** 2
    sharpness = float(lap_std[0, 0]) ** 2 / var_img if var_img > 0 else 0.0

    return Measurements(
        brightness=brightness,
        clipped_low=clipped_low,
        clipped_high=clipped_high,
        contrast=contrast,
        sharpness=sharpness,
        noise=noise,
        registration=registration,
        roi=r,
    )
