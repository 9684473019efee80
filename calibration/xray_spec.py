"""X-ray capture specs: is this radiograph fit to be judged?

An X-ray recipe's profile (``profile.xray`` set) gets these checks instead of the camera
ones (brightness, contrast and focus mean little for a transmission image; dose, noise and
detector limits do). A frame that fails is a capture fault ("check capture"), never a verdict.

============ ==================================================== ==========================
check        value                                                limits (XrayTolerances)
============ ==================================================== ==========================
grey_level   mean of the reference region, fraction of full scale grey_low..grey_high
snr          mean / noise sigma in the reference region            >= snr_min
saturation   share of ROI pixels at or above saturation_level      <= saturation_max
underexposed share of ROI pixels below underexposed_level (dead)   <= underexposed_max
position     max(|dx|, |dy|) against the reference, px             <= position_max_px
rotation     rotation against the reference, degrees              +-rotation_max_deg
============ ==================================================== ==========================

The *reference region* is a patch of flat material (ISO 17636-2 measures SNR in the parent
material): given in the recipe, or else the flattest tile of the golden reference inside
the ROI that is neither open beam nor the darkest material. Noise is the Immerkaer estimate
of :mod:`calibration.measure`, which ignores the slow thickness gradients a plain standard
deviation would count as noise. Both regions follow the part when it is shifted.

Limits are derived from good radiographs (:func:`calibrate_xray`) as the camera limits are:
the good range widened by a margin, never tighter than a floor.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from calibration.calibrate import (
    MIN_MATCH_QUALITY,
    POSITION_ADD,
    POSITION_FACTOR,
    POSITION_FLOOR_PX,
    POSITION_FLOOR_REL,
    REGISTRATION_CEILING,
    REGISTRATION_FACTOR,
    ROTATION_ADD,
    ROTATION_FACTOR,
    ROTATION_FLOOR_DEG,
    CalibrationError,
    _check_images,
    build_reference,
)
from calibration.measure import _noise_sigma, roi_in_frame, to_grey
from calibration.profile import CalibrationProfile, Tolerances
from calibration.registration import Registrar, Registration
from calibration.roi import Roi
from calibration.spec import CheckResult, SpecReport, _compiled, _range_check, position_checks
from calibration.xray_limits import XrayBaseline, XraySpec, XrayTolerances

GREY, SNR, SATURATION, UNDEREXPOSED = "grey_level", "snr", "saturation", "underexposed"
XRAY_CHECKS = (GREY, SNR, SATURATION, UNDEREXPOSED, "position", "rotation")

# Grey level: the good range widened by 4 sigma, at least 0.05 of full scale (tube output
# and detector gain drift by a few percent; 0.05 FS is a dose change worth a look).
GREY_MARGIN_FLOOR, GREY_MARGIN_SIGMAS = 0.05, 4.0
# SNR: 70 % of the worst good image. SNR grows with the square root of the dose, so this is
# about half the dose: a failing tube, wrong mA or integration time, or a noisy detector.
SNR_FACTOR = 0.7
# Saturation and underexposure: twice the worst good image plus 0.2 points, at least 0.5 %.
AREA_FACTOR, AREA_ADD, AREA_FLOOR = 2.0, 0.002, 0.005
# A pixel is underexposed below half the darkest material the good parts showed (their
# 0.5th percentile), and never above 0.02 of full scale less than that.
UNDER_PERCENTILE, UNDER_FACTOR = 0.5, 0.5


@dataclass(frozen=True)
class XrayMeasurements:
    grey: float  # mean of the reference region, fraction of full scale
    snr: float
    saturated: float  # share of ROI pixels
    underexposed: float
    dark_level: float  # the ROI's 0.5th percentile, fraction of full scale (calibration uses it)
    registration: Registration
    roi: Roi
    region: Roi


def measure_xray(grey: np.ndarray, full_scale: int, roi: Roi, region: Roi, registrar: Registrar,
                 tol: XrayTolerances, *, follow_min_quality: float = 0.5) -> XrayMeasurements:
    """Register ``grey`` (HxW uint8/uint16) and measure every X-ray statistic."""
    registration = registrar.register(grey)
    follow = registration if registration.quality >= follow_min_quality else None
    r = roi_in_frame(roi, follow, grey.shape)
    g = roi_in_frame(region, follow, grey.shape)
    patch, ref = r.slice(grey), np.ascontiguousarray(g.slice(grey))
    n = patch.shape[0] * patch.shape[1]
    fs = float(full_scale)
    top = np.iinfo(grey.dtype).max
    sat_from = min(top, int(math.ceil(tol.saturation_level * fs)))
    saturated = cv2.countNonZero(cv2.inRange(patch, sat_from, top)) / n
    under_below = int(math.floor(tol.underexposed_level * fs))
    underexposed = (cv2.countNonZero(cv2.inRange(patch, 0, under_below - 1)) / n) if under_below > 0 else 0.0
    mean = float(cv2.mean(ref)[0])
    sigma = _noise_sigma(ref)
    snr = mean / sigma if sigma > 0 else float("inf") if mean > 0 else 0.0
    dark = float(np.percentile(patch[::2, ::2], UNDER_PERCENTILE)) / fs
    return XrayMeasurements(grey=mean / fs, snr=min(snr, 1e6), saturated=saturated, underexposed=underexposed,
                            dark_level=dark, registration=registration, roi=r, region=g)


def evaluate_xray(m: XrayMeasurements, tol: XrayTolerances) -> tuple[CheckResult, ...]:
    frac = "fraction of full scale"
    grey = _range_check(GREY, m.grey, tol.grey_low, tol.grey_high, frac,
                        "too dark: check tube voltage/current, exposure time and the filter",
                        "too bright: check tube voltage/current, exposure time and the filter")
    snr = _range_check(SNR, m.snr, tol.snr_min, None, "ratio",
                       "too noisy: check the dose (mA, integration time) and the detector", "")
    saturation = _range_check(SATURATION, m.saturated, None, tol.saturation_max, "fraction of pixels", "",
                              "detector saturated: lower the dose or the gain")
    under = _range_check(UNDEREXPOSED, m.underexposed, None, tol.underexposed_max, "fraction of pixels", "",
                         "dead or underexposed area: check the dose, the detector and what is in the beam")
    position, rotation = position_checks(m.registration, tol.position_max_px, tol.rotation_max_deg,
                                         tol.registration_min)
    return grey, snr, saturation, under, position, rotation


def check_xray(profile: CalibrationProfile, image: np.ndarray, t0: float | None = None) -> SpecReport:
    """The X-ray checks of one validated frame (``calibration.spec.check_frame`` calls this)."""
    t0 = time.perf_counter() if t0 is None else t0
    spec = profile.xray
    tol = spec.tolerances
    m = measure_xray(to_grey(image), profile.full_scale, profile.roi, spec.reference_region,
                     _compiled(profile).registrar, tol, follow_min_quality=tol.registration_min)
    return SpecReport(checks=evaluate_xray(m, tol), registration=m.registration, roi=m.roi,
                      profile=profile.label, elapsed_ms=(time.perf_counter() - t0) * 1000.0)


def flattest_region(reference: np.ndarray, roi: Roi, full_scale: int) -> Roi:
    """The flattest tile of material inside ``roi``: not open beam, not the darkest part."""
    grey = to_grey(reference).astype(np.float32)
    side = max(16, min(roi.width, roi.height) // 6)
    smooth = cv2.GaussianBlur(grey, (0, 0), 2.0)
    tiles = []
    for y in range(roi.y, roi.y + roi.height - side + 1, max(4, side // 2)):
        for x in range(roi.x, roi.x + roi.width - side + 1, max(4, side // 2)):
            t = smooth[y:y + side, x:x + side]
            mean = float(t.mean())
            tiles.append((float(t.std()) / max(mean, 1.0), mean, Roi(x, y, side, side)))
    if not tiles:
        return roi
    brightest = max(t[1] for t in tiles)
    material = [t for t in tiles if 0.1 * full_scale < t[1] < 0.9 * brightest] or tiles
    return min(material, key=lambda t: t[0])[2]


def _stat(values: Sequence[float]) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.min()), float(v.max())


def derive_xray_tolerances(ms: Sequence[XrayMeasurements], shape: tuple[int, int]) -> XrayTolerances:
    """Limits from the good radiographs' measurements (rules: the constants above)."""
    g = np.array([m.grey for m in ms])
    margin = max(GREY_MARGIN_FLOOR, GREY_MARGIN_SIGMAS * float(g.std(ddof=1)) if g.size > 1 else 0.0)
    offset = max(m.registration.offset_px for m in ms)
    angle = max(abs(m.registration.angle_deg) for m in ms)
    quality = min(m.registration.quality for m in ms)
    return XrayTolerances(
        grey_low=max(0.0, float(g.min()) - margin),
        grey_high=min(1.0, float(g.max()) + margin),
        snr_min=SNR_FACTOR * min(m.snr for m in ms),
        saturation_max=min(1.0, max(AREA_FLOOR, AREA_FACTOR * max(m.saturated for m in ms) + AREA_ADD)),
        underexposed_level=max(0.0, UNDER_FACTOR * min(m.dark_level for m in ms)),
        underexposed_max=min(1.0, max(AREA_FLOOR, AREA_FACTOR * max(m.underexposed for m in ms) + AREA_ADD)),
        position_max_px=max(POSITION_FLOOR_PX, POSITION_FLOOR_REL * max(shape), POSITION_FACTOR * offset + POSITION_ADD),
        rotation_max_deg=max(ROTATION_FLOOR_DEG, ROTATION_FACTOR * angle + ROTATION_ADD),
        registration_min=min(REGISTRATION_CEILING, REGISTRATION_FACTOR * quality),
    )


