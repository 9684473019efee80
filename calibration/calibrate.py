"""Build a calibration profile from images of good parts.

1. Every image is registered to the first one and warped onto it; the pixel-wise median
   of the aligned stack is the golden reference (sensor noise drops by ~sqrt(n), and a
   speck of dust on one part does not survive the median). The first image therefore
   defines reference coordinates: the ROI and all later positions are relative to it.
2. Every image is then measured against that reference with the very code that checks
   frames at run time (:func:`calibration.measure.measure`).
3. Each limit is derived from those measurements (see :func:`derive_tolerances`): the
   range the good parts showed, widened by a margin, and never tighter than a floor that
   reflects what a capture can be expected to hold. A technician can override any limit
   (``overrides=`` here, or :meth:`CalibrationProfile.with_tolerances` later).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from calibration.measure import Measurements, measure, to_grey
from calibration.profile import Baseline, CalibrationProfile, Stat, Tolerances, array_sha256
from calibration.registration import Registrar
from calibration.roi import Roi

MIN_IMAGES = 3
# An image that correlates worse than this with the first one after alignment is not the
# same part in a comparable pose: calibrating on it would poison the reference.
MIN_MATCH_QUALITY = 0.5

# --- how limits are derived (fractions are of full scale) -------------------------------
# Brightness: the good range widened on both sides by 4 sigma of the good images, but at
# least 0.08 of full scale: lamps age and warm up by a few percent; a 0.08 step is an
# exposure or lighting change worth a look (e.g. 0.45 -> 0.37 is an 18 % drop).
BRIGHTNESS_MARGIN_FLOOR = 0.08
BRIGHTNESS_MARGIN_SIGMAS = 4.0
# Clipping: twice the worst good image plus 0.2 points, at least 0.5 % of the ROI.
# Clipped pixels hold no information, so a few more than the good parts had is a fault.
CLIPPING_FACTOR, CLIPPING_ADD, CLIPPING_FLOOR = 2.0, 0.002, 0.005
# Contrast: half the lowest good spread. A washed-out image (glare, haze, dirty lens,
# failing lamp) loses half its spread long before an ordinary exposure drift does (that
# one is the brightness check's).
CONTRAST_FACTOR = 0.5
# Focus: 60 % of the least sharp good image. Variance of the Laplacian falls steeply with
# defocus (a 1.5 px blur roughly halves it), while good parts scatter by ~10 %.
FOCUS_FACTOR = 0.6
# Noise: 1.5x the noisiest good image (3.5 dB of SNR), and at least that plus 0.002
# (half an 8-bit grey level) so a near-noiseless calibration is not a hair trigger.
NOISE_FACTOR, NOISE_ADD = 1.5, 0.002
# Position and rotation: 1.5x the play the good parts showed in the fixture plus a small
# allowance, at least 8 px (or 0.5 % of the image's long side) and 1 degree.
POSITION_FACTOR, POSITION_ADD, POSITION_FLOOR_PX, POSITION_FLOOR_REL = 1.5, 2.0, 8.0, 0.005
ROTATION_FACTOR, ROTATION_ADD, ROTATION_FLOOR_DEG = 1.5, 0.25, 1.0
# Registration quality: half the worst good image's, and never above 0.5.
REGISTRATION_FACTOR, REGISTRATION_CEILING = 0.5, 0.5


class CalibrationError(ValueError):
    """The images cannot make a profile (too few, inconsistent, not the same part)."""


def _unwrap(item: Any) -> tuple[np.ndarray, int | None]:
    if isinstance(item, np.ndarray):
        return item, None
    if hasattr(item, "image"):  # a capture Frame
        return item.image, getattr(item, "bit_depth", None)
    raise CalibrationError(f"expected numpy images or capture frames, got {type(item).__name__}")


def _check_images(images: Sequence[Any], bit_depth: int | None) -> tuple[list[np.ndarray], int]:
    if len(images) < MIN_IMAGES:
        raise CalibrationError(f"calibration needs at least {MIN_IMAGES} good images, got {len(images)}")
    arrays, depths = zip(*(_unwrap(i) for i in images))
    first = arrays[0]
    for i, a in enumerate(arrays):
        if a.dtype not in (np.uint8, np.uint16):
            raise CalibrationError(f"image {i} is {a.dtype}; expected uint8 or uint16")
        if a.size == 0 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
            raise CalibrationError(f"image {i} has shape {a.shape}; expected HxW or HxWx3")
        if a.shape != first.shape or a.dtype != first.dtype:
            raise CalibrationError(
                f"image {i} is {a.dtype} {a.shape}, image 0 is {first.dtype} {first.shape}; "
                "all calibration images must come from the same camera settings"
            )
    known = {d for d in depths if d is not None}
    if bit_depth is None:
        if len(known) > 1:
            raise CalibrationError(f"the frames disagree on bit depth: {sorted(known)}")
        bit_depth = known.pop() if known else first.dtype.itemsize * 8
    return list(arrays), int(bit_depth)


def _median_stack(stack: list[np.ndarray]) -> np.ndarray:
    """Pixel-wise median, in row blocks so a float copy of the whole stack is never made."""
    out = np.empty_like(stack[0])
    h = out.shape[0]
    block = max(1, (4 << 20) // max(1, stack[0][0].size * len(stack)))  # ~4M values per block
    cube = np.stack(stack)
    for r0 in range(0, h, block):
        med = np.median(cube[:, r0 : r0 + block], axis=0)
        out[r0 : r0 + block] = np.rint(med).astype(out.dtype)
    return out


def build_reference(images: list[np.ndarray], min_quality: float = MIN_MATCH_QUALITY) -> np.ndarray:
    """Register every image to the first, warp it there, and take the pixel-wise median."""
    first_grey = to_grey(images[0])
    try:
        registrar = Registrar(first_grey)
    except ValueError as exc:
        raise CalibrationError(f"image 0 cannot serve as reference: {exc}") from None
    h, w = first_grey.shape
    aligned = [images[0]]
    for i, img in enumerate(images[1:], start=1):
        reg = registrar.register(to_grey(img))
        if reg.quality < min_quality:
            raise CalibrationError(
                f"image {i} does not match image 0 (registration quality {reg.quality:.2f} < {min_quality}); "
                "is it the same part in a similar pose?"
            )
        aligned.append(cv2.warpAffine(img, reg.matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return _median_stack(aligned)


def derive_tolerances(ms: Sequence[Measurements], reference_sharpness: float, shape: tuple[int, int]) -> Tolerances:
    """Limits from the good images' measurements (the rules are the constants above)."""
    b = np.array([m.brightness for m in ms])
    margin = max(BRIGHTNESS_MARGIN_FLOOR, BRIGHTNESS_MARGIN_SIGMAS * float(b.std(ddof=1)) if b.size > 1 else 0.0)
    clip = max(m.clipping for m in ms)
    focus = min(m.sharpness for m in ms) / reference_sharpness
    noise = max(m.noise for m in ms)
    offset = max(m.registration.offset_px for m in ms)
    angle = max(abs(m.registration.angle_deg) for m in ms)
    quality = min(m.registration.quality for m in ms)
    return Tolerances(
        brightness_low=max(0.0, float(b.min()) - margin),
        brightness_high=min(1.0, float(b.max()) + margin),
        clipping_max=min(1.0, max(CLIPPING_FLOOR, CLIPPING_FACTOR * clip + CLIPPING_ADD)),
        contrast_min=CONTRAST_FACTOR * min(m.contrast for m in ms),
        focus_min_ratio=FOCUS_FACTOR * focus,
        position_max_px=max(
            POSITION_FLOOR_PX, POSITION_FLOOR_REL * max(shape), POSITION_FACTOR * offset + POSITION_ADD
        ),
        rotation_max_deg=max(ROTATION_FLOOR_DEG, ROTATION_FACTOR * angle + ROTATION_ADD),
        noise_max=min(1.0, max(NOISE_FACTOR * noise, noise + NOISE_ADD)),
        registration_min=min(REGISTRATION_CEILING, REGISTRATION_FACTOR * quality),
    )


