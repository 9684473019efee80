"""The watched-folder driver: X-ray radiographs (16-bit TIFF, DICOM/DICONDE) or PNGs that
detector software or another station drops into a folder, one image per file.

Trigger mode WATCHED_FOLDER only: ``grab`` waits for the next complete file
(:class:`station.capture.watched_folder.FolderWatcher` does the waiting, claiming and
filing away). The decoded image keeps its bit depth (uint16 stays uint16; DICOM's
BitsStored names the pixel format: 12 -> Mono12). A file that cannot be used is moved to
``quarantine/`` with ``<file>.reason.json`` and ``grab`` raises :class:`BadImage` naming
it, so the cycle records a capture fault ("check capture") the operator and technician see.

**Original bytes.** ``Frame.meta["original"]`` carries the file's name, sha256, size,
format and where it waits (``path`` in ``processing/``). The station's recorder copies the
file byte for byte into its store (``originals/<hh>/<sha256>.<ext>``, beside the 16-bit PNG
every other part of the station reads) before the record is committed, and records that
path instead. :meth:`XrayFolderCamera.on_recorded`, an inspection listener of the cycle,
then moves the file out of ``processing/``: only a committed record finishes a file.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from station.capture.base import (
    PIXEL_FORMAT_BITS,
    BadImage,
    CameraConfigError,
    CameraDisconnected,
    CameraDriver,
    CameraInfo,
    CaptureTimeout,
    Frame,
    TriggerMode,
)
from station.capture.dicom_io import DicomReadError, is_dicom, read_dicom
from station.capture.replay_camera import decode_image
from station.capture.tiff_io import TiffReadError, is_tiff, read_tiff
from station.capture.watched_folder import Claim, FolderWatcher, Recorded, WatchedFolderError

log = logging.getLogger(__name__)

FORMATS = ("tiff", "dicom", "png")
EXTENSIONS = {"tiff": ("tif", "tiff"), "dicom": ("dcm", "dicom", "dic"), "png": ("png",)}
FILE_EXT = {"tiff": "tif", "dicom": "dcm", "png": "png"}
GREY_FORMATS = ("Mono8", "Mono10", "Mono12", "Mono16")


def format_for_bits(bits: int) -> str:
    """The pixel format whose bit depth holds ``bits`` significant bits."""
    return next(f for f in GREY_FORMATS if bits <= PIXEL_FORMAT_BITS[f])


class XrayFolderCamera(CameraDriver):
    """Frames from the files that land in ``folder`` (see the module docstring)."""

    trigger_modes = frozenset({TriggerMode.WATCHED_FOLDER})

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        serial: str = "XRAY-0001",
        formats: tuple[str, ...] | list[str] = ("tiff", "dicom"),
        expected_width: int | None = None,
        expected_height: int | None = None,
        expected_pixel_format: str | None = None,
        settle_s: float = 0.5,
        poll_interval_s: float = 0.05,
        after: str = "move",
        ignore: tuple[str, ...] | list[str] = (),
        recorded: Recorded | None = None,
        exposure_us: float | None = None,
        gain_db: float | None = None,
        allow_colour: bool = False,
    ) -> None:
        super().__init__()
        bad = [f for f in formats if f not in FORMATS]
        if bad or not formats:
            raise CameraConfigError(f"formats must be some of {FORMATS}, got {list(formats)}")
        if expected_pixel_format is not None and expected_pixel_format not in GREY_FORMATS:
            raise CameraConfigError(f"expected_pixel_format must be one of {GREY_FORMATS}, got {expected_pixel_format!r}")
        self.folder = Path(folder)
        self.serial = serial
        self.formats = tuple(formats)
        self.expected_width, self.expected_height = expected_width, expected_height
        self.expected_pixel_format = expected_pixel_format
        self.exposure_us, self.gain_db = exposure_us, gain_db
        self.allow_colour = allow_colour  # a replay folder of camera PNGs; never for X-ray
        self.watcher = FolderWatcher(folder, settle_s=settle_s, poll_interval_s=poll_interval_s,
                                     after=after, ignore=ignore, recorded=recorded)
        self._stop = threading.Event()
        self._open = False
        self._last: tuple[int, int, str] | None = None

    def set_recorded_check(self, recorded: Recorded) -> None:
        """How a restarted station asks its database whether a file (sha256) was recorded."""
        self.watcher.recorded = recorded

    # --- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        try:
            self.watcher.open()
        except WatchedFolderError as exc:
            raise CameraConfigError(str(exc)) from exc
        self._open = True

    def close(self) -> None:
        self.disarm()
        self._open = False

    def describe(self) -> CameraInfo:
        w, h, fmt = self._last or (0, 0, "Mono16")
        return CameraInfo(vendor="LineStation", model=type(self).__name__, serial=self.serial,
                          width=self.expected_width or w, height=self.expected_height or h,
                          pixel_format=self.expected_pixel_format or fmt, exposure_us=self.exposure_us,
                          gain_db=self.gain_db, trigger_modes=self.trigger_modes)

    def arm(self, mode: TriggerMode = TriggerMode.WATCHED_FOLDER) -> None:
        if not self._open:
            raise CameraConfigError(f"{type(self).__name__} is not open")
        super().arm(mode)
        self._stop.clear()

    def disarm(self) -> None:
        super().disarm()
        self._stop.set()

    # --- capture ---------------------------------------------------------------------
    def grab(self, timeout_s: float = 1.0) -> Frame:
        if not self._open or self._mode is None:
            raise CameraConfigError(f"{type(self).__name__} is not open and armed; open() and arm() first")
        try:
            claim = self.watcher.next_claim(timeout_s, self._stop, self._held)
        except WatchedFolderError as exc:
            raise CameraDisconnected(f"{self.serial}: {exc}") from exc
        if claim is None and self._held is not None and self._held():
            raise CaptureTimeout(f"{self.serial}: the station is held; no file taken from {self.folder}")
        if claim is None:
            raise CaptureTimeout(f"{self.serial}: no new image in {self.folder} within {timeout_s:g} s")
        trigger_id = self._next_trigger_id()
        try:
            image, fmt, kind, facts = self.decode(claim)
        except BadImage as err:
            try:
                where = self.watcher.quarantine(claim, err.reason, serial=self.serial)
            except OSError as exc:  # the file stays in processing/; a restart inspects it again
                log.error("%s could not be quarantined: %s", claim.name, exc)
                err.args = (f"{claim.name}: {err.reason} (could not be moved to quarantine/: {exc})",)
                raise err from exc
            err.args = (f"{claim.name}: {err.reason} (moved to {where.parent.name}/{where.name})",)
            raise err
        self._last = (image.shape[1], image.shape[0], fmt)
        meta = {"original": {"file": claim.name, "sha256": claim.sha256, "bytes": len(claim.data),
                             "format": kind, "ext": FILE_EXT[kind], "path": str(claim.path),
                             "resumed": claim.resumed}}
        if facts:
            meta[kind] = facts
        return Frame(image=image, pixel_format=fmt, camera_serial=self.serial, exposure_us=self.exposure_us,
                     gain_db=self.gain_db, trigger_id=trigger_id, device_timestamp_ns=claim.landed_ns,
                     source=claim.name, meta=meta, original=claim.data)

    def decode(self, claim: Claim) -> tuple[np.ndarray, str, str, dict]:
        """(image, pixel format, file format, facts) or :class:`BadImage` with ``reason``."""
        data, name = claim.data, claim.name
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        accepted = [e for f in self.formats for e in EXTENSIONS[f]]
        if not data:
            raise _bad("empty file (0 bytes)")
        if is_dicom(data):
            kind = "dicom"
        elif is_tiff(data):
            kind = "tiff"
        elif data.startswith(b"\x89PNG\r\n\x1a\n"):
            kind = "png"
        elif ext and ext not in accepted:
            raise _bad(f"not an image file (extension .{ext}; accepted: {', '.join(accepted)})")
        else:
            raise _bad(f"not an image (unrecognised content starting {data[:8]!r})")
        if kind not in self.formats:
            raise _bad(f"{kind.upper()} file, but this station accepts {', '.join(self.formats)}")
        facts: dict = {}
        try:
            if kind == "dicom":
                image, bits, facts = read_dicom(data)
                fmt = format_for_bits(bits) if image.dtype == np.uint16 else "Mono8"
            elif kind == "tiff":
                image, facts = read_tiff(data)
                fmt = {np.dtype(np.uint16): "Mono16", np.dtype(np.uint8): "Mono8"}.get(image.dtype)
                if fmt is None or image.ndim != 2:
                    raise _bad(f"TIFF of {image.dtype} {image.shape}; an X-ray image is 8- or 16-bit grey")
            else:
                image, fmt = decode_image(data, name)
        except (DicomReadError, TiffReadError) as exc:
            raise _bad(str(exc)) from None
        except BadImage as exc:
            raise _bad(getattr(exc, "reason", str(exc))) from None
        except Exception as exc:  # a decoder's own bug on odd input: still a bad file, with the why
            raise _bad(f"cannot be decoded ({type(exc).__name__}: {exc})") from None
        if image.ndim != 2 and not (self.allow_colour and fmt == "BGR8"):
            raise _bad(f"colour image {image.shape}; an X-ray image is grey")
        fmt = self._expected_format(image, fmt)
        h, w = image.shape[:2]
        if (self.expected_width and w != self.expected_width) or (self.expected_height and h != self.expected_height):
            raise _bad(f"size {w}x{h}, expected {self.expected_width or w}x{self.expected_height or h}")
        return image, fmt, kind, facts

    def _expected_format(self, image: np.ndarray, fmt: str) -> str:
        want = self.expected_pixel_format
        if want is None or want == fmt:
            return fmt
        bits, want_bits = PIXEL_FORMAT_BITS[fmt], PIXEL_FORMAT_BITS[want]
        if (want_bits > 8) != (bits > 8):
            raise _bad(f"{bits}-bit image, expected {want} ({want_bits}-bit)")
        top = int(image.max())
        if top >= 1 << want_bits:
            raise _bad(f"values up to {top} do not fit the {want_bits} bits of {want}")
        return want

    # --- after the record ---------------------------------------------------------------
    def on_recorded(self, outcome) -> None:
        """Inspection listener: the record of a frame from this folder is committed."""
        frame = getattr(outcome, "frame", None)
        original = (frame.meta.get("original") if frame is not None else None) or {}
        if frame is None or frame.camera_serial != self.serial or "sha256" not in original:
            return
        self.watcher.finish(original["path"], original["sha256"], original["file"])


def _bad(reason: str) -> BadImage:
    err = BadImage(reason)
    err.reason = reason
    return err
