"""The calibration wizard's steps as plain Python (no Qt): the wizard widget drives this.

camera -> exposure/gain with live statistics -> golden reference from N good frames + ROI
-> tolerances -> validation run (every capture must pass) -> save a new profile version.
Also: roll back to an earlier version (saved again as the newest, so nothing is ever
overwritten and the history shows the rollback).

Long steps take ``progress(done, total)`` and ``cancelled()`` callables so the UI can show
progress and stop them between frames. Every save and rollback is audited through the
``audit(action, subject, payload)`` callable the wizard passes in.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import cv2
import numpy as np

from calibration.calibrate import calibrate
from calibration.measure import to_grey
from calibration.profile import CalibrationProfile, ProfileStore, Tolerances
from calibration.registration import halve
from calibration.roi import Roi
from calibration.spec import SpecReport, check_frame

Progress = Callable[[int, int], None]
Cancelled = Callable[[], bool]
Audit = Callable[[str, str, dict], None]

MAX_GRAB_FAILURES = 5  # consecutive failed grabs before a capture step gives up
HIST_BINS = 64


class CalibrationFlowError(RuntimeError):
    """A wizard step cannot go on; the message says what to do."""


class StepCancelled(CalibrationFlowError):
    """The technician cancelled a long step."""


@dataclass(frozen=True)
class LiveStats:
    """What the exposure step shows for one frame."""

    histogram: np.ndarray  # HIST_BINS counts over 0..full scale
    mean: float  # fraction of full scale
    clipped_low: float  # share of pixels at 0
    clipped_high: float  # share at full scale
    focus: float  # variance of the Laplacian of the 2x-reduced image (full-scale units)


def live_stats(image: np.ndarray, bit_depth: int) -> LiveStats:
    """Histogram, brightness, clipping and focus of a frame (a few ms at 1.3 MP)."""
    grey = to_grey(image)
    fs = float((1 << bit_depth) - 1)
    hist = cv2.calcHist([grey], [0], None, [HIST_BINS], [0, fs + 1]).ravel()
    n = float(grey.size)
    at_zero = n - cv2.countNonZero(grey)
    at_top = float(np.count_nonzero(grey >= fs))
    small = halve(grey).astype(np.float32) / fs
    lap = cv2.Laplacian(small, cv2.CV_32F)
    return LiveStats(hist, float(grey.mean()) / fs, at_zero / n, at_top / n, float(lap.var()) * 1e4)


@dataclass(frozen=True)
class ValidationRun:
    """The validation step's outcome: every capture must pass its spec."""

    reports: list[SpecReport]
    errors: list[str]  # captures that failed to arrive at all

    @property
    def passed(self) -> bool:
        return bool(self.reports) and not self.errors and all(r.passed for r in self.reports)

    def summary(self) -> str:
        failed = [(i, r) for i, r in enumerate(self.reports, 1) if not r.passed]
        if self.passed:
            return f"all {len(self.reports)} captures passed"
        lines = [f"capture {i}: " + "; ".join(c.message for c in r.failed) for i, r in failed]
        lines += self.errors
        return f"{len(failed) + len(self.errors)} of {len(self.reports) + len(self.errors)} captures failed:\n" + \
            "\n".join(lines)


