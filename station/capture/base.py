"""The capture seam: one small driver protocol, the frame it returns, and typed errors.

Every camera or detector driver (simulated, replay, pypylon, harvesters, X-ray) implements
:class:`CameraDriver`. The inspection cycle only ever talks to this interface, so a
simulated twin and a real camera are interchangeable through the config factory.
"""
from __future__ import annotations

import abc
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np


class TriggerMode(str, enum.Enum):
    """How a capture is started. A driver lists the modes it supports."""

    SOFTWARE = "software"  # the station sends a software trigger command
    HARDWARE_LINE = "hardware_line"  # an electrical edge on a camera input line
    EXTERNAL = "external"  # the PLC / line controller tells the station (e.g. OPC UA)
    WATCHED_FOLDER = "watched_folder"  # a file landing in a folder (X-ray, replay)


@dataclass(frozen=True)
class PartContext:
    """What the line knows about the part in front of the camera."""

    part_id: str
    lot: str = ""
    recipe: str = ""


@dataclass(frozen=True)
class CameraInfo:
    """A driver's description of itself."""

    vendor: str
    model: str
    serial: str
    width: int
    height: int
    pixel_format: str  # "Mono8", "Mono12", "Mono16", "BGR8"
    exposure_us: float | None  # None: the device does not report it
    gain_db: float | None
    trigger_modes: frozenset[TriggerMode]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.pixel_format in ("Mono8", "BGR8", "RGB8") else np.uint16)


PIXEL_FORMAT_BITS = {"Mono8": 8, "BGR8": 8, "RGB8": 8, "Mono10": 10, "Mono12": 12, "Mono16": 16}


@dataclass(frozen=True)
class Frame:
    """One captured image with everything needed to trace it back to its capture.

    ``image`` is HxW (mono) or HxWx3 (BGR), uint8 or uint16. For packed high bit depth
    formats (Mono12) the values are unshifted: ``bit_depth`` says how many bits are used.
    """

    image: np.ndarray
    pixel_format: str
    camera_serial: str
    exposure_us: float | None  # None: the device does not report it
    gain_db: float | None
    trigger_id: int
    timestamp: float = field(default_factory=time.time)  # host clock, epoch seconds
    device_timestamp_ns: int | None = None
    context: PartContext | None = None
    source: str | None = None  # e.g. the file a replay frame came from
    # Driver-specific facts worth keeping with the record (a simulated part's ground
    # truth, a replay file's hash, a detector's temperature). JSON-serialisable values.
    meta: dict = field(default_factory=dict)
    # The original file's bytes as read at the claim (X-ray TIFF / DICOM), for the recorder
    # to keep byte for byte; never serialised, never compared.
    original: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def bit_depth(self) -> int:
        return PIXEL_FORMAT_BITS.get(self.pixel_format, self.image.dtype.itemsize * 8)

    @property
    def max_value(self) -> int:
        return (1 << self.bit_depth) - 1

    def with_context(self, context: PartContext) -> Frame:
        return replace(self, context=context)


class CaptureError(Exception):
    """Base class of everything a driver raises while capturing.

    The cycle records any CaptureError as a capture fault (kind = ``kind``) and carries on.
    """

    kind = "capture_error"


class CaptureTimeout(CaptureError):
    """No frame arrived within the timeout (missed trigger, dropped frame)."""

    kind = "timeout"


class FailedBuffer(CaptureError):
    """The frame arrived but the transport marked it incomplete or corrupt."""

    kind = "failed_buffer"


class CameraDisconnected(CaptureError):
    """The device went away (cable, power, network); it must be re-opened."""

    kind = "disconnected"


class BadImage(CaptureError):
    """An image could not be used: corrupt, truncated, empty, wrong size or bit depth."""

    kind = "bad_image"


class CameraConfigError(CaptureError):
    """The device could not be found or configured as the config asks."""

    kind = "config"


class NoMoreFrames(CaptureError):
    """A finite source (a replay folder without looping) is exhausted."""

    kind = "exhausted"


class CameraDriver(abc.ABC):
    """A camera, detector or image source that produces :class:`Frame` objects.

    Lifecycle: ``open()`` -> ``arm(mode)`` -> ``grab()`` ... -> ``disarm()`` -> ``close()``.
    ``grab`` in SOFTWARE mode issues the trigger itself; in the other modes it waits for
    the externally triggered frame. Drivers are also context managers (open/close).
    """

    trigger_modes: frozenset[TriggerMode] = frozenset({TriggerMode.SOFTWARE})
    _held: Callable[[], bool] | None = None

    def __init__(self) -> None:
        self._mode: TriggerMode | None = None
        self._trigger_count = 0

    def hold_when(self, held: Callable[[], bool] | None) -> None:
        """``held()`` is true while the station is held (an interlock is open). A driver that
        waits for a part to arrive (a watched folder) stops waiting and takes nothing while
        it is, so a part that lands during the hold is inspected after the resume."""
        self._held = held

    # --- lifecycle -------------------------------------------------------------------
    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def describe(self) -> CameraInfo: ...

    def arm(self, mode: TriggerMode = TriggerMode.SOFTWARE) -> None:
        """Configure the trigger and start acquisition."""
        if mode not in self.trigger_modes:
            supported = ", ".join(sorted(m.value for m in self.trigger_modes))
            raise CameraConfigError(
                f"{type(self).__name__} does not support trigger mode {mode.value!r} "
                f"(supported: {supported})"
            )
        self._mode = mode

    def disarm(self) -> None:
        self._mode = None

    @property
    def armed_mode(self) -> TriggerMode | None:
        return self._mode

    @abc.abstractmethod
    def grab(self, timeout_s: float = 1.0) -> Frame:
        """Return the next frame; raise a :class:`CaptureError` subclass on failure."""

    # --- settings --------------------------------------------------------------------
    def set_exposure(self, exposure_us: float) -> None:
        raise CameraConfigError(f"{type(self).__name__} has no adjustable exposure")

    def set_gain(self, gain_db: float) -> None:
        raise CameraConfigError(f"{type(self).__name__} has no adjustable gain")

    def _next_trigger_id(self) -> int:
        self._trigger_count += 1
        return self._trigger_count

    def __enter__(self) -> CameraDriver:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.disarm()
        finally:
            self.close()
