"""The simulated camera: deterministic parts, ground truth, defects, capture faults, triggers."""
from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from station.capture.base import CameraConfigError, CaptureTimeout, TriggerMode
from station.capture.sim_camera import DEFECT_KINDS, SimCamera, render_good

FULL = {"width": 1280, "height": 1024}
SMALL = {"width": 320, "height": 256}


def armed(mode: TriggerMode = TriggerMode.SOFTWARE, **kwargs) -> SimCamera:
    cam = SimCamera(**kwargs)
    cam.open()
    cam.arm(mode)
    return cam


def part_mask(img: np.ndarray) -> np.ndarray:
    """The plate (bright) against the dark background, as a filled mask."""
    grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    grey = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 2)
    mask = (grey > 0.35 * np.percentile(grey, 90)).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, [max(contours, key=cv2.contourArea)], -1, 1, -1)
    return filled


def centroid(img: np.ndarray) -> np.ndarray:
    m = cv2.moments(part_mask(img), binaryImage=True)
    return np.array([m["m10"] / m["m00"], m["m01"] / m["m00"]])


def laplacian_var(img: np.ndarray) -> float:
    return float(cv2.Laplacian(img.astype(np.float32), cv2.CV_32F).var())


# --- determinism ---------------------------------------------------------------------
def test_same_seed_gives_identical_pixels_and_meta_whatever_the_timing():
    kwargs = dict(SMALL, seed=7, defect_rate=0.5, fault_rates={"dim": 0.1, "blur": 0.1, "offset": 0.1})
    a, b = armed(**kwargs), armed(**kwargs)
    frames_a = [a.grab() for _ in range(8)]
    frames_b = []
    for _ in range(8):
        time.sleep(0.005)
        frames_b.append(b.grab())
    for fa, fb in zip(frames_a, frames_b):
        assert np.array_equal(fa.image, fb.image)
        assert fa.meta == fb.meta
    assert [f.meta["sim"]["index"] for f in frames_a] == list(range(8))
    assert any(f.meta["sim"]["defect"] for f in frames_a)


def test_different_seeds_differ():
    a, b = armed(**SMALL, seed=1), armed(**SMALL, seed=2)
    fa, fb = a.grab(), b.grab()
    assert not np.array_equal(fa.image, fb.image)
    assert fa.meta["sim"]["offset"] != fb.meta["sim"]["offset"]


def test_render_is_what_grab_returns():
    cam = armed(**SMALL, seed=3, defect_rate=0.5)
    frames = [cam.grab() for _ in range(4)]
    for i, frame in enumerate(frames):
        image, meta = cam.render(i)
        assert np.array_equal(image, frame.image)
        assert meta == frame.meta["sim"]


def test_same_part_every_time_apart_from_jitter_and_noise():
    cam = SimCamera(**SMALL, seed=4)
    a, _ = cam.render(0, defect=None, fault=None)
    b, _ = cam.render(1, defect=None, fault=None)
    assert not np.array_equal(a, b)
    assert np.median(np.abs(a.astype(int) - b.astype(int))) <= 4  # noise; jitter shows on edges only
    assert np.linalg.norm(centroid(a) - centroid(b)) < 5


def test_defect_rate_picks_about_that_share_of_parts():
    cam = SimCamera(**SMALL, seed=5, defect_rate=0.3, defect_kinds=("spot", "scratch"))
    kinds = [cam.render(i, fault=None)[1]["defect"] for i in range(120)]
    share = sum(k is not None for k in kinds) / len(kinds)
    assert 0.18 < share < 0.42
    assert {k for k in kinds if k} == {"spot", "scratch"}


def test_meta_is_json_serialisable():
    frame = armed(**SMALL, defect_rate=1.0).grab()
    sim = json.loads(json.dumps(frame.meta))["sim"]
    assert set(sim) == {"index", "defect", "defect_bbox", "fault", "offset"}
    assert sim["defect"] in DEFECT_KINDS and len(sim["defect_bbox"]) == 4


# --- defects -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_changes_pixels_only_inside_its_bbox_on_the_part(kind):
    cam = SimCamera(**FULL, seed=11)
    for index in (0, 1, 2):
        clean, clean_meta = cam.render(index, defect=None, fault=None)
        dirty, meta = cam.render(index, defect=kind, fault=None)
        assert meta["defect"] == kind and clean_meta["defect"] is None
        x, y, w, h = meta["defect_bbox"]
        diff = np.abs(dirty.astype(int) - clean.astype(int))
        ys, xs = np.nonzero(diff)
        assert len(xs) > 0
        assert xs.min() >= x and xs.max() < x + w and ys.min() >= y and ys.max() < y + h
        assert diff.max() >= 60, "a defect must be clearly visible"
        assert 0.0005 <= w * h / clean.size <= 0.01
        plate = part_mask(clean)
        assert plate[y:y + h, x:x + w].all(), "defects land on the part"


