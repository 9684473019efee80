"""GenICamCamera against the real Viky simulator producer shipped in the genicam wheel.

No mocks: every test loads the GenTL producer and talks to a simulated device. Simulator
facts these tests rely on: three devices (serials "0", "1", "2"), 400x400 by default,
PixelFormat RGBa8 or Mono8, AcquisitionFrameRate 1..200 Hz, no trigger, exposure or gain
features, no buffer timestamps, frame ids that keep counting while frames are dropped.
"""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from station.capture import genicam_camera
from station.capture.base import (
    CameraConfigError,
    CameraDisconnected,
    CaptureTimeout,
    TriggerMode,
)
from station.capture.genicam_camera import (
    GENTL_PATH_ENV,
    GenICamCamera,
    bundled_simulator_cti,
    find_producers,
)

FAST_FPS = 200.0  # the simulator's maximum; keeps the emulated trigger latency ~10 ms


@pytest.fixture(scope="module")
def sim_cti():
    path = bundled_simulator_cti()
    assert path is not None, "the genicam wheel should ship viky.cti"
    return path


@pytest.fixture(autouse=True)
def no_leaked_producers():
    yield
    assert not genicam_camera._producers_in_use, "a test left a GenTL producer open"


@pytest.fixture
def camera(sim_cti):
    cam = GenICamCamera(cti=sim_cti, frame_rate_hz=FAST_FPS)
    cam.open()
    yield cam
    cam.close()


# --- discovery -------------------------------------------------------------------------
def test_discovery_falls_back_to_bundled_simulator(monkeypatch, tmp_path, sim_cti):
    monkeypatch.setenv(GENTL_PATH_ENV, str(tmp_path))  # a dir with no producers
    assert find_producers() == [sim_cti]


def test_discovery_reads_gentl_path_env(monkeypatch, tmp_path, sim_cti):
    monkeypatch.setenv(GENTL_PATH_ENV, f"{tmp_path}:{sim_cti.parent}:/does/not/exist")
    assert find_producers() == [sim_cti]


def test_open_without_cti_finds_the_simulator(monkeypatch):
    monkeypatch.delenv(GENTL_PATH_ENV, raising=False)
    with GenICamCamera() as cam:
        info = cam.describe()
    assert (info.vendor, info.model, info.serial) == ("Machine Vision Games Ltd.", "Viky", "0")


def test_missing_cti_is_a_config_error(tmp_path):
    cam = GenICamCamera(cti=tmp_path / "vendor.cti")
    with pytest.raises(CameraConfigError, match="producer file not found"):
        cam.open()
    assert not cam.is_open


def test_file_that_is_not_a_producer_finds_no_device(tmp_path):
    fake = tmp_path / "fake.cti"
    fake.write_text("not a shared library")
    with pytest.raises(CameraConfigError, match="no GenICam device found"):
        GenICamCamera(cti=fake).open()


# --- selection and description ---------------------------------------------------------
def test_describe(camera):
    info = camera.describe()
    assert info.vendor == "Machine Vision Games Ltd."
    assert info.model == "Viky"
    assert info.serial == "0"
    assert (info.width, info.height) == (400, 400)
    # The device sends RGBa8; frames are converted, and describe() speaks for the frames.
    assert info.pixel_format == "BGR8"
    assert camera.device_pixel_format == "RGBa8"
    assert info.trigger_modes == frozenset({TriggerMode.SOFTWARE})
    assert camera.software_trigger_emulated
    # The simulator has no exposure or gain nodes: reported as unknown, not as zero.
    assert info.exposure_us is None and info.gain_db is None


@pytest.mark.parametrize("selector, serial", [({"serial": "2"}, "2"), ({"device_index": 1}, "1")])
def test_select_device(sim_cti, selector, serial):
    with GenICamCamera(cti=sim_cti, **selector) as cam:
        assert cam.describe().serial == serial


@pytest.mark.parametrize(
    "selector, message",
    [({"serial": "nope"}, r"no device with serial 'nope' \(found Viky:0, Viky:1, Viky:2\)"),
     ({"device_index": 7}, "device_index 7 out of range: 3 device")],
)
def test_unknown_device_is_a_config_error(sim_cti, selector, message):
    with pytest.raises(CameraConfigError, match=message):
        GenICamCamera(cti=sim_cti, **selector).open()


def test_serial_and_index_together_are_refused():
    with pytest.raises(CameraConfigError, match="either serial or device_index"):
        GenICamCamera(serial="0", device_index=0)


# --- grabbing --------------------------------------------------------------------------
def test_software_grabs(camera):
    camera.arm(TriggerMode.SOFTWARE)
    frames = [camera.grab(timeout_s=1.0) for _ in range(5)]
    for f in frames:
        assert f.image.shape == (400, 400, 3) and f.image.dtype == np.uint8
        assert f.pixel_format == "BGR8" and f.camera_serial == "0"
        assert f.meta["trigger_emulated"] is True
        assert f.device_timestamp_ns is None  # the simulator has no buffer timestamps
    ids = [f.trigger_id for f in frames]
    assert ids == sorted(set(ids))
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(set(stamps))
    device_ids = [f.meta["device_frame_id"] for f in frames]
    assert device_ids == sorted(set(device_ids))
    # The simulator draws a bouncing ball, so consecutive frames differ.
    assert not np.array_equal(frames[0].image, frames[-1].image)


