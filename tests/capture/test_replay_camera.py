"""The replay driver: saved images through the live pipeline, bad files (watched folders: test_watched_folder.py)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from station.capture.base import BadImage, CameraConfigError, NoMoreFrames, TriggerMode
from station.capture.replay_camera import ReplayCamera, decode_image

W, H = 64, 48


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def grey(value: int, dtype=np.uint8) -> np.ndarray:
    img = np.full((H, W), value, dtype)
    img[5:15, 5:25] = value // 2  # some structure, so lossy codecs keep it recognisable
    return img


def write(folder: Path, name: str, image: np.ndarray | None = None, data: bytes | None = None) -> Path:
    path = folder / name
    ext = next((e for e in reversed(path.suffixes) if e.lower() in (".png", ".tif", ".tiff", ".bmp", ".jpg")), ".png")
    path.write_bytes(data if data is not None else encode(image, ext))
    return path


def replay(folder: Path, mode: TriggerMode = TriggerMode.SOFTWARE, **kwargs) -> ReplayCamera:
    cam = ReplayCamera(folder, **kwargs)
    cam.open()
    cam.arm(mode)
    return cam


# --- software trigger: the folder in order ------------------------------------------
def test_replays_in_natural_order_with_source_and_hash(tmp_path):
    for i in (10, 2, 1):
        write(tmp_path, f"part_{i}.png", grey(i * 10))
    cam = replay(tmp_path)
    frames = [cam.grab() for _ in range(3)]
    assert [Path(f.source).name for f in frames] == ["part_1.png", "part_2.png", "part_10.png"]
    assert [int(f.image[0, 0]) for f in frames] == [10, 20, 100]
    for f in frames:
        meta = f.meta["replay"]
        assert meta["file"] == Path(f.source).name
        assert meta["sha256"] == hashlib.sha256(Path(f.source).read_bytes()).hexdigest()
        assert f.pixel_format == "Mono8" and f.camera_serial == "REPLAY"
        json.dumps(f.meta)
    assert [f.trigger_id for f in frames] == [1, 2, 3]
    with pytest.raises(NoMoreFrames):
        cam.grab()


def test_loop_starts_again_after_the_last_file(tmp_path):
    write(tmp_path, "a.png", grey(10))
    write(tmp_path, "b.png", grey(20))
    cam = replay(tmp_path, loop=True)
    names = [cam.grab().meta["replay"]["file"] for _ in range(5)]
    assert names == ["a.png", "b.png", "a.png", "b.png", "a.png"]


def test_empty_folder_has_no_frames_even_when_looping(tmp_path):
    cam = replay(tmp_path, loop=True)
    with pytest.raises(NoMoreFrames):
        cam.grab()


def test_rewind_starts_over(tmp_path):
    write(tmp_path, "a.png", grey(10))
    cam = replay(tmp_path)
    cam.grab()
    assert cam.remaining == 0
    cam.rewind()
    assert cam.grab().meta["replay"]["file"] == "a.png"


def test_temp_hidden_and_other_files_are_skipped(tmp_path):
    write(tmp_path, "a.png", grey(10))
    write(tmp_path, ".hidden.png", grey(20))
    write(tmp_path, "b.png.part", grey(30))
    write(tmp_path, "c.tmp", data=b"x")
    write(tmp_path, "notes.txt", data=b"hello")
    (tmp_path / "sub.png").mkdir()
    write(tmp_path, "D.PNG", grey(40))
    cam = replay(tmp_path)
    assert [cam.grab().meta["replay"]["file"] for _ in range(2)] == ["a.png", "D.PNG"]
    with pytest.raises(NoMoreFrames):
        cam.grab()


def test_pattern_and_extensions_select_files(tmp_path):
    write(tmp_path, "cam1_001.png", grey(10))
    write(tmp_path, "cam2_001.png", grey(20))
    write(tmp_path, "cam1_002.bmp", grey(30))
    cam = replay(tmp_path, pattern="cam1_*")
    assert [cam.grab().meta["replay"]["file"] for _ in range(2)] == ["cam1_001.png", "cam1_002.bmp"]
    cam = replay(tmp_path, extensions=("bmp",))
    assert cam.grab().meta["replay"]["file"] == "cam1_002.bmp"


def test_unicode_folder_and_file_names(tmp_path):
    folder = tmp_path / "Prüfbilder 检查"
    folder.mkdir()
    write(folder, "teil_ä_01.png", grey(77))
    frame = replay(folder).grab()
    assert int(frame.image[0, 0]) == 77 and frame.source.endswith("teil_ä_01.png")


# --- formats -------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
def test_16_bit_round_trip(tmp_path, ext):
    img = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 19 % 65536).astype(np.uint16)
    write(tmp_path, f"x{ext}", img)
    frame = replay(tmp_path).grab()
    assert frame.image.dtype == np.uint16 and frame.pixel_format == "Mono16"
    assert np.array_equal(frame.image, img)


def test_16_bit_file_is_mono12_when_expected_and_fits(tmp_path):
    img = (np.arange(H * W).reshape(H, W) % 4096).astype(np.uint16)
    write(tmp_path, "x.png", img)
    frame = replay(tmp_path, expected_pixel_format="Mono12").grab()
    assert frame.pixel_format == "Mono12" and frame.bit_depth == 12
    assert np.array_equal(frame.image, img)


def test_colour_becomes_bgr8_and_alpha_is_dropped(tmp_path):
    bgr = np.zeros((H, W, 3), np.uint8)
    bgr[..., 0], bgr[..., 2] = 200, 30
    write(tmp_path, "a.png", bgr)
    write(tmp_path, "b.png", np.dstack([bgr, np.full((H, W), 255, np.uint8)]))
    write(tmp_path, "c.bmp", bgr)
    cam = replay(tmp_path, expected_pixel_format="BGR8")
    for _ in range(3):
        frame = cam.grab()
        assert frame.pixel_format == "BGR8" and frame.image.shape == (H, W, 3)
        assert np.array_equal(frame.image, bgr)


def test_grey_jpeg_is_mono8(tmp_path):
    write(tmp_path, "a.jpg", grey(120))
    frame = replay(tmp_path).grab()
    assert frame.pixel_format == "Mono8" and frame.image.shape == (H, W)
    assert abs(int(frame.image[30, 40]) - 120) <= 2


def test_describe_reports_the_first_image(tmp_path):
    write(tmp_path, "a.png", grey(1, np.uint16))
    cam = ReplayCamera(tmp_path, serial="RP-7")
    cam.open()
    info = cam.describe()
    assert (info.width, info.height, info.pixel_format, info.serial) == (W, H, "Mono16", "RP-7")
    assert info.trigger_modes == frozenset({TriggerMode.SOFTWARE})  # a watched folder is XrayFolderCamera


# --- bad input -----------------------------------------------------------------------
def _corrupt_png() -> bytes:
    data = bytearray(encode(grey(90)))
    start = data.index(b"IDAT") + 8
    for i in range(start, start + 40):
        data[i] ^= 0x5A
    return bytes(data)


def _cut(ext: str, image: np.ndarray, keep: float = 0.6) -> bytes:
    data = encode(image, ext)
    return data[: int(len(data) * keep)]


BAD_FILES = {
    "corrupt": ("002.png", lambda: _corrupt_png(), {}, "corrupt"),
    "truncated_png": ("002.png", lambda: _cut(".png", grey(90)), {}, "truncated"),
    "truncated_jpg": ("002.jpg", lambda: _cut(".jpg", np.random.default_rng(1).integers(0, 255, (H, W), np.uint8)),
                      {}, "truncated"),
    "truncated_bmp": ("002.bmp", lambda: _cut(".bmp", grey(90)), {}, "truncated"),
    "truncated_tif": ("002.tif", lambda: _cut(".tif", grey(90, np.uint16), 0.5), {}, "corrupt or truncated"),
    "empty": ("002.png", lambda: b"", {}, "empty"),
    "not_an_image": ("002.png", lambda: b"station log\nline 2\n" * 20, {}, "not an image"),
    "wrong_size": ("002.png", lambda: encode(np.zeros((H + 1, W), np.uint8)), {"expected_width": W, "expected_height": H},
                   f"size {W}x{H + 1}, expected {W}x{H}"),
    "8_bit_for_mono16": ("002.png", lambda: encode(grey(9)), {"expected_pixel_format": "Mono16"}, "8-bit"),
    "16_bit_for_mono8": ("002.png", lambda: encode(grey(9, np.uint16)), {"expected_pixel_format": "Mono8"}, "16-bit"),
    "over_12_bits": ("002.png", lambda: encode(np.full((H, W), 5000, np.uint16)), {"expected_pixel_format": "Mono12"},
                     "12 bits"),
    "colour_for_mono": ("002.png", lambda: encode(np.zeros((H, W, 3), np.uint8)), {"expected_pixel_format": "Mono8"},
                        "colour"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_bad_image_naming_it_and_the_next_file_comes(tmp_path, case):
    name, make, kwargs, reason = BAD_FILES[case]
    fmt = kwargs.get("expected_pixel_format")
    good = grey(10, np.uint16 if fmt in ("Mono16", "Mono12") else np.uint8)
    if fmt == "BGR8":
        good = cv2.cvtColor(good, cv2.COLOR_GRAY2BGR)
    write(tmp_path, "001.png", good)
    write(tmp_path, name, data=make())
    write(tmp_path, "003.png", good)
    cam = replay(tmp_path, **kwargs)
    assert cam.grab().meta["replay"]["file"] == "001.png"
    with pytest.raises(BadImage) as err:
        cam.grab()
    assert name in str(err.value) and reason in str(err.value)
    assert cam.grab().meta["replay"]["file"] == "003.png"
    with pytest.raises(NoMoreFrames):
        cam.grab()


def test_file_deleted_after_listing_is_a_bad_image(tmp_path):
    write(tmp_path, "a.png", grey(10))
    write(tmp_path, "b.png", grey(20))
    cam = replay(tmp_path)
    (tmp_path / "a.png").unlink()
    with pytest.raises(BadImage, match="a.png.*vanished"):
        cam.grab()
    assert cam.grab().meta["replay"]["file"] == "b.png"


def test_decode_image_alone():
    image, fmt = decode_image(encode(grey(3)), "mem.png")
    assert fmt == "Mono8" and image.shape == (H, W)
    with pytest.raises(BadImage, match="mem.png: empty"):
        decode_image(b"", "mem.png")


# --- lifecycle -----------------------------------------------------------------------
def test_missing_folder_and_unarmed_grab_are_config_errors(tmp_path):
    with pytest.raises(CameraConfigError):
        ReplayCamera(tmp_path / "nope").open()
    cam = ReplayCamera(tmp_path)
    cam.open()
    with pytest.raises(CameraConfigError, match="armed"):
        cam.grab()
    with pytest.raises(CameraConfigError):
        cam.arm(TriggerMode.HARDWARE_LINE)
    with pytest.raises(CameraConfigError):
        ReplayCamera(tmp_path, expected_pixel_format="YUV422")
