"""GenICam / GenTL camera driver built on harvesters.

This is the only module that imports ``harvesters`` or ``genicam``. It works with any GenTL
producer (a ``.cti`` file from the camera vendor) and, for tests and demos, with the Viky
simulator producer that ships inside the ``genicam`` wheel.

Trigger support is discovered from the remote device's nodemap rather than assumed:

* ``TriggerMode`` + ``TriggerSource`` with a ``Software`` entry + ``TriggerSoftware`` ->
  real software trigger.
* ``TriggerMode`` + ``TriggerSource`` with the configured ``Line*`` entry -> HARDWARE_LINE.
* No trigger features (the Viky simulator) -> SOFTWARE is *emulated* on a free-running
  stream (see :meth:`GenICamCamera._grab_emulated`); HARDWARE_LINE is refused.

Not thread-safe: one thread owns a driver instance (the capture loop).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import cv2
import genicam
import numpy as np
from genicam import genapi, gentl
from harvesters.core import Buffer, Callback, Harvester, ImageAcquirer

from station.capture.base import (
    CameraConfigError,
    CameraDisconnected,
    CameraDriver,
    CameraInfo,
    CaptureTimeout,
    FailedBuffer,
    Frame,
    TriggerMode,
)

log = logging.getLogger(__name__)

GENTL_PATH_ENV = "GENICAM_GENTL64_PATH"
_GENICAM_ERRORS = (gentl.GenericException, genapi.GenericException)

# Device pixel format -> (frame pixel format, cv2 conversion to BGR or None).
# Mono10/12/16 here are the *unpacked* PFNC formats (one uint16 per pixel, unshifted).
_DECODERS: dict[str, tuple[str, int | None]] = {
    "Mono8": ("Mono8", None),
    "Mono10": ("Mono10", None),
    "Mono12": ("Mono12", None),
    "Mono16": ("Mono16", None),
    "BGR8": ("BGR8", None),
    "RGB8": ("BGR8", cv2.COLOR_RGB2BGR),
    "BGRa8": ("BGR8", cv2.COLOR_BGRA2BGR),
    "RGBa8": ("BGR8", cv2.COLOR_RGBA2BGR),
}
# The station speaks "BGR8" for colour; a device may only offer one of these layouts.
_COLOUR_FALLBACKS = ("BGR8", "RGB8", "BGRa8", "RGBa8")

# harvesters allows one open GenTL system per producer per process: a second Harvester on
# the same .cti silently enumerates zero devices. Remember which producers our instances
# hold so that case gets a clear error instead of "no device found".
_producers_in_use: set[str] = set()
_producers_lock = threading.Lock()


def bundled_simulator_cti() -> Path | None:
    """The Viky simulator producer shipped inside the installed ``genicam`` package."""
    path = Path(genicam.__file__).resolve().parent / "viky.cti"
    return path if path.is_file() else None


def find_producers() -> list[Path]:
    """GenTL producers from ``GENICAM_GENTL64_PATH`` dirs; else the bundled simulator.

    The simulator is only a fallback: when a real producer is installed it is never mixed
    in, so a camera that is unplugged cannot be silently replaced by the simulator.
    """
    found: list[Path] = []
    for entry in os.environ.get(GENTL_PATH_ENV, "").split(os.pathsep):
        if entry and Path(entry).is_dir():
            found.extend(sorted(p.resolve() for p in Path(entry).glob("*.cti")))
    if found:
        return list(dict.fromkeys(found))
    sim = bundled_simulator_cti()
    if sim is not None:
        log.warning("no GenTL producer in %s; falling back to the genicam simulator %s",
                    GENTL_PATH_ENV, sim)
        return [sim]
    return []


class _CountIncomplete(Callback):
    """Counts buffers harvesters discards as incomplete (it never hands them to us)."""

    def __init__(self) -> None:
        self.count = 0

    def emit(self, context: object = None) -> None:
        self.count += 1


class GenICamCamera(CameraDriver):
    """A GenTL camera opened through harvesters.

    Args:
        cti: a producer file; ``None`` uses :func:`find_producers`.
        serial: select the device by serial number (``DeviceInfo.serial_number``).
        device_index: select by position in the enumeration (default 0). Not with ``serial``.
        pixel_format: device PFNC name (``Mono8``, ``RGBa8`` ...) or ``BGR8`` for "colour in
            whatever 8-bit RGB/BGR layout the device has". ``None`` keeps the device's.
        exposure_us, gain_db, width, height: written at open; ``None`` leaves the device as is.
        frame_rate_hz: ``AcquisitionFrameRate`` for free-running devices; it bounds the
            latency of the emulated software trigger (one to two frame periods).
        trigger_line: the ``TriggerSource`` entry used for HARDWARE_LINE.
    """

    def __init__(
        self,
        *,
        cti: Path | str | None = None,
        serial: str | None = None,
        device_index: int | None = None,
        pixel_format: str | None = None,
        exposure_us: float | None = None,
        gain_db: float | None = None,
        width: int | None = None,
        height: int | None = None,
        frame_rate_hz: float | None = None,
        trigger_line: str = "Line0",
    ) -> None:
        super().__init__()
        if serial is not None and device_index is not None:
            raise CameraConfigError("give either serial or device_index, not both")
        self._cti = Path(cti) if cti is not None else None
        self._serial_wanted = serial
        self._index_wanted = device_index
        self._pixel_format_wanted = pixel_format
        self._exposure_wanted = exposure_us
        self._gain_wanted = gain_db
        self._width_wanted = width
        self._height_wanted = height
        self._frame_rate_wanted = frame_rate_hz
        self._trigger_line = trigger_line

        self._harvester: Harvester | None = None
        self._ia: ImageAcquirer | None = None
        self._producers: list[str] = []
        self._incomplete = _CountIncomplete()
        self._vendor = self._model = self._serial = ""
        self.trigger_modes = frozenset()
        self.software_trigger_emulated = False

    # --- lifecycle -------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._ia is not None

    def open(self) -> None:
        if self._ia is not None:
            return
        producers = self._resolve_producers()
        with _producers_lock:
            busy = [p for p in producers if p in _producers_in_use]
            if busy:
                raise CameraConfigError(
                    f"GenTL producer {busy[0]} is already open in this process by another "
                    "GenICamCamera; harvesters cannot open one producer twice"
                )
            _producers_in_use.update(producers)
        self._producers = producers
        try:
            self._harvester = Harvester()
            for p in producers:
                self._harvester.add_file(p)
            self._harvester.update()
            self._ia = self._create_acquirer()
            self._configure()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._mode = None
        ia, h = self._ia, self._harvester
        self._ia = self._harvester = None
        # harvesters 1.4.3 quirk: after a device loss the first ia.destroy() raises half-way
        # (AcquisitionStop on a dead handle); a second call completes. Harvester.reset() is a
        # one-shot weakref finalizer, so if it ran into that error itself the producer would
        # stay open and this process could never enumerate its devices again. Hence destroy
        # the acquirer explicitly first, and retry once.
        for _ in range(2):
            try:
                if ia is not None:
                    ia.destroy()
                if h is not None:
                    h.reset()
                break
            except _GENICAM_ERRORS as exc:
                log.warning("error while releasing the GenTL device (retrying): %s", exc)
        with _producers_lock:
            _producers_in_use.difference_update(self._producers)
        self._producers = []

    def describe(self) -> CameraInfo:
        nm = self._nodemap()
        device_format = str(nm.PixelFormat.value)
        return CameraInfo(
            vendor=self._vendor,
            model=self._model,
            serial=self._serial,
            width=int(nm.Width.value),
            height=int(nm.Height.value),
            pixel_format=_DECODERS[device_format][0],
            exposure_us=self._read_float(self._exposure_node()),
            gain_db=self._read_float(self._gain_node()),
            trigger_modes=self.trigger_modes,
        )

    @property
    def device_pixel_format(self) -> str:
        """The PFNC format on the wire (``describe()`` reports the format of the frames)."""
        return str(self._nodemap().PixelFormat.value)

    # --- trigger ---------------------------------------------------------------------
    def arm(self, mode: TriggerMode = TriggerMode.SOFTWARE) -> None:
        ia = self._require_open()
        if mode is TriggerMode.HARDWARE_LINE and mode not in self.trigger_modes:
            raise CameraConfigError(
                f"{self._label()} cannot do a hardware line trigger: its nodemap has "
                f"{self._trigger_inventory()}; need TriggerMode=On and TriggerSource="
                f"{self._trigger_line!r}"
            )
        super().arm(mode)
        if ia.is_acquiring():
            ia.stop()
        try:
            if mode is TriggerMode.SOFTWARE and self.software_trigger_emulated:
                if self._has("TriggerMode"):
                    self._write("TriggerMode", "Off")
            else:
                self._select_frame_start()
                self._write("TriggerMode", "On")
                source = "Software" if mode is TriggerMode.SOFTWARE else self._trigger_line
                self._write("TriggerSource", source)
            ia.start()
        except _GENICAM_ERRORS as exc:
            self._mode = None
            raise CameraConfigError(f"{self._label()}: could not arm {mode.value}: {exc}") from exc

    def disarm(self) -> None:
        ia = self._ia
        self._mode = None
        if ia is None:
            return
        try:
            if ia.is_acquiring():
                ia.stop()
        except _GENICAM_ERRORS as exc:
            log.warning("%s: stopping acquisition failed: %s", self._label(), exc)

    def grab(self, timeout_s: float = 1.0) -> Frame:
        ia = self._require_open()
        if self._mode is None:
            raise CameraConfigError(f"{self._label()} is not armed; call arm() first")
        if not ia.is_valid():
            raise CameraDisconnected(f"{self._label()}: the image acquirer was released")
        deadline = time.monotonic() + timeout_s
        incomplete_before = self._incomplete.count
        trigger_id = self._next_trigger_id()
        if self._mode is TriggerMode.SOFTWARE:
            self._drain(ia)
            if self.software_trigger_emulated:
                return self._grab_emulated(ia, deadline, incomplete_before, trigger_id)
            try:
                self._nodemap().TriggerSoftware.execute()
            except _GENICAM_ERRORS as exc:
                raise CameraDisconnected(f"{self._label()}: TriggerSoftware failed: {exc}") from exc
        # HARDWARE_LINE deliberately does not drain: queued frames belong to earlier edges.
        buf = self._fetch(ia, deadline, incomplete_before)
        return self._to_frame(buf, trigger_id)

    def _grab_emulated(
        self, ia: ImageAcquirer, deadline: float, incomplete_before: int, trigger_id: int
    ) -> Frame:
        """Software "trigger" on a device that has no trigger features.

        The device free-runs. At the request we have already discarded every frame that
        was waiting in the output queue (:meth:`_drain`); the next frame to complete may
        still have been exposing before the request, so it is discarded too and the one
        after it is returned. That holds as long as at most one frame is in flight inside
        the device (exposure + readout no longer than one frame period), which is true of
        the simulator but not guaranteed for every free-running camera. Latency is one to
        two frame periods; ``Frame.meta["trigger_emulated"]`` marks these frames.
        """
        in_flight = self._fetch(ia, deadline, incomplete_before)
        in_flight.queue()
        return self._to_frame(self._fetch(ia, deadline, incomplete_before), trigger_id)

    # --- settings --------------------------------------------------------------------
    def set_exposure(self, exposure_us: float) -> None:
        node = self._exposure_node()
        if node is None:
            raise CameraConfigError(
                f"{self._label()} has no ExposureTime/ExposureTimeAbs node; exposure cannot be set"
            )
        if self._has("ExposureAuto"):
            self._write("ExposureAuto", "Off")
        self._write(node, float(exposure_us))

    def set_gain(self, gain_db: float) -> None:
        node = self._gain_node()
        if node is None:
            raise CameraConfigError(f"{self._label()} has no Gain node; gain cannot be set")
        if self._has("GainSelector"):
            self._write("GainSelector", "All", required=False)
        if self._has("GainAuto"):
            self._write("GainAuto", "Off")
        self._write(node, float(gain_db))

    def set_pixel_format(self, pixel_format: str) -> None:
        """Change the device pixel format; acquisition is restarted if armed."""
        ia = self._require_open()
        device_format = self._pick_pixel_format(pixel_format)
        acquiring = ia.is_acquiring()
        if acquiring:  # PixelFormat is locked (TLParamsLocked) while streaming
            ia.stop()
        try:
            self._write("PixelFormat", device_format)
        finally:
            if acquiring:
                ia.start()

    # --- internals: discovery --------------------------------------------------------
    def _resolve_producers(self) -> list[str]:
        if self._cti is not None:
            if not self._cti.is_file():
                raise CameraConfigError(f"GenTL producer file not found: {self._cti}")
            return [str(self._cti.resolve())]
        producers = find_producers()
        if not producers:
            raise CameraConfigError(
                f"no GenTL producer: {GENTL_PATH_ENV} has no .cti files and the genicam "
                "package has no bundled simulator"
            )
        return [str(p) for p in producers]

    def _create_acquirer(self) -> ImageAcquirer:
        h = self._harvester
        assert h is not None
        infos = list(h.device_info_list)
        if not infos:
            raise CameraConfigError(f"no GenICam device found via {', '.join(self._producers)}")
        if self._serial_wanted is not None:
            matches = [i for i in infos if _info(i, "serial_number") == self._serial_wanted]
            if len(matches) != 1:
                seen = ", ".join(f"{_info(i, 'model')}:{_info(i, 'serial_number')}" for i in infos)
                what = "no device" if not matches else f"{len(matches)} devices"
                raise CameraConfigError(
                    f"{what} with serial {self._serial_wanted!r} (found {seen})"
                )
            info = matches[0]
        else:
            index = self._index_wanted or 0
            if not 0 <= index < len(infos):
                raise CameraConfigError(
                    f"device_index {index} out of range: {len(infos)} device(s) found"
                )
            info = infos[index]
        self._vendor = _info(info, "vendor")
        self._model = _info(info, "model")
        self._serial = _info(info, "serial_number") or _info(info, "id_")
        # harvesters installs its own SIGINT handler (it destroys the acquirer on Ctrl-C)
        # whenever an acquirer is created on the main thread, and never restores the old
        # one. Shutdown belongs to the station, so put the previous handler back.
        on_main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGINT) if on_main else None
        try:
            ia = h.create(info)
        except gentl.ResourceInUseException as exc:
            raise CameraConfigError(f"{self._label()} is in use by another process") from exc
        except _GENICAM_ERRORS as exc:
            raise CameraConfigError(f"{self._label()} could not be opened: {exc}") from exc
        finally:
            if on_main and previous is not None:
                signal.signal(signal.SIGINT, previous)
        ia.add_callback(ImageAcquirer.Events.INCOMPLETE_BUFFER, self._incomplete)
        return ia

    def _configure(self) -> None:
        if self._pixel_format_wanted is not None or self.device_pixel_format not in _DECODERS:
            self._write("PixelFormat", self._pick_pixel_format(self._pixel_format_wanted))
        for name, value in (("Width", self._width_wanted), ("Height", self._height_wanted)):
            if value is not None:
                self._write(name, int(value))
        if self._frame_rate_wanted is not None:
            if not self._has("AcquisitionFrameRate"):
                raise CameraConfigError(f"{self._label()} has no AcquisitionFrameRate node")
            if self._has("AcquisitionFrameRateEnable"):
                self._write("AcquisitionFrameRateEnable", True)
            self._write("AcquisitionFrameRate", float(self._frame_rate_wanted))
        if self._exposure_wanted is not None:
            self.set_exposure(self._exposure_wanted)
        if self._gain_wanted is not None:
            self.set_gain(self._gain_wanted)
        self._discover_triggers()

    def _discover_triggers(self) -> None:
        modes = {TriggerMode.SOFTWARE}
        sources: tuple[str, ...] = ()
        if self._has("TriggerMode") and self._has("TriggerSource"):
            self._select_frame_start()
            nm = self._nodemap()
            if "On" in _symbolics(nm.TriggerMode):
                sources = _symbolics(nm.TriggerSource)
        self.software_trigger_emulated = not ("Software" in sources and self._has("TriggerSoftware"))
        if self._trigger_line in sources:
            modes.add(TriggerMode.HARDWARE_LINE)
        self.trigger_modes = frozenset(modes)

    def _trigger_inventory(self) -> str:
        names = [n for n in ("TriggerSelector", "TriggerMode", "TriggerSource", "TriggerSoftware")
                 if self._has(n)]
        if not names:
            return "no trigger features"
        if self._has("TriggerSource"):
            return f"{', '.join(names)} (TriggerSource: {', '.join(_symbolics(self._nodemap().TriggerSource))})"
        return ", ".join(names)

    def _select_frame_start(self) -> None:
        if self._has("TriggerSelector") and "FrameStart" in _symbolics(self._nodemap().TriggerSelector):
            self._write("TriggerSelector", "FrameStart")

    def _pick_pixel_format(self, wanted: str | None) -> str:
        offered = _symbolics(self._nodemap().PixelFormat)
        decodable = [f for f in offered if f in _DECODERS]
        if wanted is None:
            if not decodable:
                raise CameraConfigError(
                    f"{self._label()} offers no pixel format this driver decodes "
                    f"(offers {', '.join(offered)}; decodes {', '.join(_DECODERS)})"
                )
            return decodable[0]
        if wanted in decodable:
            return wanted
        if wanted == "BGR8":
            for alt in _COLOUR_FALLBACKS:
                if alt in decodable:
                    return alt
        raise CameraConfigError(
            f"{self._label()} cannot deliver pixel format {wanted!r} "
            f"(device offers {', '.join(offered)}; driver decodes {', '.join(_DECODERS)})"
        )

    # --- internals: acquisition ------------------------------------------------------
    def _drain(self, ia: ImageAcquirer) -> None:
        """Give back frames that were already waiting when the grab was requested."""
        for _ in range(ia.num_buffers + 1):  # there cannot be more waiting than announced
            buf = self._try_fetch(ia, 0.002)
            if buf is None:
                return
            buf.queue()

    def _fetch(self, ia: ImageAcquirer, deadline: float, incomplete_before: int) -> Buffer:
        while True:
            if self._incomplete.count > incomplete_before:
                raise FailedBuffer(
                    f"{self._label()}: the transport delivered an incomplete buffer"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CaptureTimeout(f"{self._label()}: no frame within the timeout")
            buf = self._try_fetch(ia, remaining)
            if buf is not None:
                return buf
            # None: timed out, or harvesters discarded an incomplete / unreadable buffer.

    def _try_fetch(self, ia: ImageAcquirer, timeout_s: float) -> Buffer | None:
        try:
            return ia.try_fetch(timeout=timeout_s)
        except _GENICAM_ERRORS as exc:
            raise CameraDisconnected(f"{self._label()}: device or stream lost: {exc}") from exc

    def _to_frame(self, buf: Buffer, trigger_id: int) -> Frame:
        host_time = time.time()
        try:
            component = buf.payload.components[0]
            device_format = str(component.data_format)
            image = _to_image(component.data, device_format,
                              int(component.width), int(component.height))
            meta = {"device_pixel_format": device_format,
                    "device_frame_id": _optional(lambda: int(buf.module.frame_id)),
                    "trigger_emulated": self.software_trigger_emulated
                    and self._mode is TriggerMode.SOFTWARE}
            device_ts = _optional(lambda: int(buf.module.timestamp_ns))
        except (IndexError, AttributeError) as exc:
            raise FailedBuffer(f"{self._label()}: buffer has no image component") from exc
        except _GENICAM_ERRORS as exc:
            raise FailedBuffer(f"{self._label()}: unreadable buffer: {exc}") from exc
        finally:
            try:
                buf.queue()  # the image was copied out above; the buffer goes back
            except _GENICAM_ERRORS as exc:
                raise CameraDisconnected(f"{self._label()}: could not requeue buffer: {exc}") from exc
        return Frame(
            image=image,
            pixel_format=_DECODERS[device_format][0],
            camera_serial=self._serial,
            exposure_us=self._read_float(self._exposure_node()),
            gain_db=self._read_float(self._gain_node()),
            trigger_id=trigger_id,
            timestamp=host_time,
            device_timestamp_ns=device_ts,
            meta=meta,
        )

    # --- internals: nodes ------------------------------------------------------------
    def _require_open(self) -> ImageAcquirer:
        if self._ia is None:
            raise CameraConfigError(f"{type(self).__name__} is not open; call open() first")
        return self._ia

    def _nodemap(self):  # genapi.NodeMap wrapper, untyped
        return self._require_open().remote_device.node_map

    def _has(self, name: str) -> bool:
        return bool(self._nodemap().has_node(name))

    def _exposure_node(self) -> str | None:
        return next((n for n in ("ExposureTime", "ExposureTimeAbs") if self._has(n)), None)

    def _gain_node(self) -> str | None:
        # GainRaw is not in dB, so it does not qualify.
        return "Gain" if self._has("Gain") else None

    def _read_float(self, name: str | None) -> float | None:
        """A node's value, or None when the device does not report it (e.g. the simulator)."""
        if name is None:
            return None
        try:
            return float(self._nodemap().get_node(name).value)
        except _GENICAM_ERRORS:
            return None

    def _write(self, name: str, value: object, *, required: bool = True) -> None:
        try:
            self._nodemap().get_node(name).value = value
        except _GENICAM_ERRORS as exc:
            if required:
                raise CameraConfigError(
                    f"{self._label()}: cannot set {name} = {value!r}: {_first_line(exc)}"
                ) from exc

    def _label(self) -> str:
        return f"{self._model or 'GenICam device'} (serial {self._serial or '?'})"