def calibrate_xray(
    images: Sequence[Any],
    camera_serial: str,
    recipe: str,
    roi: Roi | None = None,
    *,
    reference_region: Roi | None = None,
    bit_depth: int | None = None,
    overrides: Mapping[str, float | None] | None = None,
    created_by: str = "",
    notes: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationProfile:
    """A new (unsaved) X-ray profile from radiographs of good parts (arrays or frames)."""
    arrays, depth = _check_images(images, bit_depth)
    if arrays[0].ndim != 2:
        raise CalibrationError("X-ray calibration needs grey images")
    shape = arrays[0].shape[:2]
    roi = roi if roi is not None else Roi.full(shape)
    if not roi.fits(shape):
        raise CalibrationError(f"roi {roi.as_list()} does not fit the {shape[1]}x{shape[0]} images")
    full_scale = (1 << depth) - 1
    reference = build_reference(arrays)
    region = reference_region or flattest_region(reference, roi, full_scale)
    if not region.fits(shape):
        raise CalibrationError(f"reference_region {region.as_list()} does not fit the {shape[1]}x{shape[0]} images")
    registrar = Registrar(reference)
    # levels are not known before the good images are measured: measure with the defaults
    # (the statistics that depend on them are re-measured below with the derived levels)
    first = [measure_xray(a, full_scale, roi, region, registrar, XrayTolerances(underexposed_level=0.0),
                          follow_min_quality=MIN_MATCH_QUALITY) for a in arrays]
    levels = XrayTolerances(underexposed_level=max(0.0, UNDER_FACTOR * min(m.dark_level for m in first)))
    ms = []
    for i, a in enumerate(arrays):
        ms.append(measure_xray(a, full_scale, roi, region, registrar, levels, follow_min_quality=MIN_MATCH_QUALITY))
        if progress is not None:
            progress(i + 1, len(arrays))
    tol = derive_xray_tolerances(ms, shape)
    if overrides:
        update = {k: v for k, v in overrides.items() if v is not None}
        tol = XrayTolerances.model_validate({**tol.model_dump(), **update})
    baseline = XrayBaseline(
        n_images=len(ms), grey=_stat([m.grey for m in ms]), snr=_stat([m.snr for m in ms]),
        saturated=_stat([m.saturated for m in ms]), underexposed=_stat([m.underexposed for m in ms]),
        position=_stat([m.registration.offset_px for m in ms]),
    )
    return CalibrationProfile(
        camera_serial=camera_serial, recipe=recipe, bit_depth=depth, roi=roi,
        tolerances=Tolerances(position_max_px=tol.position_max_px, rotation_max_deg=tol.rotation_max_deg,
                              registration_min=tol.registration_min),
        xray=XraySpec(tolerances=tol, reference_region=region, baseline=baseline),
        reference=reference, created_by=created_by, notes=notes,
    )
