"""The LINE HELD banner: a real cycle suspended (interlock, disk nearly full) shows its
reasons large on the operator screen, disables Start and the manual trigger, and clears on
resume; the line panel shows the recipe (offscreen Qt, a real station)."""
from __future__ import annotations

import threading

import numpy as np
from PySide6.QtCore import Qt

from conftest import make_user, sign_in
from station.inspect.states import CycleState
from station.ui.suspension_banner import HELD_WORD, STRIPE
from station.ui.theme import VERDICTS
from test_window_level import grab_rgb


def _operator(qtbot, station_window, **kw):
    win, ctx = station_window(**kw)
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    return win, ctx, win.pages["operator"]


def _from_line_thread(fn) -> None:
    """Interlocks arrive from another thread (PLC, disk guard), never from the GUI's."""
    t = threading.Thread(target=fn)
    t.start()
    t.join(5)


def _colours(px: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(c) for c in v) for v in px.reshape(-1, 3)[::37]}


def _hex(c: str) -> tuple[int, int, int]:
    return tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))


def test_interlock_shows_the_banner_disables_start_and_clears_on_resume(qtbot, station_window):
    win, ctx, op = _operator(qtbot, station_window)
    cycle = ctx.runtime.cycle
    assert not op.held.isVisible() and op.start_button.isEnabled()

    _from_line_thread(lambda: cycle.suspend("door open"))
    assert cycle.state is CycleState.SUSPENDED
    qtbot.waitUntil(lambda: op.held.isVisible(), timeout=3000)
    assert op.held.reasons == ["door open"] and op.held.headline == "door open"
    assert not op.start_button.isEnabled() and "door open" in op.start_button.toolTip()
    assert not op.trigger_button.isEnabled() and "door open" in op.trigger_button.toolTip()
    assert HELD_WORD in op.line_state.text()
    # what the banner looks like: hazard stripes in its own colour, no verdict colour
    px = grab_rgb(op.held)
    colours = _colours(px)
    assert _hex(STRIPE) in colours
    assert not {_hex(v.bg) for k, v in VERDICTS.items() if k != "idle"} & colours
    assert op.held.height() >= 150 and op.held.width() >= 800  # big enough for two metres
    assert op.banner.text == "READY"  # the verdict banner is untouched

    # nothing is inspected while held, even when asked (the GUI refuses; the line waits)
    ctx.line.trigger()
    qtbot.wait(400)
    assert ctx.store.count() == 0

    _from_line_thread(cycle.resume)
    qtbot.waitUntil(lambda: not op.held.isVisible(), timeout=3000)
    assert op.start_button.isEnabled() and op.trigger_button.isEnabled()
    assert "door open" not in op.start_button.toolTip()
    assert ctx.store.count() == 0  # a trigger during the hold is dropped, not run later
    qtbot.mouseClick(op.trigger_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.store.count() == 1, timeout=10_000)
    assert HELD_WORD not in op.line_state.text()


def test_a_running_line_holds_and_carries_on(qtbot, station_window):
    win, ctx, op = _operator(qtbot, station_window, run_rate_hz=20)
    cycle = ctx.runtime.cycle
    qtbot.mouseClick(op.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.store.count() >= 2, timeout=15_000)
    reason = ("disk nearly full: 80 MB free in /data, the station needs 1024 MB; restore the "
              "network so sync can deliver, or free space, and the line resumes by itself.")
    _from_line_thread(lambda: cycle.suspend(reason))
    qtbot.waitUntil(lambda: op.held.isVisible(), timeout=3000)
    assert op.held.headline == "disk nearly full" and "80 MB free" in op.held.details
    assert "disk nearly full" in op.start_button.toolTip() and op.stop_button.isEnabled()
    qtbot.waitUntil(lambda: cycle.state is CycleState.SUSPENDED, timeout=5000)
    n = ctx.store.count()
    qtbot.wait(500)
    assert ctx.store.count() == n, "the line inspected while held"
    _from_line_thread(cycle.resume)
    qtbot.waitUntil(lambda: ctx.store.count() >= n + 2, timeout=15_000)
    assert not op.held.isVisible() and "RUNNING" in op.line_state.text()
    qtbot.mouseClick(op.stop_button, Qt.MouseButton.LeftButton)


def test_line_panel_shows_the_recipe(qtbot, station_window):
    win, ctx, op = _operator(qtbot, station_window)
    assert op.line_panel.recipe.text() == "recipe ui"
    assert op.line_panel.isVisible()


def test_spec_panel_rows_follow_the_recipe_kind(qtbot):
    """An X-ray frame's checks (grey level, SNR, ...) get rows of their own, values and marks."""
    from station.ui.operator_panels import SPEC_ORDER, QtSpecPanel

    panel = QtSpecPanel()
    qtbot.addWidget(panel)
    assert list(panel.rows) == list(SPEC_ORDER)
    xray = [{"name": "grey_level", "passed": True, "value": 0.52, "low": 0.4, "high": 0.6},
            {"name": "snr", "passed": False, "value": 12.5, "low": 20.0, "high": None},
            {"name": "position", "passed": True, "value": 1.5, "low": None, "high": 8.0}]
    panel.show_checks(xray)
    assert list(panel.rows) == ["grey_level", "snr", "position"]
    mark, name, value, limits = panel.rows["snr"]
    assert name.text() == "snr" and value.text() == "12.50" and limits.text() == "≥ 20.00"
    assert mark.text() == "✗ OUT" and panel.failed == ["snr"]
    assert panel.rows["grey_level"][1].text() == "grey level"
