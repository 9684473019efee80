"""The station window driven as a person would: first run, sign-in, the operator screen,
role gating and idle sign-out, on a real simulated station (offscreen)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from conftest import PIN, audit_actions, make_user, sign_in


def _pixels(img) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = img.convertToFormat(QImage.Format.Format_RGB888)
    arr = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes())
    return arr.reshape(img.height(), img.bytesPerLine())[:, : img.width() * 3].reshape(
        img.height(), img.width(), 3).copy()


def _trigger_and_wait(qtbot, op, n_before: int) -> None:
    qtbot.mouseClick(op.trigger_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(op.latency_ms) > n_before, timeout=10_000)


def test_first_run_asks_for_an_admin_and_refuses_bad_input(qtbot, station_window):
    win, ctx = station_window()
    fr = win.first_run
    assert win._stack.currentWidget() is fr
    # two different entries: refused, nothing created
    fr.username.setText("chief")
    fr.secret.setText("2468")
    fr.repeat.setText("2469")
    qtbot.mouseClick(fr.create_button, Qt.MouseButton.LeftButton)
    assert fr.error.isVisible() and "differ" in fr.error.text()
    assert ctx.users.count() == 0
    # too short
    fr.secret.setText("12")
    fr.repeat.setText("12")
    qtbot.mouseClick(fr.create_button, Qt.MouseButton.LeftButton)
    assert "at least 4" in fr.error.text()
    assert ctx.users.needs_first_admin()
    # good
    fr.secret.setText("2468")
    fr.repeat.setText("2468")
    qtbot.mouseClick(fr.create_button, Qt.MouseButton.LeftButton)
    assert ctx.session is not None and ctx.session.role == "admin"
    assert "operator" in win.pages and "health" in win.pages
    assert win.tabs.currentWidget() is win.pages["operator"]  # the default view
    acts = audit_actions(ctx.store)
    assert ("user.created", "first-run", "chief") in acts
    assert ("user.signin", "chief", "chief") in acts
    row = ctx.users.get("chief")
    assert row.role == "admin"
    with ctx.store.reader.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM users WHERE username='chief'").scalar()
    assert stored.startswith("$argon2id$") and "2468" not in stored


def test_wrong_pin_is_refused_and_audited(qtbot, station_window):
    win, ctx = station_window()
    make_user(ctx, "olga", "operator")
    win.show_entry_screen()
    screen = win.sign_in_screen
    screen.username.setText("olga")
    for key in "9999":  # the on-screen keypad
        qtbot.mouseClick(next(b for b in screen.findChildren(type(screen.sign_in_button)) if b.text() == key),
                         Qt.MouseButton.LeftButton)
    assert screen.secret.text() == "9999"
    qtbot.mouseClick(screen.sign_in_button, Qt.MouseButton.LeftButton)
    assert ctx.session is None
    assert screen.error.isVisible() and "wrong" in screen.error.text()
    assert screen.secret.text() == ""  # the wrong PIN is not left on screen
    screen.username.setText("nobody")
    screen.secret.setText("1234")
    screen.submit()
    assert screen.error.text() == "unknown user name or wrong password / PIN"  # same words for both
    failed = [a for a in audit_actions(ctx.store) if a[0] == "user.signin_failed"]
    assert ("user.signin_failed", "olga", "olga") in failed and ("user.signin_failed", "nobody", "nobody") in failed
    sign_in(qtbot, win, "olga")
    assert ctx.session.username == "olga" and win._stack.currentWidget() is win._station


def test_operator_sees_the_banner_change_with_each_part(qtbot, station_window):
    win, ctx = station_window()
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    op = win.pages["operator"]
    assert op.banner.text == "READY"

    _trigger_and_wait(qtbot, op, 0)
    assert op.banner.text == "PASS" and op.banner.style_.shape == "circle"
    qtbot.waitUntil(lambda: op.live.frames_set >= 1 and op.live.painted >= 1, timeout=5000)
    shot = op.live.grab().toImage()
    px = np.array([shot.pixelColor(x, shot.height() // 2).value() for x in range(0, shot.width(), 7)])
    assert px.std() > 10, "the live view shows no image"
    part1 = op.part.part.text()
    assert part1.startswith("LOT-U-")

    ctx.runtime.camera.inject("dim")
    _trigger_and_wait(qtbot, op, 1)
    assert op.banner.text == "CHECK CAPTURE" and op.banner.style_.shape == "triangle"
    assert "brightness" in op.spec.failed
    assert op.part.part.text() != part1
    assert any(n.level == "alarm" and "Check capture" in n.text for n in ctx.notifier.history)

    # the strip and counters follow; the record is in the database before the banner shows it
    assert op.strip.decisions[:2] == ["check_capture", "pass"]
    assert op.counters.counts["pass"] == 1 and op.counters.counts["check_capture"] == 1
    assert ctx.store.count() == 2
    assert max(op.latency_ms) < 2000
    acts = [a[0] for a in audit_actions(ctx.store, "line.")]
    qtbot.waitUntil(lambda: len(audit_actions(ctx.store, "line.")) == 2, timeout=5000)
    assert all(a[1] == "olga" for a in audit_actions(ctx.store, "line.")), acts


def test_defect_shows_defect_or_review_and_the_heatmap(qtbot, station_window):
    win, ctx = station_window(camera={"defect_rate": 1.0, "defect_kinds": ["missing_feature"]})
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    op = win.pages["operator"]
    _trigger_and_wait(qtbot, op, 0)
    assert op.banner.text in ("DEFECT", "REVIEW")
    assert op.banner.style_.shape in ("octagon", "diamond")
    qtbot.waitUntil(lambda: op.live.frames_set >= 1, timeout=5000)
    assert op.live.has_overlay
    op.live.resize(640, 512)
    plain = op.live.grab().toImage()
    qtbot.mouseClick(op.heatmap_button, Qt.MouseButton.LeftButton)
    assert op.live.show_overlay
    tinted = op.live.grab().toImage()
    changed = int(np.count_nonzero(np.any(_pixels(plain) != _pixels(tinted), axis=2)))
    assert changed > 50, "the heatmap overlay changed nothing on screen"
    qtbot.mouseClick(op.heatmap_button, Qt.MouseButton.LeftButton)
    assert np.array_equal(_pixels(op.live.grab().toImage()), _pixels(plain))


def test_start_runs_the_line_and_stop_halts_it(qtbot, station_window):
    win, ctx = station_window(run_rate_hz=20)
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    op = win.pages["operator"]
    qtbot.mouseClick(op.start_button, Qt.MouseButton.LeftButton)
    assert "RUNNING" in op.line_state.text()
    qtbot.waitUntil(lambda: len(op.latency_ms) >= 5, timeout=15_000)
    qtbot.mouseClick(op.stop_button, Qt.MouseButton.LeftButton)
    qtbot.wait(300)
    n = ctx.store.count()
    qtbot.wait(400)
    assert ctx.store.count() == n, "the line kept inspecting after Stop"
    assert "STOPPED" in op.line_state.text()
    assert len(op.strip.decisions) == min(n, len(op.strip.tiles))


def test_operator_is_refused_supervisor_pages_and_actions(qtbot, station_window):
    win, ctx = station_window()
    win.register_page("Supervisor only", lambda c: __import__("PySide6.QtWidgets").QtWidgets.QLabel("x"),
                      "review", key="supervisor_only")
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    assert "supervisor_only" not in win.pages and "review" not in win.pages
    assert not win.show_page("supervisor_only")
    refused = [a for a in audit_actions(ctx.store) if a[0] == "user.refused"]
    assert refused == [("user.refused", "olga", "open the Supervisor only page")]
    assert any("Not allowed for operator" in n.text for n in ctx.notifier.history)
    from station.users import PermissionDenied
    try:
        ctx.require("users", "create an account")
    except PermissionDenied:
        pass
    else:
        raise AssertionError("an operator may not manage accounts")
    win.sign_out()
    make_user(ctx, "sam", "supervisor")
    sign_in(qtbot, win, "sam")
    assert "supervisor_only" in win.pages and win.show_page("supervisor_only")


def test_idle_operator_is_signed_out(qtbot, station_window):
    win, ctx = station_window(idle_signout_min=0.005)  # 0.3 s
    make_user(ctx, "olga", "operator")
    sign_in(qtbot, win, "olga")
    assert win.pages
    qtbot.waitUntil(lambda: ctx.session is None, timeout=5000)
    assert win._stack.currentWidget() is win.sign_in_screen
    assert win.pages == {}
    outs = [e for e in ctx.store.audit_entries(limit=100) if e["action"] == "user.signout"]
    assert outs[-1]["actor"] == "olga" and outs[-1]["payload"]["reason"] == "idle"


def test_demo_mode_offers_quick_roles_without_passwords(qtbot, station_window):
    win, ctx = station_window(demo_mode=True)
    ctx.users.create_first_admin("admin", PIN)
    win.show_entry_screen()
    assert set(win.sign_in_screen.demo_buttons) == {"operator", "supervisor", "technician"}
    qtbot.mouseClick(win.sign_in_screen.demo_buttons["supervisor"], Qt.MouseButton.LeftButton)
    assert ctx.session.role == "supervisor" and ctx.session.demo
    entry = [e for e in ctx.store.audit_entries(limit=100) if e["action"] == "user.signin"][-1]
    assert entry["payload"]["demo_quick"] is True
    # the demo accounts have no password anyone knows
    from station.users import SignInRefused
    for guess in ("", "demo", "1234", "demo-supervisor"):
        try:
            ctx.users.sign_in("demo-supervisor", guess)
        except SignInRefused:
            continue
        raise AssertionError(f"demo account signed in with {guess!r}")
