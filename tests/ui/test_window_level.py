"""Window / level of 16-bit images: the mapping, the pixels on the widget, the drag, the
presets from the recipe, and 8-bit frames left alone (offscreen Qt, real stations)."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from conftest import MONO16, make_user, sign_in
from station.config import parse_config
from station.display_window import (
    DragGain,
    GreyWindow,
    apply_window,
    auto_window,
    top_of,
    window_lut,
)
from station.ui.live_view import QtLiveView
from station.ui.window_level_widget import DRAG_TIP, QtWindowLevelBar, WindowLevelMouse

PRESETS = [{"name": "Thin wall", "low": 2000, "high": 12000},
           {"name": "Thick wall", "low": 20000, "high": 60000},
           {"name": "Full range", "low": 0, "high": 65535}]


def grab_rgb(widget) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes())
    return arr.reshape(img.height(), img.bytesPerLine())[:, : img.width() * 3].reshape(
        img.height(), img.width(), 3).copy()


def quadrants(values: tuple[int, int, int, int], dtype=np.uint16, side: int = 64) -> np.ndarray:
    """A frame of four flat quadrants (top-left, top-right, bottom-left, bottom-right)."""
    h = side // 2
    f = np.empty((side, side), dtype)
    f[:h, :h], f[:h, h:], f[h:, :h], f[h:, h:] = values
    return f


def quadrant_centres(view) -> list[tuple[int, int]]:
    r = view.image_rect()
    cx = [int(r.left() + r.width() * q) for q in (0.25, 0.75)]
    cy = [int(r.top() + r.height() * q) for q in (0.25, 0.75)]
    return [(cx[0], cy[0]), (cx[1], cy[0]), (cx[0], cy[1]), (cx[1], cy[1])]


# --- the mapping (Qt-free) --------------------------------------------------------------------
def test_window_maps_grey_levels_linearly_and_saturates():
    w = GreyWindow(1000, 1000 + 255 * 8)  # 8 grey levels per display step: no rounding ties
    img = np.array([[0, 999, 1000, 1008, 1000 + 8 * 100, 3039, 3040, 65535]], np.uint16)
    assert apply_window(img, w).tolist() == [[0, 0, 0, 1, 100, 255, 255, 255]]
    lut = window_lut(w)
    assert lut.shape == (65536,) and lut[1000 + 8 * 77] == 77
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 65536, (256, 320), dtype=np.uint16)
    assert np.array_equal(apply_window(frame, w), lut[frame])  # the table and the fast path agree
    # the formula, within one grey step (OpenCV rounds in float32)
    ref = np.clip(np.round((frame.astype(np.float64) - w.low) * 255.0 / w.width), 0, 255)
    assert np.abs(apply_window(frame, w).astype(int) - ref).max() <= 1


def test_bad_windows_and_images_are_refused_clearly():
    with pytest.raises(ValueError, match="low < high"):
        GreyWindow(500, 500)
    with pytest.raises(ValueError, match="low < high"):
        GreyWindow(-1, 10)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        apply_window(np.zeros((4, 4), np.float32), GreyWindow(0, 1))
    with pytest.raises(ValueError, match="one-channel"):
        apply_window(np.zeros((4, 4, 3), np.uint16), GreyWindow(0, 1))


def test_level_width_keeps_inside_the_range_and_auto_uses_percentiles():
    w = GreyWindow.from_level_width(100, 1000, 4095)  # pushed below 0: slides back, same width
    assert (w.low, w.high) == (0, 1000)
    assert GreyWindow.from_level_width(2000, 99_999, 4095) == GreyWindow(0, 4095)
    assert GreyWindow(1000, 3000).text() == "W 2000  L 2000"
    img = np.repeat(np.arange(1000, 2000, dtype=np.uint16), 200).reshape(400, 500)
    a = auto_window(img)
    assert abs(a.low - 1005) <= 2 and abs(a.high - 1995) <= 2, a
    flat = np.full((50, 50), 30000, np.uint16)
    f = auto_window(flat)
    assert f.low < 30000 < f.high
    assert top_of(img, "Mono12") == 4095 and top_of(img) == 65535


def test_drag_gain_moves_level_horizontally_and_width_vertically():
    g = DragGain(655, 400, 65535)
    start = GreyWindow(20000, 30000)
    right = g.dragged(start, 65.5, 0)  # a tenth of the view: a tenth of the range
    assert right.width == start.width and abs(right.level - (start.level + 6553.5)) <= 1
    up = g.dragged(start, 0, -40)  # up a tenth of the view: a tenth of the range wider
    assert abs(up.width - (start.width + 6553.5)) <= 1 and abs(up.level - start.level) <= 1


def test_presets_in_the_config_are_checked():
    base = "schema_version: 1\ncamera: {type: sim}\ndetector: {type: variation}\nrecipe:\n  name: x\n"
    cfg = parse_config(base + "  display_presets: [{name: Thin, low: 100, high: 900}]\n", "p.yaml")
    assert cfg.recipe.display_presets[0].high == 900
    assert cfg.config_hash() == parse_config(base, "p.yaml").config_hash()  # display only: same hash
    with pytest.raises(Exception, match=r"recipe\.display_presets\.0.*high \(100\) must be above low \(900\)"):
        parse_config(base + "  display_presets: [{name: Thin, low: 900, high: 100}]\n", "p.yaml")
    with pytest.raises(Exception, match="repeated: A"):
        parse_config(base + "  display_presets: [{name: A, low: 1, high: 9}, {name: A, low: 2, high: 8}]\n",
                     "p.yaml")
    with pytest.raises(Exception, match="high"):
        parse_config(base + "  display_presets: [{name: A, low: 1, high: 70000}]\n", "p.yaml")


# --- the widget -------------------------------------------------------------------------------
@pytest.fixture
def wl_view(qtbot):
    view = QtLiveView()
    bar = QtWindowLevelBar([(p["name"], GreyWindow(p["low"], p["high"])) for p in PRESETS], lambda: view.frame)
    bar.window_changed.connect(view.set_window)
    mouse = WindowLevelMouse(view, bar)
    for w in (view, bar):
        qtbot.addWidget(w)
    view.resize(640, 640)
    view.show()
    qtbot.waitExposed(view)
    return view, bar, mouse


def test_a_16_bit_frame_is_shown_through_the_window(qtbot, wl_view):
    view, bar, _m = wl_view
    frame = quadrants((1000, 1000 + 8 * 64, 1000 + 8 * 200, 40000))
    bar.activate(65535)
    bar.set_window(GreyWindow(1000, 1000 + 255 * 8))
    view.set_frame(frame)
    px = grab_rgb(view)
    shown = [int(px[y, x, 0]) for x, y in quadrant_centres(view)]
    assert shown == [0, 64, 200, 255]
    assert all(px[y, x, 0] == px[y, x, 1] == px[y, x, 2] for x, y in quadrant_centres(view))
    assert bar.readout.text() == "W 2040  L 2020"
    # another window, same frame: the screen follows
    bar.set_window(GreyWindow(0, 65535))
    shown = [int(grab_rgb(view)[y, x, 0]) for x, y in quadrant_centres(view)]
    assert shown == [round(v * 255 / 65535) for v in (1000, 1512, 2600, 40000)]
    assert view.frame.dtype == np.uint16  # the frame itself stays 16-bit


def test_drag_changes_level_and_width_by_the_expected_amount(qtbot, wl_view):
    view, bar, _m = wl_view
    view.set_frame(quadrants((1000, 2000, 3000, 4000)))
    bar.activate(65535)
    bar.apply_preset("Thin wall")
    start = bar.window
    assert start == GreyWindow(2000, 12000) and bar.preset_buttons["Thin wall"].isChecked()
    r = view.image_rect()
    assert int(r.width()) == 640
    c = QPoint(320, 320)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=c)
    qtbot.mouseMove(view, QPoint(320 + 64, 320))
    after_x = bar.window
    qtbot.mouseMove(view, QPoint(320 + 64, 320 - 32))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(320 + 64, 320 - 32))
    end = bar.window
    step = 65535 / 640
    assert after_x.width == start.width and abs(after_x.level - (start.level + 64 * step)) <= 1
    assert abs(end.width - (start.width + 32 * step)) <= 1 and abs(end.level - after_x.level) <= 1
    assert not bar.preset_buttons["Thin wall"].isChecked()  # no longer the preset
    assert bar.readout.text() == end.text()
    assert view.toolTip() == DRAG_TIP and "left / right moves the level" in DRAG_TIP
    # fine steps: arrow keys and the wheel
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert abs(bar.window.level - (end.level + 66)) <= 1
    w0 = bar.window.width
    qtbot.keyClick(view, Qt.Key.Key_Up, Qt.KeyboardModifier.ShiftModifier)
    assert bar.window.width == w0 + 660
    bar.reset()
    assert bar.window == GreyWindow(2000, 12000)


def test_auto_takes_the_frame_on_screen(qtbot, wl_view):
    view, bar, _m = wl_view
    frame = np.repeat(np.arange(30000, 31000, dtype=np.uint16), 64).reshape(250, 256)
    view.set_frame(frame)
    bar.activate(65535)
    qtbot.mouseClick(bar.auto_button, Qt.MouseButton.LeftButton)
    assert abs(bar.window.low - 30005) <= 2 and abs(bar.window.high - 30995) <= 2
    px = grab_rgb(view)
    r = view.image_rect()
    col = int(r.left() + r.width() / 2)
    top_row, bottom_row = int(r.top()) + 2, int(r.bottom()) - 2
    assert px[top_row, col, 0] <= 3 and px[bottom_row, col, 0] >= 252  # the full grey scale in use


def test_8_bit_frames_are_shown_as_they_are(qtbot, wl_view):
    view, bar, _m = wl_view
    bar.activate(65535)
    bar.set_window(GreyWindow(100, 200))  # left over from a 16-bit frame
    frame = quadrants((10, 90, 160, 250), np.uint8)
    view.set_frame(frame)
    assert not view.windowed
    assert [int(grab_rgb(view)[y, x, 0]) for x, y in quadrant_centres(view)] == [10, 90, 160, 250]


# --- on the operator screen --------------------------------------------------------------------
def test_operator_screen_offers_the_recipe_presets_for_16_bit_frames(qtbot, station_window, ui_template_16):
    win, ctx = station_window(camera=MONO16, recipe={"display_presets": PRESETS}, template=ui_template_16)
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    op = win.pages["operator"]
    assert not op.window_level.isVisible()  # nothing 16-bit on screen yet
    op.trigger_once()
    qtbot.waitUntil(lambda: op.live.frames_set >= 1 and op.window_level.isVisible(), timeout=10_000)
    assert op.live.frame.dtype == np.uint16 and op.live.windowed
    wl = op.window_level
    assert list(wl.preset_buttons) == ["Thin wall", "Thick wall", "Full range"]
    assert wl.window == GreyWindow(2000, 12000)  # the first preset is the default
    assert wl.readout.text() == "W 10000  L 7000" and wl.readout.isVisible()
    op.live.resize(640, 512)
    frame = op.live.frame
    r = op.live.image_rect()
    ys, xs = np.mgrid[8:frame.shape[0]:97, 8:frame.shape[1]:97]
    sample = [(int(x), int(y)) for x, y in zip(xs.ravel(), ys.ravel())]

    def on_screen() -> np.ndarray:
        px = grab_rgb(op.live)
        sx, sy = r.width() / frame.shape[1], r.height() / frame.shape[0]
        return np.array([px[int(r.top() + (y + 0.5) * sy), int(r.left() + (x + 0.5) * sx), 0] for x, y in sample])

    qtbot.mouseClick(wl.preset_buttons["Thick wall"], Qt.MouseButton.LeftButton)
    assert wl.window == GreyWindow(20000, 60000) and wl.readout.text() == "W 40000  L 40000"
    expect = apply_window(frame, GreyWindow(20000, 60000))
    assert np.array_equal(on_screen(), np.array([expect[y, x] for x, y in sample]))
    qtbot.mouseClick(wl.preset_buttons["Full range"], Qt.MouseButton.LeftButton)
    expect = apply_window(frame, GreyWindow(0, 65535))
    assert np.array_equal(on_screen(), np.array([expect[y, x] for x, y in sample]))


def test_8_bit_station_has_no_window_controls(qtbot, station_window):
    win, ctx = station_window(recipe={"display_presets": PRESETS[:1]})
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    op = win.pages["operator"]
    op.trigger_once()
    qtbot.waitUntil(lambda: op.live.frames_set >= 1, timeout=10_000)
    assert op.live.frame.dtype == np.uint8 and not op.live.windowed
    assert not op.window_level.isVisible() and op.window_level.window is None


# --- the review tab -----------------------------------------------------------------------------
def test_review_tab_shows_stored_16_bit_images_through_the_window(qtbot, station_window, ui_template_16):
    from station.ui.review import QtReviewPage
    from station.ui.review_queue import display_rgb, review_queue

    win, ctx = station_window(camera={**MONO16, "defect_rate": 1.0}, recipe={"display_presets": PRESETS},
                              template=ui_template_16)
    make_user(ctx, "sam", "supervisor")
    sign_in(qtbot, win, "sam")
    op = win.pages["operator"]
    for n in range(4):
        op.trigger_once()
        qtbot.waitUntil(lambda: len(op.latency_ms) > n, timeout=10_000)
    assert review_queue(ctx.store), "no part for the review queue"
    page = QtReviewPage(ctx)
    qtbot.addWidget(page)
    try:
        qtbot.waitUntil(lambda: page.detail is not None, timeout=10_000)
        img = page.detail.image
        assert img.dtype == np.uint16  # stored 16-bit, read back 16-bit
        wl = page.window_level
        assert wl.active and wl.window == GreyWindow(2000, 12000)
        assert list(wl.preset_buttons) == ["Thin wall", "Thick wall", "Full range"]
        page.heatmap_box.setChecked(False)
        h, w = img.shape
        page.picture.setFixedSize(w, h)  # one screen pixel per image pixel: exact comparison
        page.resize(1900, 1000)
        page.show()
        qtbot.waitExposed(page)
        assert page.picture.image_rect().size().toTuple() == (w, h)

        def shown() -> np.ndarray:
            return grab_rgb(page.picture)

        expect = display_rgb(apply_window(img, GreyWindow(2000, 12000)))
        assert np.array_equal(shown(), expect)
        qtbot.mouseClick(wl.preset_buttons["Thick wall"], Qt.MouseButton.LeftButton)
        assert np.array_equal(shown(), display_rgb(apply_window(img, GreyWindow(20000, 60000))))
        before = wl.window
        qtbot.mousePress(page.picture, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
        qtbot.mouseMove(page.picture, QPoint(100 - w // 10, 100))
        qtbot.mouseRelease(page.picture, Qt.MouseButton.LeftButton, pos=QPoint(100 - w // 10, 100))
        assert wl.window.level < before.level and wl.window.width == before.width
        assert np.array_equal(shown(), display_rgb(apply_window(img, wl.window)))
    finally:
        page.close_page()


def test_xray_detector_frames_get_the_window_and_their_own_spec_rows(qtbot, station_window, ui_template_xray,
                                                                    tmp_path):
    from conftest import xray_camera

    win, ctx = station_window(config={"camera": xray_camera(tmp_path / "inbox")},
                              recipe={"display_presets": PRESETS}, template=ui_template_xray)
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    op = win.pages["operator"]
    n = len(op.latency_ms)
    op.trigger_once()
    qtbot.waitUntil(lambda: len(op.latency_ms) > n and op.live.frames_set >= 1, timeout=15_000)
    qtbot.waitUntil(lambda: op.window_level.isVisible(), timeout=5000)
    frame = op.live.frame
    assert frame.dtype == np.uint16 and op.live.windowed
    assert op.window_level.window == GreyWindow(2000, 12000)
    names = [c["name"] for c in ctx.store.recent(1)[0]["spec_checks"]]
    assert "snr" in names and "brightness" not in names
    assert list(op.spec.rows) == names  # the X-ray checks, not the camera's seven
    op.live.resize(512, 384)
    qtbot.mouseClick(op.window_level.auto_button, Qt.MouseButton.LeftButton)
    w = op.window_level.window
    assert w == auto_window(frame, 65535)
    px = grab_rgb(op.live)
    r = op.live.image_rect()
    sx, sy = r.width() / frame.shape[1], r.height() / frame.shape[0]
    expect = apply_window(frame, w)
    for y in range(10, frame.shape[0], 37):
        for x in range(10, frame.shape[1], 41):
            assert px[int(r.top() + (y + 0.5) * sy), int(r.left() + (x + 0.5) * sx), 0] == expect[y, x]
