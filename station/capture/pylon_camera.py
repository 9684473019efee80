"""Basler cameras through pypylon: the only module in the project that imports pypylon.

Works the same on a real camera and on pylon's camera emulation (``PYLON_CAMEMU=N`` in the
environment creates N emulated cameras with serials ``0815-0000`` ...). pylon reads that
variable on every device enumeration, so it may be set after ``pypylon`` is imported.

Emulation quirks this driver knows about (pypylon 26.9):

* ``ImageFileMode`` is ignored while ``TestImageSelector`` is not ``Off``.
* ``ImageFileMode`` serves the images of a folder in file-name order, looping, and restarts
  at the first file whenever grabbing starts. The frame has the *file's* size when the file
  is smaller than Width x Height (it is cropped from the top-left when larger). The file
  is rescaled to the pixel format's bit depth (an 8-bit PNG is shifted left by 4 for Mono12).
* The device timestamp of every emulated frame is 0; the driver reports it as ``None``.
* ``ForceFailedBufferCount`` defaults to 100, so it must be set before ``ForceFailedBuffer``.
* Writing ``FirePnPCallbackValue = 1`` makes pylon report the device as removed while the
  emulated device keeps delivering frames.
* The failed-buffer error code is 0; only the description says what happened.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from pypylon import genicam, pylon

from station.capture.base import (
    CameraConfigError,
    CameraDisconnected,
    CameraDriver,
    CameraInfo,
    CaptureError,
    CaptureTimeout,
    FailedBuffer,
    Frame,
    TriggerMode,
)

log = logging.getLogger(__name__)

# Unpacked mono formats only: GetArray() returns them as uint8 / uint16 with unshifted
# values. Packed variants (Mono12p, Mono12Packed) would need pylon's image format converter.
SUPPORTED_PIXEL_FORMATS = ("Mono8", "Mono10", "Mono12", "Mono16")

# SFNC 2.x cameras (ace 2, ace USB, emulation) name them ExposureTime / Gain; ace classic
# GigE cameras only have the SFNC 1.x ExposureTimeAbs / GainAbs. GainRaw is not in dB,
# so a camera with only GainRaw has no gain this driver can set.
_EXPOSURE_NODES = ("ExposureTime", "ExposureTimeAbs")
_GAIN_NODES = ("Gain", "GainAbs")


def _ms(seconds: float) -> int:
    return max(0, int(round(seconds * 1000)))


class PylonCamera(CameraDriver):
    """A Basler camera (or pylon emulated camera) behind the :class:`CameraDriver` seam.

    Not thread-safe: one owner (the inspection cycle) calls arm / grab / set_*.
    """

    trigger_modes = frozenset({TriggerMode.SOFTWARE, TriggerMode.HARDWARE_LINE})

    def __init__(
        self,
        *,
        serial: str | None = None,
        pixel_format: str = "Mono8",
        exposure_us: float = 10_000.0,
        gain_db: float = 0.0,
        width: int | None = None,
        height: int | None = None,
        image_folder: Path | None = None,
        packet_size: int | None = None,
        inter_packet_delay: int | None = None,
        trigger_ready_timeout_s: float = 1.0,
        num_buffers: int = 10,
    ) -> None:
        super().__init__()
        if pixel_format not in SUPPORTED_PIXEL_FORMATS:
            raise CameraConfigError(
                f"pixel format {pixel_format!r} is not supported by PylonCamera "
                f"(supported: {', '.join(SUPPORTED_PIXEL_FORMATS)})"
            )
        self._serial = serial
        self._pixel_format = pixel_format
        self._exposure_us = float(exposure_us)
        self._gain_db = float(gain_db)
        self._width = width
        self._height = height
        self._image_folder = Path(image_folder) if image_folder is not None else None
        self._packet_size = packet_size
        self._inter_packet_delay = inter_packet_delay
        self._trigger_ready_timeout_s = trigger_ready_timeout_s
        self._num_buffers = num_buffers
        self._cam: pylon.InstantCamera | None = None
        self._nodemap = None
        self._tick_ns = 1.0  # device timestamp tick length in ns

    # --- lifecycle -------------------------------------------------------------------
    @property
    def serial(self) -> str | None:
        """The serial asked for, or once open the serial of the opened device."""
        return self._serial

    @property
    def is_open(self) -> bool:
        return self._cam is not None

    def open(self) -> None:
        if self._cam is not None:
            return
        self._check_image_folder()
        device_info = self._find_device()
        serial = device_info.GetSerialNumber()
        try:
            cam = pylon.InstantCamera(pylon.TlFactory.GetInstance().CreateDevice(device_info))
            cam.Open()
        except genicam.GenericException as exc:
            # e.g. the camera is already opened by another process (pylon Viewer).
            raise CameraConfigError(f"cannot open pylon camera {serial}: {exc}") from exc
        self._cam = cam
        self._nodemap = cam.GetNodeMap()
        self._serial = serial
        try:
            self._configure()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        cam, self._cam, self._nodemap = self._cam, None, None
        if cam is None:
            return
        self._mode = None
        # After a device removal every call below may raise; the camera object must still
        # be destroyed so that a later open() gets a fresh pylon device.
        for step in (cam.StopGrabbing, cam.Close, cam.DestroyDevice):
            try:
                step()
            except genicam.GenericException as exc:
                log.debug("pylon %s: %s during close: %s", self._serial, step.__name__, exc)

    def describe(self) -> CameraInfo:
        cam = self._require_open()
        info = cam.GetDeviceInfo()
        try:
            return CameraInfo(
                vendor=info.GetVendorName(),
                model=info.GetModelName(),
                serial=info.GetSerialNumber(),
                width=int(self._node("Width").GetValue()),
                height=int(self._node("Height").GetValue()),
                pixel_format=self._node("PixelFormat").ToString(),
                exposure_us=self._exposure_us,
                gain_db=self._gain_db,
                trigger_modes=self.trigger_modes,
            )
        except genicam.GenericException as exc:
            raise self._translate(exc, "describe") from exc

    # --- acquisition -----------------------------------------------------------------
    def arm(self, mode: TriggerMode = TriggerMode.SOFTWARE) -> None:
        super().arm(mode)
        cam = self._require_open()
        try:
            if cam.IsGrabbing():
                cam.StopGrabbing()
            self._set("TriggerSelector", "FrameStart")
            self._set("TriggerMode", "On")
            if mode is TriggerMode.SOFTWARE:
                self._set("TriggerSource", "Software")
            else:
                self._set("TriggerSource", "Line1")
                self._set_if_writable("TriggerActivation", "RisingEdge")
            # OneByOne, not LatestImageOnly: every trigger is one part, and frames must be
            # handed out in trigger order. LatestImageOnly would silently drop a frame when
            # two parts trigger before the cycle grabs, and the next part would then be
            # paired with the wrong image. With OneByOne a backlog stays visible and ordered.
            cam.StartGrabbing(pylon.GrabStrategy_OneByOne)
        except CaptureError:
            self._mode = None
            raise
        except genicam.GenericException as exc:
            self._mode = None
            raise self._translate(exc, f"arm {mode.value}") from exc

    def disarm(self) -> None:
        super().disarm()
        if self._cam is not None:
            try:
                self._cam.StopGrabbing()
            except genicam.GenericException as exc:
                log.debug("pylon %s: StopGrabbing during disarm: %s", self._serial, exc)

    def grab(self, timeout_s: float = 1.0) -> Frame:
        cam = self._require_open()
        if self._mode is None:
            raise CameraConfigError(f"pylon camera {self._serial} is not armed; call arm() first")
        deadline = time.monotonic() + timeout_s
        try:
            if cam.IsCameraDeviceRemoved():
                raise CameraDisconnected(f"pylon camera {self._serial} was removed")
            if self._mode is TriggerMode.SOFTWARE:
                self._drain_stale_frames()
                self._software_trigger(deadline)
            remaining = _ms(deadline - time.monotonic())
            result = cam.RetrieveResult(remaining, pylon.TimeoutHandling_Return)
        except CaptureError:
            raise
        except genicam.GenericException as exc:
            raise self._translate(exc, "grab") from exc
        if not result.IsValid():
            if cam.IsCameraDeviceRemoved():
                raise CameraDisconnected(f"pylon camera {self._serial} was removed")
            raise CaptureTimeout(
                f"pylon camera {self._serial}: no frame within {timeout_s:.3f} s "
                f"({self._mode.value} trigger)"
            )
        try:
            return self._to_frame(result)
        finally:
            # The buffer goes back to pylon's pool; the frame holds a copy.
            result.Release()

    def _software_trigger(self, deadline: float) -> None:
        cam = self._cam
        # A camera still busy with the previous exposure/readout ignores a trigger, so wait
        # until it can accept one instead of firing into the void.
        wait_ms = _ms(min(self._trigger_ready_timeout_s, deadline - time.monotonic()))
        if not cam.WaitForFrameTriggerReady(wait_ms, pylon.TimeoutHandling_Return):
            raise CaptureTimeout(
                f"pylon camera {self._serial}: not ready for a software trigger within "
                f"{wait_ms} ms"
            )
        cam.ExecuteSoftwareTrigger()

    def _drain_stale_frames(self) -> None:
        # In SOFTWARE mode each grab triggers exactly one frame, so a frame already waiting
        # is the late answer to an earlier grab that timed out; handing it out now would
        # pair this part with the previous part's image.
        while True:
            result = self._cam.RetrieveResult(0, pylon.TimeoutHandling_Return)
            if not result.IsValid():
                return
            log.warning("pylon %s: discarding a stale frame from an earlier trigger", self._serial)
            result.Release()

    def _to_frame(self, result) -> Frame:
        if not result.GrabSucceeded():
            code = result.GetErrorCode() & 0xFFFFFFFF
            raise FailedBuffer(
                f"pylon camera {self._serial}: failed buffer "
                f"(error 0x{code:08X}): {result.GetErrorDescription()}"
            )
        image = np.array(result.GetArray(), copy=True)
        ticks = result.GetTimeStamp()
        return Frame(
            image=image,
            pixel_format=self._pixel_format,
            camera_serial=self._serial or "",
            exposure_us=self._exposure_us,
            gain_db=self._gain_db,
            trigger_id=self._next_trigger_id(),
            # 0 means "no timestamp" (the emulation never sets one).
            device_timestamp_ns=int(ticks * self._tick_ns) if ticks else None,
            # The camera's own frame counter: a gap means the camera dropped a frame.
            meta={"device_frame_id": int(result.GetBlockID())},
        )

    # --- settings --------------------------------------------------------------------
    def set_exposure(self, exposure_us: float) -> None:
        if self._cam is None:
            self._exposure_us = float(exposure_us)
            return
        self._exposure_us = self._set_float(_EXPOSURE_NODES, exposure_us, "exposure (us)")

    def set_gain(self, gain_db: float) -> None:
        if self._cam is None:
            self._gain_db = float(gain_db)
            return
        self._gain_db = self._set_float(_GAIN_NODES, gain_db, "gain (dB)")

    # --- emulation-only fault injection ----------------------------------------------
    def inject_failed_buffers(self, count: int = 1) -> None:
        """Emulation only: mark the next ``count`` frames as failed buffers.

        Uses the emulated camera's ``ForceFailedBufferCount`` / ``ForceFailedBuffer``
        nodes; raises :class:`CameraConfigError` on a real camera.
        """
        self._require_emulation("ForceFailedBuffer", "failed-buffer injection")
        # The count defaults to 100 on the emulated camera, so always set it first.
        self._set("ForceFailedBufferCount", int(count))
        self._node("ForceFailedBuffer").Execute()

    def simulate_removal(self) -> None:
        """Emulation only: make pylon report the device as removed (cable pulled).

        The next :meth:`grab` raises :class:`CameraDisconnected`; ``close()`` then
        ``open()`` reconnects.
        """
        self._require_emulation("FirePnPCallbackValue", "device-removal simulation")
        # Writing 1 fires pylon's removal callback; the emulated device itself keeps running.
        self._set("FirePnPCallbackValue", 1)

    # --- internals -------------------------------------------------------------------
    def _find_device(self):
        try:
            devices = list(pylon.TlFactory.GetInstance().EnumerateDevices())
        except genicam.GenericException as exc:
            raise CameraConfigError(f"pylon device enumeration failed: {exc}") from exc
        if not devices:
            raise CameraConfigError(
                "no pylon camera found (for pylon's camera emulation set PYLON_CAMEMU=N)"
            )
        if self._serial is None:
            return devices[0]
        for device in devices:
            if device.GetSerialNumber() == self._serial:
                return device
        found = ", ".join(d.GetSerialNumber() for d in devices)
        raise CameraConfigError(f"no pylon camera with serial {self._serial!r} (found: {found})")

    def _check_image_folder(self) -> None:
        if self._image_folder is not None and not self._image_folder.exists():
            # pylon would accept the path and deliver a failed buffer on every grab.
            raise CameraConfigError(f"image_folder {str(self._image_folder)!r} does not exist")

    def _configure(self) -> None:
        cam = self._cam
        cam.MaxNumBuffer.SetValue(self._num_buffers)
        self._set("PixelFormat", self._pixel_format)
        if self._width is not None or self._height is not None:
            # Offsets first: the maximum Width/Height shrink as the offsets grow.
            self._set_if_writable("OffsetX", 0)
            self._set_if_writable("OffsetY", 0)
        if self._width is not None:
            self._set("Width", int(self._width))
        if self._height is not None:
            self._set("Height", int(self._height))
        self._set_if_writable("ExposureAuto", "Off")
        self._set_if_writable("GainAuto", "Off")
        self._exposure_us = self._set_float(_EXPOSURE_NODES, self._exposure_us, "exposure (us)")
        self._gain_db = self._set_float(_GAIN_NODES, self._gain_db, "gain (dB)")
        if self._packet_size is not None:
            self._set("GevSCPSPacketSize", int(self._packet_size))
        if self._inter_packet_delay is not None:
            self._set("GevSCPD", int(self._inter_packet_delay))
        if self._image_folder is not None:
            self._require_emulation("ImageFileMode", "image_folder")
            # Written in the order Off -> filename -> On. Measured on pylon 26.9 the order of
            # the three writes does not matter, but a selected test image silently wins over
            # the files, so TestImageSelector must end up Off.
            self._set("TestImageSelector", "Off")
            self._set("ImageFilename", str(self._image_folder))
            self._set("ImageFileMode", "On")
        tick_frequency = self._readable("GevTimestampTickFrequency")
        if tick_frequency is not None:
            # GigE (SFNC 1.x) timestamps count ticks of this frequency; USB3 and SFNC 2.x
            # cameras count nanoseconds.
            self._tick_ns = 1e9 / tick_frequency.GetValue()

    def _require_open(self) -> pylon.InstantCamera:
        if self._cam is None:
            raise CameraConfigError(f"pylon camera {self._serial or '(first)'} is not open")
        return self._cam

    def _require_emulation(self, node_name: str, what: str) -> None:
        self._require_open()
        if not genicam.IsAvailable(self._nodemap.GetNode(node_name)):
            raise CameraConfigError(
                f"{what} needs pylon's camera emulation; camera {self._serial} has no "
                f"{node_name} node"
            )

    def _node(self, name: str):
        node = self._nodemap.GetNode(name)
        if node is None or not genicam.IsAvailable(node):
            raise CameraConfigError(f"pylon camera {self._serial} has no parameter {name!r}")
        return node

    def _readable(self, name: str):
        node = self._nodemap.GetNode(name)
        return node if node is not None and genicam.IsReadable(node) else None

    def _set(self, name: str, value: object) -> None:
        node = self._node(name)
        try:
            if isinstance(value, str):
                node.FromString(value)
            else:
                node.SetValue(value)
        except genicam.GenericException as exc:
            raise self._translate(exc, f"set {name} = {value!r}") from exc

    def _set_if_writable(self, name: str, value: object) -> None:
        node = self._nodemap.GetNode(name)
        if node is not None and genicam.IsWritable(node):
            self._set(name, value)

    def _set_float(self, names: tuple[str, ...], value: float, what: str) -> float:
        """Write the first available node of ``names`` and return the value the camera kept."""
        for name in names:
            node = self._nodemap.GetNode(name)
            if node is not None and genicam.IsAvailable(node):
                break
        else:
            raise CameraConfigError(
                f"pylon camera {self._serial} has no {what} parameter ({' / '.join(names)})"
            )
        try:
            low, high = node.GetMin(), node.GetMax()
        except genicam.GenericException as exc:
            raise self._translate(exc, f"read range of {name}") from exc
        if not low <= value <= high:
            raise CameraConfigError(
                f"pylon camera {self._serial}: {what} {value} is outside {name}'s range "
                f"[{low:g}, {high:g}]"
            )
        self._set(name, float(value))
        # The camera rounds to its increment (emulation: 1234.5 us -> 1235 us).
        return float(node.GetValue())

    def _translate(self, exc: genicam.GenericException, action: str) -> CaptureError:
        """Map a GenICam / pylon exception to the capture error the cycle understands."""
        where = f"pylon camera {self._serial}: {action}"
        cam = self._cam
        if cam is not None and cam.IsCameraDeviceRemoved():
            return CameraDisconnected(f"{where}: device removed ({exc})")
        if isinstance(exc, genicam.TimeoutException):
            return CaptureTimeout(f"{where}: {exc}")
        if isinstance(exc, (genicam.InvalidArgumentException, genicam.OutOfRangeException,
                            genicam.AccessException)):
            return CameraConfigError(f"{where}: {exc}")
        if isinstance(exc, genicam.RuntimeException):
            # pylon raises RuntimeException when the transport to the device is lost; the
            # device must be closed and re-opened either way.
            return CameraDisconnected(f"{where}: {exc}")
        return CaptureError(f"{where}: {exc}")