def _to_image(data: np.ndarray, device_format: str, width: int, height: int) -> np.ndarray:
    """Copy a component's flat pixel data into an HxW or HxWx3 BGR array."""
    if device_format not in _DECODERS:
        raise FailedBuffer(f"buffer has pixel format {device_format!r}, which is not decodable")
    channels = 1 if device_format.startswith("Mono") else (4 if device_format.endswith("a8") else 3)
    row = width * channels
    if height <= 0 or data.size < row * height or (data.size // height) < row:
        raise FailedBuffer(f"{device_format} buffer of {data.size} values is too small "
                           f"for {width}x{height}")
    # harvesters leaves line padding in the flat array; drop it by slicing each row.
    rows = data[: (data.size // height) * height].reshape(height, data.size // height)[:, :row]
    if channels == 1:
        return np.ascontiguousarray(rows).copy()
    pixels = rows.reshape(height, width, channels)
    conversion = _DECODERS[device_format][1]
    return cv2.cvtColor(pixels, conversion) if conversion is not None else pixels.copy()


def _symbolics(node) -> tuple[str, ...]:
    try:
        return tuple(str(s) for s in node.symbolics)
    except _GENICAM_ERRORS:
        return ()


def _info(device_info, attribute: str) -> str:
    """A DeviceInfo field; producers raise NotAvailable for fields they do not fill."""
    try:
        value = getattr(device_info, attribute)
    except _GENICAM_ERRORS:
        return ""
    return "" if value is None else str(value)


def _optional(read):
    try:
        return read()
    except _GENICAM_ERRORS:
        return None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