def test_colour_defect_is_drawn_in_colour_frames():
    cam = SimCamera(**SMALL, pixel_format="BGR8")
    clean, _ = cam.render(0, defect=None, fault=None)
    dirty, meta = cam.render(0, defect="contamination", fault=None)
    x, y, w, h = meta["defect_bbox"]
    changed = (dirty != clean).any(axis=2)
    assert changed.any() and not changed[:, : x].any() and not changed[y + h:].any()


# --- capture faults ------------------------------------------------------------------
def test_dim_drops_mean_brightness():
    cam = SimCamera(**SMALL)
    good, _ = cam.render(0, defect=None, fault=None)
    dim, meta = cam.render(0, defect=None, fault="dim")
    assert meta["fault"] == "dim"
    assert dim.mean() < 0.4 * good.mean()


def test_overexposed_clips_much_of_the_frame():
    cam = SimCamera(**SMALL)
    good, _ = cam.render(0, defect=None, fault=None)
    over, _ = cam.render(0, defect=None, fault="overexposed")
    assert (good >= 255).mean() < 0.001
    assert (over >= 255).mean() > 0.3


def test_blur_drops_variance_of_laplacian():
    cam = SimCamera(**FULL)
    good, _ = cam.render(0, defect=None, fault=None)
    blurred, _ = cam.render(0, defect=None, fault="blur")
    assert laplacian_var(blurred) < 0.35 * laplacian_var(good)


def test_offset_shifts_the_part_by_what_meta_says():
    cam = SimCamera(**FULL)
    good, good_meta = cam.render(0, defect=None, fault=None)
    for index in (0, 1, 2):
        moved, meta = cam.render(index, defect=None, fault="offset")
        dx, dy, deg = meta["offset"]
        measured = centroid(moved) - centroid(good) + np.array(good_meta["offset"][:2])
        assert np.hypot(dx, dy) >= 20
        assert 1.0 <= abs(deg) <= 5.0
        # the plate sits at the image centre, so the rotation barely moves its centroid
        assert np.allclose(measured, [dx, dy], atol=3.0), (measured, meta["offset"])


def test_dropped_frame_raises_capture_timeout_and_the_line_carries_on():
    cam = armed(**SMALL, fault_wait_s=0)
    cam.inject("dropped")
    with pytest.raises(CaptureTimeout, match="dropped"):
        cam.grab(timeout_s=5)
    frame = cam.grab()
    assert frame.meta["sim"]["index"] == 1 and frame.meta["sim"]["fault"] is None


def test_dropped_frame_waits_out_the_grab_timeout_like_a_camera():
    cam = armed(**SMALL)
    cam.inject("dropped")
    t0 = time.monotonic()
    with pytest.raises(CaptureTimeout):
        cam.grab(timeout_s=0.15)
    assert 0.12 <= time.monotonic() - t0 < 1.0


def test_inject_queues_faults_for_the_next_grabs():
    cam = armed(**SMALL)
    cam.inject("dim", 2)
    cam.inject("blur")
    faults = [cam.grab().meta["sim"]["fault"] for _ in range(4)]
    assert faults == ["dim", "dim", "blur", None]


def test_random_fault_rates_are_seeded():
    cam = SimCamera(**SMALL, fault_rates={"blur": 0.5})
    faults = [cam.render(i, defect=None)[1]["fault"] for i in range(60)]
    assert 15 < faults.count("blur") < 45 and set(faults) == {"blur", None}
    again = SimCamera(**SMALL, fault_rates={"blur": 0.5})
    assert faults == [again.render(i, defect=None)[1]["fault"] for i in range(60)]


# --- triggers ------------------------------------------------------------------------
def test_hardware_line_edge_from_another_thread_delivers_a_frame():
    cam = armed(TriggerMode.HARDWARE_LINE, **SMALL)
    edge = threading.Timer(0.05, cam.fire_line)
    t0 = time.monotonic()
    edge.start()
    try:
        frame = cam.grab(timeout_s=2.0)
    finally:
        edge.join()
    assert time.monotonic() - t0 >= 0.04
    assert frame.meta["sim"]["index"] == 0 and frame.trigger_id == 1


def test_hardware_line_grab_times_out_without_an_edge():
    cam = armed(TriggerMode.HARDWARE_LINE, **SMALL)
    t0 = time.monotonic()
    with pytest.raises(CaptureTimeout, match="line trigger"):
        cam.grab(timeout_s=0.1)
    assert 0.08 <= time.monotonic() - t0 < 1.0


