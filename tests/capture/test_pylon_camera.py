"""PylonCamera against pylon's own camera emulation (PYLON_CAMEMU), no mocks.

pylon re-reads PYLON_CAMEMU on every device enumeration, so setting it with monkeypatch
per test (after pypylon was imported) is enough; no conftest is needed.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from station.capture.base import (
    CameraConfigError,
    CameraDisconnected,
    CaptureTimeout,
    FailedBuffer,
    TriggerMode,
)
from station.capture.pylon_camera import PylonCamera

EMU_SERIAL = "0815-0000"
SMALL = {"width": 64, "height": 48}  # small frames keep the emulation fast


@pytest.fixture(autouse=True)
def camemu(monkeypatch):
    monkeypatch.setenv("PYLON_CAMEMU", "2")


@pytest.fixture
def make_camera():
    """Build PylonCameras on the emulated device; every one is closed after the test."""
    cameras: list[PylonCamera] = []

    def make(**kwargs) -> PylonCamera:
        kwargs.setdefault("serial", EMU_SERIAL)
        cam = PylonCamera(**kwargs)
        cameras.append(cam)
        return cam

    yield make
    for cam in cameras:
        cam.close()


def _write_pngs(folder, images):
    for index, image in enumerate(images):
        assert cv2.imwrite(str(folder / f"part_{index:02d}.png"), image)


def test_opens_emulated_camera_by_serial_and_describes_itself(make_camera):
    cam = make_camera(serial="0815-0001", pixel_format="Mono12", exposure_us=2000.0,
                      gain_db=6.0, width=320, height=240)
    cam.open()
    info = cam.describe()
    assert info.vendor == "Basler"
    assert info.model == "Emulation"
    assert info.serial == "0815-0001"
    assert (info.width, info.height) == (320, 240)
    assert info.pixel_format == "Mono12"
    assert info.dtype == np.uint16
    assert info.exposure_us == pytest.approx(2000.0)
    assert info.gain_db == pytest.approx(6.0, abs=0.01)
    assert info.trigger_modes == {TriggerMode.SOFTWARE, TriggerMode.HARDWARE_LINE}


def test_no_serial_opens_the_first_device(make_camera, monkeypatch):
    monkeypatch.delenv("PYLON_CAMEMU")
    from pypylon import pylon  # only to make sure no real camera would be picked first

    if len(pylon.TlFactory.GetInstance().EnumerateDevices()):
        pytest.skip("a real pylon camera is attached; serial=None would open it")
    monkeypatch.setenv("PYLON_CAMEMU", "2")
    cam = make_camera(serial=None)
    cam.open()
    assert cam.describe().serial == EMU_SERIAL
    assert cam.serial == EMU_SERIAL


@pytest.mark.parametrize(
    ("pixel_format", "dtype", "max_value"),
    [("Mono8", np.uint8, 255), ("Mono12", np.uint16, 4095), ("Mono16", np.uint16, 65535)],
)
def test_software_trigger_gives_frames_of_the_right_shape_and_dtype(
    make_camera, pixel_format, dtype, max_value
):
    cam = make_camera(pixel_format=pixel_format, width=320, height=240,
                      exposure_us=1500.0, gain_db=3.0)
    cam.open()
    cam.arm(TriggerMode.SOFTWARE)
    frames = [cam.grab(timeout_s=1.0) for _ in range(3)]
    for frame in frames:
        assert frame.image.shape == (240, 320)
        assert frame.image.dtype == dtype
        assert frame.image.flags.owndata  # a copy, not a view of pylon's recycled buffer
        assert frame.pixel_format == pixel_format
        assert frame.max_value == max_value
        assert 0 < frame.image.max() <= max_value  # the test pattern is not all black
        assert frame.camera_serial == EMU_SERIAL
        assert frame.exposure_us == pytest.approx(1500.0)
        assert frame.gain_db == pytest.approx(3.0, abs=0.01)
        assert frame.device_timestamp_ns is None  # the emulation never stamps frames
    assert [f.trigger_id for f in frames] == [1, 2, 3]
    assert [f.meta["device_frame_id"] for f in frames] == [0, 1, 2]


def test_frames_reproduce_the_images_of_a_folder_in_order(make_camera, tmp_path):
    rng = np.random.default_rng(7)
    images = []
    for index in range(3):
        image = rng.integers(0, 256, (48, 64), dtype=np.uint8)
        image[index * 10:index * 10 + 8, :] = 255  # a distinctive bright band per part
        images.append(image)
    _write_pngs(tmp_path, images)
    cam = make_camera(image_folder=tmp_path, **SMALL)
    cam.open()
    cam.arm()
    grabbed = [cam.grab().image for _ in range(4)]
    for got, expected in zip(grabbed, images + images[:1]):  # the folder loops
        np.testing.assert_array_equal(got, expected)


def test_folder_images_restart_at_the_first_file_when_rearmed(make_camera, tmp_path):
    images = [np.full((48, 64), 50 * (i + 1), dtype=np.uint8) for i in range(3)]
    _write_pngs(tmp_path, images)
    cam = make_camera(image_folder=tmp_path, **SMALL)
    cam.open()
    cam.arm()
    cam.grab()
    cam.grab()
    cam.disarm()
    cam.arm()
    np.testing.assert_array_equal(cam.grab().image, images[0])


def test_sixteen_bit_folder_images_come_through_mono16_unchanged(make_camera, tmp_path):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 65536, (48, 64), dtype=np.uint16) for _ in range(2)]
    _write_pngs(tmp_path, images)
    cam = make_camera(pixel_format="Mono16", image_folder=tmp_path, **SMALL)
    cam.open()
    cam.arm()
    for expected in images:
        np.testing.assert_array_equal(cam.grab().image, expected)


def test_missing_image_folder_is_a_config_error(make_camera, tmp_path):
    cam = make_camera(image_folder=tmp_path / "nope", **SMALL)
    with pytest.raises(CameraConfigError, match="nope"):
        cam.open()
    assert not cam.is_open


def test_failed_buffer_raises_and_the_next_grab_succeeds(make_camera):
    cam = make_camera(**SMALL)
    cam.open()
    cam.arm()
    cam.grab()
    cam.inject_failed_buffers(1)
    with pytest.raises(FailedBuffer, match="incompletely grabbed"):
        cam.grab()
    frame = cam.grab()
    assert frame.image.shape == (48, 64)


def test_several_injected_failed_buffers_each_raise(make_camera):
    cam = make_camera(**SMALL)
    cam.open()
    cam.arm()
    cam.inject_failed_buffers(2)
    for _ in range(2):
        with pytest.raises(FailedBuffer):
            cam.grab()
    cam.grab()


def test_hardware_line_without_a_trigger_times_out_quickly(make_camera):
    cam = make_camera(**SMALL)
    cam.open()
    cam.arm(TriggerMode.HARDWARE_LINE)
    start = time.monotonic()
    with pytest.raises(CaptureTimeout, match="hardware_line"):
        cam.grab(timeout_s=0.2)
    assert time.monotonic() - start < 0.6


def test_exposure_and_gain_round_trip(make_camera):
    cam = make_camera(**SMALL)
    cam.open()
    cam.set_exposure(2500.0)
    cam.set_gain(12.0)
    info = cam.describe()
    assert info.exposure_us == pytest.approx(2500.0)
    assert info.gain_db == pytest.approx(12.0, abs=0.01)
    cam.arm()
    frame = cam.grab()
    assert frame.exposure_us == pytest.approx(2500.0)
    assert frame.gain_db == pytest.approx(12.0, abs=0.01)


def test_out_of_range_settings_name_the_parameter(make_camera):
    cam = make_camera(**SMALL)
    cam.open()
    with pytest.raises(CameraConfigError, match="gain"):
        cam.set_gain(1000.0)
    with pytest.raises(CameraConfigError, match="Width"):
        make_camera(serial="0815-0001", width=100_000).open()


def test_unsupported_pixel_format_is_a_config_error():
    with pytest.raises(CameraConfigError, match="BayerRG8"):
        PylonCamera(serial=EMU_SERIAL, pixel_format="BayerRG8")


def test_unknown_serial_is_a_config_error_naming_it(make_camera):
    cam = make_camera(serial="1234-5678")
    with pytest.raises(CameraConfigError, match="1234-5678") as excinfo:
        cam.open()
    assert EMU_SERIAL in str(excinfo.value)  # lists what was found


def test_device_removal_raises_disconnected_and_reopen_recovers(make_camera):
    cam = make_camera(**SMALL)
    cam.open()
    cam.arm()
    cam.grab()
    cam.simulate_removal()
    with pytest.raises(CameraDisconnected):
        cam.grab()
    cam.close()
    cam.open()
    cam.arm()
    assert cam.grab().image.shape == (48, 64)


def test_context_manager_closes_the_camera(make_camera):
    with make_camera(**SMALL) as cam:
        cam.arm()
        cam.grab()
    assert not cam.is_open
    assert cam.armed_mode is None


def test_a_late_frame_after_a_timeout_is_not_given_to_the_next_part(make_camera):
    cam = make_camera(**SMALL)
    cam.open()
    cam.arm()
    # The emulation needs ~11 ms from trigger to frame, so 5 ms always times out ...
    with pytest.raises(CaptureTimeout):
        cam.grab(timeout_s=0.005)
    time.sleep(0.05)  # ... and the frame of that trigger arrives late.
    frame = cam.grab()
    assert frame.meta["device_frame_id"] == 1  # the fresh frame, not the stale frame 0


def test_grab_before_arm_is_a_config_error(make_camera):
    cam = make_camera(**SMALL)
    cam.open()
    with pytest.raises(CameraConfigError, match="not armed"):
        cam.grab()