def test_frames_are_copies_not_views_of_requeued_buffers(camera):
    camera.arm()
    first = camera.grab()
    snapshot = first.image.copy()
    for _ in range(6):  # more grabs than the acquirer has buffers
        camera.grab()
    assert np.array_equal(first.image, snapshot)


def test_emulated_trigger_never_returns_a_stale_frame(camera):
    camera.arm()
    before = camera.grab().meta["device_frame_id"]
    time.sleep(0.2)  # ~40 frames at 200 Hz; three of them sit in the acquirer's buffers
    after = camera.grab().meta["device_frame_id"]
    # A stale buffered frame would be before+1 .. before+3.
    assert after > before + 20


def test_grab_times_out(sim_cti):
    with GenICamCamera(cti=sim_cti, frame_rate_hz=1.0) as cam:
        cam.arm()
        with pytest.raises(CaptureTimeout):
            cam.grab(timeout_s=0.05)


def test_grab_before_arm_or_open_is_refused(sim_cti, camera):
    with pytest.raises(CameraConfigError, match="not armed"):
        camera.grab()
    with pytest.raises(CameraConfigError, match="not open"):
        GenICamCamera(cti=sim_cti).grab()


def test_hardware_line_is_refused_without_trigger_nodes(camera):
    with pytest.raises(CameraConfigError, match="cannot do a hardware line trigger.*no trigger features"):
        camera.arm(TriggerMode.HARDWARE_LINE)
    assert camera.armed_mode is None
    camera.arm(TriggerMode.SOFTWARE)  # still usable afterwards
    assert camera.grab().image.shape == (400, 400, 3)


# --- settings --------------------------------------------------------------------------
def test_exposure_and_gain_are_refused_with_a_reason(camera):
    with pytest.raises(CameraConfigError, match="no ExposureTime/ExposureTimeAbs node"):
        camera.set_exposure(5000)
    with pytest.raises(CameraConfigError, match="no Gain node"):
        camera.set_gain(3.0)


@pytest.mark.parametrize("setting", [{"exposure_us": 5000.0}, {"gain_db": 3.0}])
def test_configured_exposure_or_gain_the_device_lacks_fails_open(sim_cti, setting):
    cam = GenICamCamera(cti=sim_cti, **setting)
    with pytest.raises(CameraConfigError, match="cannot be set"):
        cam.open()
    assert not cam.is_open


def test_mono8_at_open_and_pixel_format_change_while_armed(sim_cti):
    with GenICamCamera(cti=sim_cti, pixel_format="Mono8", frame_rate_hz=FAST_FPS) as cam:
        assert cam.describe().pixel_format == "Mono8"
        cam.arm()
        mono = cam.grab()
        assert mono.image.shape == (400, 400) and mono.image.dtype == np.uint8
        assert mono.pixel_format == "Mono8"

        cam.set_pixel_format("BGR8")  # no BGR8 on the simulator: its RGBa8 is used
        assert cam.device_pixel_format == "RGBa8"
        colour = cam.grab()
        assert colour.image.shape == (400, 400, 3) and colour.pixel_format == "BGR8"

        with pytest.raises(CameraConfigError, match=r"cannot deliver pixel format 'Mono16' \(device offers RGBa8, Mono8"):
            cam.set_pixel_format("Mono16")


def test_roi_size(sim_cti):
    with GenICamCamera(cti=sim_cti, width=320, height=240, frame_rate_hz=FAST_FPS) as cam:
        info = cam.describe()
        assert (info.width, info.height) == (320, 240)
        cam.arm()
        assert cam.grab().image.shape == (240, 320, 3)
    with pytest.raises(CameraConfigError, match="cannot set Width = 5000"):
        GenICamCamera(cti=sim_cti, width=5000).open()


# --- lifecycle -------------------------------------------------------------------------
def test_open_close_twice(sim_cti):
    cam = GenICamCamera(cti=sim_cti, frame_rate_hz=FAST_FPS)
    for _ in range(2):
        cam.open()
        cam.open()  # already open: no-op
        cam.arm()
        assert cam.grab().image.ndim == 3
        cam.disarm()
        cam.close()
        cam.close()  # already closed: no-op
        assert not cam.is_open


def test_second_instance_on_the_same_producer_gets_a_clear_error(sim_cti):
    with GenICamCamera(cti=sim_cti):
        with pytest.raises(CameraConfigError, match="already open in this process"):
            GenICamCamera(cti=sim_cti, device_index=1).open()
    with GenICamCamera(cti=sim_cti, device_index=1) as cam:  # fine once the first closed
        assert cam.describe().serial == "1"


def test_open_keeps_the_applications_sigint_handler(sim_cti):
    before = signal.getsignal(signal.SIGINT)
    with GenICamCamera(cti=sim_cti):
        assert signal.getsignal(signal.SIGINT) is before


def test_device_loss_is_reported_and_close_still_releases_the_producer(camera, sim_cti):
    camera.arm()
    camera.grab()
    # Simulate the cable being pulled: close the GenTL device handle under the acquirer.
    camera._ia.device.close()
    with pytest.raises(CameraDisconnected, match="device or stream lost"):
        camera.grab()
    camera.close()
    with GenICamCamera(cti=sim_cti) as again:  # the producer was released: devices enumerate
        assert again.describe().model == "Viky"
