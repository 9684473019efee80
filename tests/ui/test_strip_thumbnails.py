"""Results strip thumbnails of 16-bit frames go through the window the live view opens with
(the recipe's first display preset, else its grey window), not a scale by bit depth that
leaves an X-ray part a flat dark tile. Offscreen Qt, real X-ray stations on the simulated
detector writing into a watched folder."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import make_user, sign_in, ui_config, xray_camera
from station.display_window import GreyWindow, apply_window
from station.runtime import StationRuntime
from station.ui.imaging import THUMB_WIDTH, result_thumbnail
from test_window_level import grab_rgb

THIN_WALL = {"name": "Thin wall", "low": 29000, "high": 38000}  # as in resources/xray-demo.yaml
DICOM_12 = {"file_format": "dicom", "bits": 12}
WINDOW_12 = {"low": 800, "high": 2600}  # the 12-bit detector's material grey levels


def _camera_12(folder) -> dict:
    cam = xray_camera(folder)
    cam["sim"].update(DICOM_12)
    return cam


@pytest.fixture(scope="session")
def ui_template_xray12(tmp_path_factory):
    """Calibrated and trained on the simulated 12-bit DICOM detector (window 800..2600)."""
    root = tmp_path_factory.mktemp("ui-template-xray12")
    cfg = ui_config(recipe={"grey_window": WINDOW_12}, config={"camera": _camera_12(root / "inbox")})
    StationRuntime.open(cfg, root, arm=False).close()
    return root


def _inspect_one(qtbot, win, ctx):
    """Trigger one part; return what the strip was handed (the ShownResult)."""
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    op = win.pages["operator"]
    shown = []
    ctx.events.inspected.connect(shown.append)
    op.trigger_once()
    qtbot.waitUntil(lambda: bool(shown and op.strip.decisions and op.window_level.isVisible()), timeout=15_000)
    return op, shown[-1]


def _spread(img: np.ndarray) -> float:
    """Grey levels between the 1st and 99th percentile: how much contrast a tile shows."""
    lo, hi = np.percentile(img, [1, 99])
    return float(hi - lo)


def _as_the_strip_makes_it(frame: np.ndarray, window: GreyWindow) -> np.ndarray:
    h, w = frame.shape
    return cv2.resize(apply_window(frame, window), (THUMB_WIDTH, round(h * THUMB_WIDTH / w)),
                      interpolation=cv2.INTER_AREA)


def test_xray_thumbnail_is_windowed_like_the_live_view(qtbot, station_window, ui_template_xray, tmp_path):
    win, ctx = station_window(config={"camera": xray_camera(tmp_path / "inbox")},
                              recipe={"display_presets": [THIN_WALL]}, template=ui_template_xray)
    op, item = _inspect_one(qtbot, win, ctx)
    frame = item.outcome.frame.image
    live = op.window_level.window
    assert frame.dtype == np.uint16 and op.live.windowed and live == GreyWindow(29000, 38000)
    assert np.array_equal(item.thumb, _as_the_strip_makes_it(frame, live))  # the live view's mapping
    by_bit_depth = cv2.convertScaleAbs(frame, alpha=255.0 / 65535)  # what the strip did before
    assert _spread(item.thumb) > 1.5 * _spread(by_bit_depth)

    tile = op.strip.tiles[0]
    qtbot.waitUntil(tile.isVisible, timeout=5000)
    pm = tile.image.pixmap()
    assert not pm.isNull()
    on_screen = grab_rgb(tile.image)[..., 0]
    assert _spread(on_screen) > 1.5 * _spread(cv2.resize(by_bit_depth, (pm.width(), pm.height())))


def test_12_bit_detector_thumbnail_uses_the_recipes_grey_window(qtbot, station_window, ui_template_xray12,
                                                                tmp_path):
    win, ctx = station_window(config={"camera": _camera_12(tmp_path / "inbox")},
                              recipe={"grey_window": WINDOW_12}, template=ui_template_xray12)
    op, item = _inspect_one(qtbot, win, ctx)
    frame = item.outcome.frame
    assert frame.pixel_format == "Mono12" and frame.image.dtype == np.uint16
    window = GreyWindow(WINDOW_12["low"], WINDOW_12["high"])
    assert op.window_level.window == window  # no presets: the live view opens on the grey window
    assert np.array_equal(item.thumb, _as_the_strip_makes_it(frame.image, window))
    # Scaled by the 16-bit dtype, a 12-bit frame never gets above grey 16 of 255: a black tile.
    by_bit_depth = cv2.convertScaleAbs(frame.image, alpha=255.0 / 65535)
    assert int(by_bit_depth.max()) <= 255 * 4095 // 65535 + 1
    assert _spread(item.thumb) >= 128  # usable: at least half of the display's grey range

    # After a restart the strip is rebuilt from the database: the stored 12-bit PNG, read
    # back, makes the same thumbnail.
    doc = ctx.store.recent(1)[0]
    stored = cv2.imread(str(ctx.store.image_path(doc["id"])), cv2.IMREAD_UNCHANGED)
    again = result_thumbnail(ctx.runtime.cfg, stored, doc["recipe"],
                             pixel_format=(doc.get("camera") or {}).get("pixel_format"),
                             bit_depth=doc["image"]["bit_depth"])
    assert np.array_equal(again, item.thumb)


def test_the_default_window_falls_back_from_preset_to_grey_window_to_full_range():
    from station.display_window import default_window, fit_window, to_8bit

    preset, grey = GreyWindow(29000, 38000), GreyWindow(800, 2600)
    assert default_window([preset], 65535, grey) == preset  # the first preset wins
    assert default_window([], 4095, grey) == grey
    assert default_window([], 4095) == GreyWindow(0, 4095)  # a 12-bit frame's full range
    # a 16-bit preset on a 12-bit frame keeps its level as far as the frame's range allows
    assert default_window([preset], 4095) == fit_window(preset, 4095) and fit_window(preset, 4095).high <= 4095
    with pytest.raises(ValueError, match="uint8 or uint16"):
        to_8bit(np.zeros((4, 4), np.float32), grey)
    u8 = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert to_8bit(u8, grey) is u8  # 8-bit frames are never windowed