def calibrate(
    images: Sequence[Any],
    camera_serial: str,
    recipe: str,
    roi: Roi | None = None,
    *,
    bit_depth: int | None = None,
    overrides: Mapping[str, float | None] | None = None,
    created_by: str = "",
    notes: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationProfile:
    """A new (unsaved, version 0) profile from images (arrays or capture frames) of good parts.

    ``roi`` is in the first image's pixel coordinates (default: the whole image).
    ``bit_depth`` defaults to the frames' own (Mono12 -> 12) or the dtype's.
    ``overrides`` replaces derived limits by name (None values are ignored).
    ``progress(done, total)`` is called as images are measured (for the wizard).
    """
    arrays, depth = _check_images(images, bit_depth)
    shape = arrays[0].shape[:2]
    roi = roi if roi is not None else Roi.full(shape)
    if not roi.fits(shape):
        raise CalibrationError(f"roi {roi.as_list()} does not fit the {shape[1]}x{shape[0]} images")
    total = len(arrays)
    reference = build_reference(arrays)
    ref_grey = to_grey(reference)
    registrar = Registrar(ref_grey)
    full_scale = (1 << depth) - 1
    ms = []
    for i, img in enumerate(arrays):
        ms.append(measure(to_grey(img), full_scale, roi, registrar, follow_min_quality=MIN_MATCH_QUALITY))
        if progress is not None:
            progress(i + 1, total)
    # The focus denominator is the median good image's sharpness, not the reference's: the
    # median stack is less noisy (and resampled), so it measures differently from any frame.
    reference_sharpness = float(np.median([m.sharpness for m in ms]))
    if reference_sharpness <= 0:
        raise CalibrationError("the good images have no edges or texture inside the ROI to judge focus on")
    tolerances = derive_tolerances(ms, reference_sharpness, shape)
    if overrides:
        update = {k: v for k, v in overrides.items() if v is not None}
        tolerances = Tolerances.model_validate({**tolerances.model_dump(), **update})
    baseline = Baseline(
        n_images=total,
        brightness=Stat.of(m.brightness for m in ms),
        clipping=Stat.of(m.clipping for m in ms),
        contrast=Stat.of(m.contrast for m in ms),
        focus=Stat.of(m.sharpness / reference_sharpness for m in ms),
        noise=Stat.of(m.noise for m in ms),
        position=Stat.of(m.registration.offset_px for m in ms),
        rotation=Stat.of(abs(m.registration.angle_deg) for m in ms),
        registration_quality=Stat.of(m.registration.quality for m in ms),
        reference_sharpness=reference_sharpness,
        image_sha256=[array_sha256(a) for a in arrays],
    )
    return CalibrationProfile(
        camera_serial=camera_serial,
        recipe=recipe,
        bit_depth=depth,
        roi=roi,
        tolerances=tolerances,
        baseline=baseline,
        reference=reference,
        created_by=created_by,
        notes=notes,
    )
