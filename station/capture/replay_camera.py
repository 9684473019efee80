"""Replay: feed a folder of saved images through the live pipeline as if a camera took them.

SOFTWARE trigger: each ``grab`` returns the next file of the folder (natural sort order:
``part_2`` before ``part_10``), ``NoMoreFrames`` at the end unless ``loop``. Files are
read, never moved.

A folder that files *land* in (an X-ray detector, another station) is a different source
with its own rules (complete files only, each exactly once, across restarts, bad files
quarantined): :class:`station.capture.xray_camera.XrayFolderCamera`, which the config
factory builds for ``type: replay`` with ``trigger: watched_folder`` too.

A file that cannot be used (empty, truncated, corrupt, not an image, wrong size or bit depth)
raises :class:`BadImage` naming the file and the reason; the cursor has already moved past it,
so the next ``grab`` continues with the next file.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import threading
from pathlib import Path

from station.capture.base import (
    BadImage,
    CameraConfigError,
    CameraDisconnected,
    CameraDriver,
    CameraInfo,
    Frame,
    NoMoreFrames,
    TriggerMode,
)
from station.capture.image_files import decode_image

IMAGE_EXTENSIONS = ("png", "tif", "tiff", "bmp", "jpg", "jpeg")
TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".filepart", ".swp", "~")
REPLAY_FORMATS = ("Mono8", "Mono10", "Mono12", "Mono16", "BGR8")


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)], name


class ReplayCamera(CameraDriver):
    """Replays the images of ``folder`` in order (SOFTWARE trigger).

    ``Frame.source`` is the file's path; ``Frame.meta["replay"]`` holds ``file`` (its name),
    ``sha256`` (of the bytes read) and ``index`` (the n-th file taken since open).
    ``exposure_us`` / ``gain_db`` are recorded on each frame as the settings the images were
    taken with (None = unknown).
    """

    trigger_modes = frozenset({TriggerMode.SOFTWARE})

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        pattern: str | None = None,
        extensions: tuple[str, ...] | list[str] = IMAGE_EXTENSIONS,
        loop: bool = False,
        expected_width: int | None = None,
        expected_height: int | None = None,
        expected_pixel_format: str | None = None,
        serial: str = "REPLAY",
        exposure_us: float | None = None,
        gain_db: float | None = None,
    ) -> None:
        super().__init__()
        if expected_pixel_format is not None and expected_pixel_format not in REPLAY_FORMATS:
            raise CameraConfigError(
                f"ReplayCamera expected_pixel_format must be one of {REPLAY_FORMATS}, got {expected_pixel_format!r}")
        self.folder = Path(folder)
        self.pattern = pattern
        self.extensions = frozenset(e.lower().lstrip(".") for e in extensions)
        self.loop = loop
        self.expected_width, self.expected_height = expected_width, expected_height
        self.expected_pixel_format = expected_pixel_format
        self.serial = serial
        self.exposure_us = None if exposure_us is None else float(exposure_us)
        self.gain_db = None if gain_db is None else float(gain_db)
        self._lock = threading.Lock()
        self._open = False
        self._files: list[Path] = []
        self._cursor = 0
        self._taken = 0
        self._probe: tuple[int, int, str] | None = None

    # --- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        if not self.folder.is_dir():
            raise CameraConfigError(f"replay folder {self.folder} does not exist or is not a folder")
        with self._lock:
            self._files = self._list()
            self._cursor = 0
            self._open = True
        self._probe = self._probe_first()

    def close(self) -> None:
        self.disarm()
        self._open = False

    def describe(self) -> CameraInfo:
        w, h, fmt = self._probe or (0, 0, "Mono8")
        return CameraInfo(vendor="LineStation", model="ReplayCamera", serial=self.serial,
                          width=self.expected_width or w, height=self.expected_height or h,
                          pixel_format=self.expected_pixel_format or fmt, exposure_us=self.exposure_us,
                          gain_db=self.gain_db, trigger_modes=self.trigger_modes)

    def arm(self, mode: TriggerMode = TriggerMode.SOFTWARE) -> None:
        if not self._open:
            raise CameraConfigError("ReplayCamera is not open")
        super().arm(mode)
        with self._lock:
            if self._taken == 0:
                self._files = self._list()  # pick up files added between open() and arm()

    def rewind(self) -> None:
        """Re-read the folder and start again from its first file (SOFTWARE mode)."""
        with self._lock:
            self._files = self._list()
            self._cursor = 0

    @property
    def remaining(self) -> int:
        """Files not yet replayed in SOFTWARE mode (ignores looping)."""
        return max(0, len(self._files) - self._cursor)

    # --- capture ---------------------------------------------------------------------
    def grab(self, timeout_s: float = 1.0) -> Frame:
        if not self._open:
            raise CameraConfigError("ReplayCamera is not open")
        if self._mode is None:
            raise CameraConfigError("ReplayCamera is not armed; call arm() before grab()")
        with self._lock:
            if self._cursor >= len(self._files):
                if not (self.loop and self._files):
                    raise NoMoreFrames(f"{self.folder}: no more images ({len(self._files)} in the folder)")
                self._cursor = 0
            path = self._files[self._cursor]
            self._cursor += 1
        return self._load(path)

    # --- files -----------------------------------------------------------------------
    def _wanted(self, name: str) -> bool:
        if name.startswith((".", "~")) or name.lower().endswith(TEMP_SUFFIXES):
            return False
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if ext not in self.extensions:
            return False
        return self.pattern is None or fnmatch.fnmatch(name, self.pattern)

    def _list(self) -> list[Path]:
        """The folder's images in natural order (part2 before part10)."""
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            raise CameraDisconnected(f"{self.serial}: cannot list {self.folder}: {exc}") from exc
        files = []
        for e in entries:
            try:
                if self._wanted(e.name) and e.is_file():
                    files.append(Path(e.path))
            except OSError:
                continue  # vanished between listing and the check
        return sorted(files, key=lambda p: _natural_key(p.name))

    def _probe_first(self) -> tuple[int, int, str] | None:
        """Size and format of the first usable file, so describe() can tell before a grab."""
        for path in self._files[:5]:
            try:
                image, fmt = decode_image(path.read_bytes(), str(path),
                                          expected_pixel_format=self.expected_pixel_format)
            except (OSError, BadImage):
                continue
            return image.shape[1], image.shape[0], fmt
        return None

    def _load(self, path: Path) -> Frame:
        trigger_id = self._next_trigger_id()
        try:
            st = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            raise BadImage(f"{path}: file vanished before it could be read") from None
        except OSError as exc:
            raise BadImage(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        finally:
            with self._lock:
                index = self._taken
                self._taken += 1
        image, fmt = decode_image(data, str(path), expected_width=self.expected_width,
                                  expected_height=self.expected_height,
                                  expected_pixel_format=self.expected_pixel_format)
        meta = {"replay": {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "index": index}}
        return Frame(image=image, pixel_format=fmt, camera_serial=self.serial, exposure_us=self.exposure_us,
                     gain_db=self.gain_db, trigger_id=trigger_id, device_timestamp_ns=st.st_mtime_ns,
                     source=str(path), meta=meta)
