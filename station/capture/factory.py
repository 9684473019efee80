"""Build the configured driver. Runtime code reaches drivers (real or simulated) only here.

Vendor adapters are imported lazily so a station on the simulated camera never loads a
vendor SDK, and a missing SDK is reported as a configuration error for that camera only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from station.capture.base import CameraConfigError, CameraDriver, TriggerMode

if TYPE_CHECKING:
    from station.config import CameraConfig


def _settings(cfg) -> dict:
    out = {}
    if cfg.exposure_us is not None:
        out["exposure_us"] = cfg.exposure_us
    if cfg.gain_db is not None:
        out["gain_db"] = cfg.gain_db
    return out


def make_camera(cfg: CameraConfig) -> CameraDriver:
    """Create (not open) the driver described by a camera config section."""
    if cfg.type == "sim":
        from station.capture.sim_camera import SimCamera

        return SimCamera(width=cfg.width, height=cfg.height, pixel_format=cfg.pixel_format,
                         seed=cfg.seed, serial=cfg.serial, defect_rate=cfg.defect_rate,
                         defect_kinds=tuple(cfg.defect_kinds), fault_rates=dict(cfg.fault_rates),
                         **_settings(cfg))
    if cfg.type == "xray_folder":
        return _xray_folder(cfg)
    if cfg.type == "replay" and cfg.trigger == "watched_folder":
        # one watched-folder implementation: replay's folder mode is the X-ray driver on PNGs too
        from station.capture.xray_camera import XrayFolderCamera

        return XrayFolderCamera(cfg.folder, serial=cfg.serial, formats=("png", "tiff", "dicom"),
                                expected_width=cfg.width, expected_height=cfg.height,
                                expected_pixel_format=None if cfg.pixel_format == "BGR8" else cfg.pixel_format,
                                allow_colour=cfg.pixel_format in (None, "BGR8"))
    if cfg.type == "replay":
        from station.capture.replay_camera import ReplayCamera

        return ReplayCamera(cfg.folder, loop=cfg.loop, serial=cfg.serial, expected_width=cfg.width,
                            expected_height=cfg.height, expected_pixel_format=cfg.pixel_format)
    if cfg.type == "pylon":
        try:
            from station.capture.pylon_camera import PylonCamera
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise CameraConfigError(f"pypylon is not available: {exc}") from exc
        return PylonCamera(serial=cfg.serial, pixel_format=cfg.pixel_format, width=cfg.width,
                           height=cfg.height, image_folder=cfg.emulation_image_folder, **_settings(cfg))
    if cfg.type == "genicam":
        try:
            from station.capture.genicam_camera import GenICamCamera
        except ImportError as exc:  # pragma: no cover
            raise CameraConfigError(f"harvesters/genicam is not available: {exc}") from exc
        return GenICamCamera(cti=cfg.cti, serial=cfg.serial, pixel_format=cfg.pixel_format,
                             width=cfg.width, height=cfg.height, **_settings(cfg))
    raise CameraConfigError(f"unknown camera type {cfg.type!r}")


def _xray_folder(cfg) -> CameraDriver:
    from station.capture.xray_camera import XrayFolderCamera

    kwargs = dict(serial=cfg.serial, formats=tuple(cfg.formats), expected_width=cfg.width,
                  expected_height=cfg.height, expected_pixel_format=cfg.pixel_format, settle_s=cfg.settle_s,
                  poll_interval_s=cfg.poll_interval_s, after=cfg.after_inspection, ignore=tuple(cfg.ignore),
                  **_settings(cfg))
    if cfg.sim is None:
        return XrayFolderCamera(cfg.folder, **kwargs)
    from station.capture.sim_xray import SimXrayCamera, SimXraySpec

    return SimXrayCamera(cfg.folder, SimXraySpec(**cfg.sim.model_dump()), **kwargs)


def trigger_mode(cfg: CameraConfig) -> TriggerMode:
    return TriggerMode(cfg.trigger)