class CalibrationFlow:
    """State of one wizard run on one camera and recipe."""

    def __init__(self, camera_factory: Callable[[], Any], profiles: ProfileStore, recipe: str, *,
                 username: str, audit: Audit, grab_timeout_s: float = 2.0) -> None:
        self._factory = camera_factory
        self.profiles = profiles
        self.recipe = recipe
        self.username = username
        self._audit = audit
        self.grab_timeout_s = grab_timeout_s
        self.camera: Any = None
        self.serial = ""
        self.frames: list[np.ndarray] = []
        self.bit_depth = 8
        self.profile: CalibrationProfile | None = None  # built, possibly with changed tolerances
        self.derived: Tolerances | None = None
        self.validation: ValidationRun | None = None
        self.saved: CalibrationProfile | None = None

    # --- camera ----------------------------------------------------------------------
    def open_camera(self) -> str:
        """Open and arm (software trigger) the chosen camera; returns its serial."""
        from station.capture.base import TriggerMode  # the one seam to the station's drivers

        self.close()
        cam = self._factory()
        try:
            cam.open()
            cam.arm(TriggerMode.SOFTWARE)
        except Exception as exc:
            try:
                cam.close()
            finally:
                raise CalibrationFlowError(f"the camera cannot be opened: {exc}") from exc
        self.camera = cam
        self.serial = cam.describe().serial
        return self.serial

    def close(self) -> None:
        if self.camera is not None:
            cam, self.camera = self.camera, None
            try:
                cam.disarm()
            finally:
                cam.close()

    def _need_camera(self) -> Any:
        if self.camera is None:
            raise CalibrationFlowError("no camera open: choose the camera first")
        return self.camera

    def settings(self) -> tuple[float | None, float | None]:
        info = self._need_camera().describe()
        return info.exposure_us, info.gain_db

    def set_exposure_gain(self, exposure_us: float | None, gain_db: float | None) -> None:
        cam = self._need_camera()
        if exposure_us is not None:
            cam.set_exposure(exposure_us)
        if gain_db is not None:
            cam.set_gain(gain_db)

    def grab(self):
        """One frame (capture errors propagate: the live view shows them)."""
        return self._need_camera().grab(self.grab_timeout_s)

    def _grab_series(self, n: int, progress: Progress | None, cancelled: Cancelled | None,
                     keep_errors: list[str] | None = None) -> list:
        from station.capture.base import CaptureError

        frames, failures = [], 0
        while len(frames) < n:
            if cancelled is not None and cancelled():
                raise StepCancelled("cancelled")
            try:
                frames.append(self.grab())
                failures = 0
            except CaptureError as exc:
                if keep_errors is not None:
                    keep_errors.append(f"capture {len(frames) + len(keep_errors) + 1}: {exc}")
                    if len(keep_errors) >= n:
                        break
                    continue
                failures += 1
                if failures >= MAX_GRAB_FAILURES:
                    raise CalibrationFlowError(f"{failures} captures in a row failed ({exc}); "
                                               "check the camera and trigger") from exc
            if progress is not None:
                progress(len(frames), n)
        return frames

    # --- golden reference ------------------------------------------------------------
    def capture_golden(self, n: int, progress: Progress | None = None, cancelled: Cancelled | None = None) -> int:
        """Grab ``n`` frames of good parts (the technician puts known-good parts in front)."""
        if n < 3:
            raise CalibrationFlowError("capture at least 3 good parts")
        frames = self._grab_series(n, progress, cancelled)
        self.frames = [f.image for f in frames]
        self.bit_depth = frames[0].bit_depth
        self.profile = self.derived = self.validation = None
        return len(self.frames)

    @property
    def reference_preview(self) -> np.ndarray | None:
        """The first golden frame: the coordinates the ROI is drawn in."""
        return self.frames[0] if self.frames else None

    def build_profile(self, roi: Roi | None, progress: Progress | None = None, notes: str = "") -> CalibrationProfile:
        """Calibrate from the golden frames; the tolerances come pre-filled (derived)."""
        if not self.frames:
            raise CalibrationFlowError("capture the golden reference first")
        profile = calibrate(self.frames, self.serial, self.recipe, roi=roi, bit_depth=self.bit_depth,
                            created_by=self.username, notes=notes or "calibration wizard", progress=progress)
        parent = self._parent()
        if parent is not None:  # unsaved, so nothing cached depends on it
            profile = profile.model_copy(update={"parent_version": parent})
            profile._hash = None
        self.profile, self.derived, self.validation = profile, profile.tolerances, None
        return profile

    def set_tolerances(self, **values: float) -> CalibrationProfile:
        """Apply the technician's limits (ValueError names what is inconsistent)."""
        if self.profile is None:
            raise CalibrationFlowError("build the profile first")
        self.profile = self.profile.with_tolerances(**values)
        self.validation = None
        return self.profile

    def _parent(self) -> int | None:
        versions = self.profiles.versions(self.serial, self.recipe)
        return versions[-1] if versions else None

    # --- validation and save ---------------------------------------------------------
    def validate(self, n: int, progress: Progress | None = None, cancelled: Cancelled | None = None) -> ValidationRun:
        """Check ``n`` fresh captures against the new profile; all must pass to save."""
        if self.profile is None:
            raise CalibrationFlowError("build the profile first")
        if n < 1:
            raise CalibrationFlowError("validate at least 1 capture")
        errors: list[str] = []
        frames = self._grab_series(n, progress, cancelled, keep_errors=errors)
        self.validation = ValidationRun([check_frame(self.profile, f) for f in frames], errors)
        return self.validation

    def save(self, notes: str = "") -> CalibrationProfile:
        """Save the validated profile as the next version (audited)."""
        if self.profile is None:
            raise CalibrationFlowError("build the profile first")
        if self.validation is None or not self.validation.passed:
            raise CalibrationFlowError("the validation run has not passed: nothing saved")
        profile = self.profile
        if notes:
            profile = profile.model_copy(update={"notes": notes})
        saved = self.profiles.save(profile)
        self.saved = saved
        self._audit("calibration.saved", saved.identity, {
            "label": saved.label, "parent_version": saved.parent_version, "roi": saved.roi.as_list(),
            "tolerances": saved.tolerances.model_dump(), "golden_frames": len(self.frames),
            "validation": {"captures": len(self.validation.reports), "passed": True},
        })
        return saved

    def versions(self) -> list[CalibrationProfile]:
        """Every saved version of this camera and recipe, newest first."""
        if not self.serial:
            return []
        return [self.profiles.load(self.serial, self.recipe, v)
                for v in reversed(self.profiles.versions(self.serial, self.recipe))]

    def roll_back(self, version: int) -> CalibrationProfile:
        """Make version ``version`` current again by saving it as the newest version (audited)."""
        if not self.serial:
            raise CalibrationFlowError("choose the camera first")
        old = self.profiles.load(self.serial, self.recipe, version)
        current = self._parent()
        copy = old.model_copy(update={"version": 0, "parent_version": version,
                                      "notes": f"rollback to v{version} (was v{current})",
                                      "created_by": self.username,
                                      "created_at": datetime.now(timezone.utc)})
        copy._hash = copy._compiled = None
        saved = self.profiles.save(copy)
        self._audit("calibration.rollback", saved.identity, {
            "label": saved.label, "restored_version": version, "replaced_version": current})
        return saved
