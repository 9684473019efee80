"""One stored image through the station's own inspection cycle.

Batch does not re-implement the inspection: each image is handed to an
:class:`~station.inspect.cycle.InspectionCycle` - the object the line runs - through a
one-frame "camera" (:class:`ImageFeed`), so the spec check, the detector, the decision
policy, the capture-fault handling and the result shape are the line's, line for line.
What the cycle would record goes into a result row (:mod:`station.batch.rows`) instead.

Without a calibration profile the spec checks are skipped (the row says
``spec_checked: false``), but an image the model cannot take (size, bit depth) is still a
bad-image fault rather than a crash.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from calibration.profile import CalibrationProfile
from calibration.spec import ProfileSpecChecker, SpecInputError
from station.batch.rows import error_row, row_from_outcome
from station.capture.base import (
    CameraDriver,
    CameraInfo,
    CaptureError,
    Frame,
    NoMoreFrames,
    PartContext,
    TriggerMode,
)
from station.detect.base import Detector
from station.inspect.cycle import CycleContext, InspectionCycle, InspectionOutcome
from station.inspect.decide import DecisionPolicy

log = logging.getLogger(__name__)
_FORMAT_OF_BITS = {8: "Mono8", 10: "Mono10", 12: "Mono12", 16: "Mono16"}


class ReadError(CaptureError):
    """The image file / object could not be read (gone, no permission, S3 error)."""

    kind = "read_error"


def image_info(image: np.ndarray, nbytes: int) -> dict[str, Any]:
    return {"bytes": nbytes, "width": int(image.shape[1]), "height": int(image.shape[0]),
            "channels": 1 if image.ndim == 2 else int(image.shape[2]), "dtype": str(image.dtype)}


def pixel_format(image: np.ndarray, bit_depth: int | None) -> str:
    """The capture pixel format of a decoded image: uint16 holds 10/12/16-bit data, and a
    stored image does not say which, so the record's (or profile's) bit depth decides,
    unless the pixels prove it wrong."""
    if image.dtype == np.uint8:
        return "BGR8" if image.ndim == 3 else "Mono8"
    bits = bit_depth if bit_depth in _FORMAT_OF_BITS else 16
    if bits < 16 and int(image.max()) >= (1 << bits):
        bits = 16
    return _FORMAT_OF_BITS[bits]


class ImageFeed(CameraDriver):
    """The cycle's camera in a batch: hands over the one frame loaded for this image, or
    raises the error that loading it produced (the cycle records it as a capture fault)."""

    trigger_modes = frozenset({TriggerMode.WATCHED_FOLDER})

    def __init__(self) -> None:
        super().__init__()
        self._next: Frame | CaptureError | None = None

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> CameraInfo:
        return CameraInfo("LineStation", "batch", "BATCH", 0, 0, "Mono8", None, None, self.trigger_modes)

    def load(self, frame: Frame | CaptureError) -> None:
        self._next = frame

    def grab(self, timeout_s: float = 1.0) -> Frame:
        nxt, self._next = self._next, None
        if nxt is None:
            raise NoMoreFrames("no image loaded")
        if isinstance(nxt, CaptureError):
            raise nxt
        return nxt


class _Passed:
    passed = True
    alignment = None

    def to_json(self) -> list[dict[str, Any]]:
        return []


class ModelInputCheck:
    """The spec checker when no calibration profile applies: no checks, but an image of
    another size or bit depth than the model's is refused (ValueError: a bad-image fault)."""

    version = None

    def __init__(self, detector: Detector) -> None:
        self.shape = tuple(getattr(detector, "reference_shape", ()) or ())
        dtype = getattr(detector, "dtype", None)
        self.dtype = np.dtype(dtype) if dtype is not None else None

    def check(self, frame: Frame) -> _Passed:
        img = frame.image
        if self.shape and (img.shape != self.shape or (self.dtype is not None and img.dtype != self.dtype)):
            raise SpecInputError(f"image is {img.shape} {img.dtype}, the model expects {self.shape} {self.dtype}")
        return _Passed()


class _KeepSource:
    """The cycle's InspectionStore: a batch records rows, not database records."""

    def record(self, out: InspectionOutcome) -> str:
        return (out.frame.source or "") if out.frame is not None else ""


class BatchInspector:
    """Inspects loaded images with one cycle per recipe (each with that recipe's profile)."""

    def __init__(self, detector: Detector, policy: DecisionPolicy,
                 profiles: dict[str, CalibrationProfile | None], *, run_id: str, shard: int) -> None:
        self.detector = detector
        self.policy = policy
        self.profiles = profiles
        self.run_id, self.shard = run_id, shard
        self._cycles: dict[str, tuple[InspectionCycle, ImageFeed, CalibrationProfile | None]] = {}

    def _cycle(self, recipe: str) -> tuple[InspectionCycle, ImageFeed, CalibrationProfile | None]:
        got = self._cycles.get(recipe)
        if got is None:
            profile = self.profiles.get(recipe)
            feed = ImageFeed()
            checker = ProfileSpecChecker(profile) if profile is not None else ModelInputCheck(self.detector)
            cycle = InspectionCycle(feed, checker, self.detector, _KeepSource(), self.policy,
                                    CycleContext(station="batch", recipe=recipe, config_hash="",
                                                 roi=profile.roi if profile is not None else None),
                                    trigger_mode=TriggerMode.WATCHED_FOLDER)
            cycle.arm()
            got = self._cycles[recipe] = (cycle, feed, profile)
        return got

    def inspect(self, item: Any, loaded: np.ndarray | CaptureError, info: dict[str, Any] | None) -> dict[str, Any]:
        """The result row of one image; never raises for a bad image or a model error."""
        cycle, feed, profile = self._cycle(item.recipe)
        if isinstance(loaded, np.ndarray):
            bits = item.bit_depth or (profile.bit_depth if profile is not None else getattr(self.detector, "bit_depth", None))
            feed.load(Frame(image=loaded, pixel_format=pixel_format(loaded, bits), camera_serial="batch",
                            exposure_us=None, gain_db=None, trigger_id=0, source=item.uri))
        else:
            feed.load(loaded)
        try:
            outcome = cycle.inspect(PartContext(item.part_id, item.lot, item.recipe))
        except Exception as exc:  # a model that cannot take this image: report it, go on
            log.warning("inspection of %s failed: %s", item.uri, exc)
            self._cycles.pop(item.recipe, None)  # the cycle is mid-state: start a fresh one
            return error_row(item, f"inspection_error: {type(exc).__name__}: {exc}", run_id=self.run_id,
                             shard=self.shard, model_id=self.detector.model_id,
                             model_version=self.detector.model_version)
        row = row_from_outcome(item, outcome, run_id=self.run_id, shard=self.shard,
                               spec_checked=profile is not None, image_info=info)
        if row["model_id"] is None:  # faulted before detection: still say which model ran
            row["model_id"], row["model_version"] = self.detector.model_id, self.detector.model_version
        return row
