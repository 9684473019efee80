"""The capture-spec check: does this frame meet the spec its calibration profile sets?

A frame that fails is a *capture fault* ("check capture"), never a defect verdict: the
lighting, exposure, focus or fixture needs attention before the part can be judged.

Seven checks, each with a measured value, its limits and pass/fail:

=========== ================================================ =============================
check       value                                            limits (``Tolerances``)
=========== ================================================ =============================
brightness  ROI mean, fraction of full scale                 brightness_low..brightness_high
clipping    share of ROI pixels at 0 or full scale           <= clipping_max
contrast    ROI p95 - p5 spread, fraction of full scale      >= contrast_min
focus       ROI sharpness / reference sharpness              >= focus_min_ratio
position    max(|dx|, |dy|) against the reference, px        <= position_max_px
rotation    rotation against the reference, degrees         +-rotation_max_deg
noise       noise sigma, fraction of full scale              <= noise_max
=========== ================================================ =============================

Registration runs on the whole frame; the other checks measure inside the ROI, which
follows the part when it is shifted. If registration cannot find the part at all
(quality below ``registration_min``) position and rotation both fail.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from calibration.measure import Measurements, measure, to_grey
from calibration.profile import CalibrationProfile, Tolerances
from calibration.registration import Registrar, Registration
from calibration.roi import Roi

BRIGHTNESS, CLIPPING, CONTRAST, FOCUS = "brightness", "clipping", "contrast", "focus"
POSITION, ROTATION, NOISE = "position", "rotation", "noise"
CHECKS = (BRIGHTNESS, CLIPPING, CONTRAST, FOCUS, POSITION, ROTATION, NOISE)


class SpecInputError(ValueError):
    """The image cannot be checked against this profile at all (wrong size, type, empty)."""


@dataclass(frozen=True)
class CheckResult:
    """One check on one frame. ``low``/``high`` are None where the check has no such limit."""

    name: str
    value: float
    low: float | None
    high: float | None
    passed: bool
    unit: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class SpecReport:
    """All checks of one frame against one profile."""

    checks: tuple[CheckResult, ...]
    registration: Registration
    roi: Roi  # where the ROI was measured, frame coordinates
    profile: str  # the profile's label: identity and content hash
    elapsed_ms: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def alignment(self) -> np.ndarray:
        """2x3 float32 affine mapping frame pixel coordinates onto the reference's."""
        return self.registration.matrix

    def __getitem__(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r} (checks: {', '.join(CHECKS)})")

    def summary(self) -> str:
        """One line for the operator: "capture ok" or what to check."""
        if self.passed:
            return "capture ok"
        return "check capture: " + "; ".join(c.message for c in self.failed)

    def to_json(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per check (what the inspection record stores)."""
        return [c.to_dict() for c in self.checks]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _range_check(name: str, value: float, low: float | None, high: float | None, unit: str,
                 too_low: str, too_high: str) -> CheckResult:
    if low is not None and value < low:
        return CheckResult(name, value, low, high, False, unit, f"{name} {_fmt(value)} below {_fmt(low)}: {too_low}")
    if high is not None and value > high:
        return CheckResult(name, value, low, high, False, unit, f"{name} {_fmt(value)} above {_fmt(high)}: {too_high}")
    return CheckResult(name, value, low, high, True, unit, f"{name} {_fmt(value)} ok")


def evaluate(m: Measurements, tol: Tolerances, reference_sharpness: float) -> tuple[CheckResult, ...]:
    """Compare measurements with the limits; one result per check, in ``CHECKS`` order."""
    frac = "fraction of full scale"
    reg = m.registration
    brightness = _range_check(BRIGHTNESS, m.brightness, tol.brightness_low, tol.brightness_high, frac,
                              "too dark, check lighting and exposure", "too bright, check lighting and exposure")
    clipping = _range_check(CLIPPING, m.clipping, None, tol.clipping_max, "fraction of pixels", "",
                            f"{m.clipped_low:.2%} black, {m.clipped_high:.2%} saturated; check exposure and gain")
    contrast = _range_check(CONTRAST, m.contrast, tol.contrast_min, None, frac,
                            "washed out, check lighting, glare and the lens", "")
    focus_ratio = m.sharpness / reference_sharpness if reference_sharpness > 0 else 0.0
    focus = _range_check(FOCUS, focus_ratio, tol.focus_min_ratio, None, "ratio to reference",
                         "blurred, check focus, lens and part height", "")
    noise = _range_check(NOISE, m.noise, None, tol.noise_max, frac, "", "noisy, check gain, cabling and light flicker")
    position, rotation = position_checks(reg, tol.position_max_px, tol.rotation_max_deg, tol.registration_min)
    return brightness, clipping, contrast, focus, position, rotation, noise


def position_checks(reg: Registration, position_max_px: float, rotation_max_deg: float,
                    registration_min: float) -> tuple[CheckResult, CheckResult]:
    """Position and rotation against the reference: shared by the camera and X-ray specs."""
    max_deg = rotation_max_deg
    if reg.quality < registration_min:
        why = (f"part not found (registration quality {reg.quality:.2f} < {registration_min:.2f}); "
               "wrong or missing part?")
        position = CheckResult(POSITION, reg.offset_px, None, position_max_px, False, "px", f"position: {why}")
        rotation = CheckResult(ROTATION, reg.angle_deg, -max_deg, max_deg, False, "deg", f"rotation: {why}")
        return position, rotation
    position = _range_check(POSITION, reg.offset_px, None, position_max_px, "px", "",
                            f"part off by dx={reg.dx:+.1f} px, dy={reg.dy:+.1f} px; check the fixture")
    rotation = _range_check(ROTATION, reg.angle_deg, -max_deg, max_deg, "deg",
                            "part rotated clockwise, check the fixture",
                            "part rotated counter-clockwise, check the fixture")
    return position, rotation


@dataclass(frozen=True)
class _Compiled:
    """Per-profile precomputation, built on first use and cached on the profile."""

    registrar: Registrar
    reference_sharpness: float


def _compiled(profile: CalibrationProfile) -> _Compiled:
    c = profile._compiled
    if c is None:
        registrar = Registrar(profile.reference_grey)
        if profile.baseline is not None:
            sharpness = profile.baseline.reference_sharpness
        else:  # a hand-made profile: the reference itself is the sharpness baseline
            sharpness = measure(profile.reference_grey, profile.full_scale, profile.roi, registrar).sharpness
        c = profile._compiled = _Compiled(registrar, sharpness)
    return c


def _describe(shape: tuple[int, ...], dtype: Any) -> str:
    kind = "mono" if len(shape) == 2 else f"{shape[2]}-channel" if len(shape) == 3 else f"{len(shape)}-D"
    size = f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else "x".join(map(str, shape)) or "scalar"
    return f"{size} {kind} {np.dtype(dtype).name}"


def validate_image(profile: CalibrationProfile, image: Any, bit_depth: int | None = None) -> np.ndarray:
    """The image as an array fit to check against ``profile``, or SpecInputError saying why not."""
    if hasattr(image, "image") and not isinstance(image, np.ndarray):  # a capture Frame
        if bit_depth is None:
            bit_depth = getattr(image, "bit_depth", None)
        image = image.image
    expected = _describe(profile.reference.shape, profile.reference.dtype)
    if not isinstance(image, np.ndarray):
        raise SpecInputError(f"expected a {expected} image, got {type(image).__name__}")
    if image.size == 0:
        raise SpecInputError(f"empty image: expected {expected}, got shape {image.shape}")
    if image.dtype != profile.reference.dtype or image.shape != profile.reference.shape:
        raise SpecInputError(
            f"frame does not match profile {profile.identity}: expected {expected}, "
            f"got {_describe(image.shape, image.dtype)}"
        )
    if bit_depth is not None and bit_depth != profile.bit_depth:
        raise SpecInputError(
            f"frame has {bit_depth}-bit pixels, but profile {profile.identity} was calibrated "
            f"with {profile.bit_depth}-bit pixels"
        )
    return image


def check_frame(profile: CalibrationProfile, image: Any, *, bit_depth: int | None = None) -> SpecReport:
    """Check one frame (numpy image or capture ``Frame``) against ``profile``.

    ``image`` must have the reference's shape and dtype (Mono or BGR, uint8 or uint16);
    ``bit_depth`` (or a Frame's own) must match the profile's. Raises SpecInputError
    otherwise. Everything else, however bad the frame, is reported as failed checks.
    """
    t0 = time.perf_counter()
    image = validate_image(profile, image, bit_depth)
    if profile.xray is not None:  # an X-ray recipe: grey level, SNR, saturation, dead area, position
        from calibration.xray_spec import check_xray

        return check_xray(profile, image, t0)
    compiled = _compiled(profile)
    tol = profile.tolerances
    m = measure(to_grey(image), profile.full_scale, profile.roi, compiled.registrar,
                follow_min_quality=tol.registration_min)
    checks = evaluate(m, tol, compiled.reference_sharpness)
    return SpecReport(
        checks=checks,
        registration=m.registration,
        roi=m.roi,
        profile=profile.label,
        elapsed_ms=(time.perf_counter() - t0) * 1000.0,
    )


class ProfileSpecChecker:
    """The inspection cycle's spec checker for one profile (``check(frame)`` + ``version``)."""

    def __init__(self, profile: CalibrationProfile) -> None:
        self.profile = profile

    @property
    def version(self) -> str:
        return self.profile.label

    def check(self, frame: Any) -> SpecReport:
        return check_frame(self.profile, frame)