def test_edges_before_grab_are_buffered_and_ignored_when_not_armed_for_them():
    cam = armed(TriggerMode.HARDWARE_LINE, **SMALL, line_buffer=2)
    assert cam.fire_line() and cam.fire_line()
    assert not cam.fire_line() and cam.overtriggers == 1
    assert [cam.grab(timeout_s=0.1).meta["sim"]["index"] for _ in range(2)] == [0, 1]
    soft = armed(**SMALL)
    assert not soft.fire_line()


def test_disarm_releases_a_grab_waiting_for_the_line():
    cam = armed(TriggerMode.HARDWARE_LINE, **SMALL)
    errors = []

    def wait():
        try:
            cam.grab(timeout_s=5.0)
        except CaptureTimeout as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.05)
    cam.disarm()
    t.join(timeout=2.0)
    assert not t.is_alive() and errors and "disarmed" in str(errors[0])


def test_grab_needs_open_and_arm():
    cam = SimCamera(**SMALL)
    with pytest.raises(CameraConfigError):
        cam.grab()
    cam.open()
    with pytest.raises(CameraConfigError, match="armed"):
        cam.grab()
    with pytest.raises(CameraConfigError):
        cam.arm(TriggerMode.WATCHED_FOLDER)


def test_context_manager_closes():
    with SimCamera(**SMALL) as cam:
        cam.arm()
        assert cam.grab().image.shape == (256, 320)
    with pytest.raises(CameraConfigError):
        cam.grab()


# --- formats and settings ------------------------------------------------------------
@pytest.mark.parametrize("fmt, dtype, shape, bits", [
    ("Mono8", np.uint8, (256, 320), 8),
    ("Mono12", np.uint16, (256, 320), 12),
    ("Mono16", np.uint16, (256, 320), 16),
    ("BGR8", np.uint8, (256, 320, 3), 8),
])
def test_pixel_formats(fmt, dtype, shape, bits):
    cam = armed(**SMALL, pixel_format=fmt)
    cam.inject("overexposed")
    over, frame = cam.grab(), cam.grab()
    assert frame.image.dtype == dtype and frame.image.shape == shape
    assert frame.pixel_format == fmt and frame.bit_depth == bits
    assert int(over.image.max()) == (1 << bits) - 1  # clips at the format's full scale
    assert frame.image.max() > (1 << bits) // 2  # the plate uses the range
    info = cam.describe()
    assert (info.width, info.height, info.pixel_format, info.dtype) == (320, 256, fmt, np.dtype(dtype))
    if fmt == "BGR8":  # a colour part: the plate is blue
        b, g, r = (frame.image[part_mask(frame.image) > 0].mean(axis=0))
        assert b > 1.5 * r


def test_exposure_and_gain_scale_the_signal():
    cam = SimCamera(**SMALL)
    plate = part_mask(cam.render(0, defect=None, fault=None)[0]) > 0
    base = cam.render(0, defect=None, fault=None)[0][plate].mean()
    cam.set_exposure(2500)
    half = cam.render(0, defect=None, fault=None)[0][plate].mean()
    cam.set_gain(20 * np.log10(2))
    restored = cam.render(0, defect=None, fault=None)[0][plate].mean()
    assert half == pytest.approx(base / 2, rel=0.03)
    assert restored == pytest.approx(base, rel=0.03)
    assert cam.describe().gain_db == pytest.approx(6.02, abs=0.01)
    with pytest.raises(CameraConfigError):
        cam.set_exposure(0)


def test_frame_records_settings():
    cam = armed(**SMALL, exposure_us=4000, gain_db=2.0, serial="SIM-42")
    frame = cam.grab()
    assert (frame.exposure_us, frame.gain_db, frame.camera_serial) == (4000, 2.0, "SIM-42")


@pytest.mark.parametrize("kwargs", [
    {"pixel_format": "Mono10"},
    {"defect_kinds": ("crack",)},
    {"fault_rates": {"smoke": 0.1}},
    {"fault_rates": {"dim": 0.7, "blur": 0.6}},
    {"defect_rate": 1.5},
])
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(CameraConfigError):
        SimCamera(**SMALL, **kwargs)
    with pytest.raises(CameraConfigError):
        SimCamera(**SMALL).inject("smoke")


# --- good parts for calibration and training -----------------------------------------
def test_good_images_are_clean_and_distinct():
    images = render_good(5, seed=3, **SMALL, defect_rate=1.0, fault_rates={"dim": 1.0})
    assert len(images) == 5
    cam = SimCamera(**SMALL, seed=3)
    reference, _ = cam.render(0, defect=None, fault=None)
    for a, b in zip(images, images[1:]):
        assert not np.array_equal(a, b)
    for img in images:
        assert img.shape == reference.shape
        assert abs(float(img.mean()) - float(reference.mean())) < 2  # not dim
        assert np.median(np.abs(img.astype(int) - reference.astype(int))) <= 4
    assert not any(np.array_equal(img, cam.render(i)[0]) for i, img in enumerate(images))
