"""The technician's calibration wizard, walked as a user would on the simulated camera."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from calibration.profile import ProfileStore
from calibration.ui.flow import CalibrationFlowError
from calibration.ui.wizard import QtCalibrationWizard
from review_fixtures import partb_ctx, partb_station, partb_template, wait_idle  # noqa: F401

T = 20_000


def _open(partb, ctx) -> QtCalibrationWizard:
    return partb.open(QtCalibrationWizard, ctx)


def _click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _to_validation(qtbot, w, golden: int = 5) -> None:
    """Camera -> exposure -> golden reference (with a dragged ROI) -> tolerances -> validation."""
    _click(qtbot, w.next_btn)
    qtbot.waitUntil(lambda: w.step == 1, timeout=T)
    qtbot.waitUntil(lambda: w.exposure_step.view._image is not None, timeout=T)  # live view runs
    _click(qtbot, w.next_btn)
    assert w.step == 2
    w.reference_step.count.setValue(golden)
    _click(qtbot, w.reference_step.capture_btn)
    qtbot.waitUntil(lambda: w.flow is not None and len(w.flow.frames) == golden and w._task is None, timeout=T)
    view = w.reference_step.view
    r = view.image_rect()
    start = QPoint(r.x() + r.width() // 8, r.y() + r.height() // 8)
    end = QPoint(r.x() + 7 * r.width() // 8, r.y() + 7 * r.height() // 8)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view, end)
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end)
    assert view.roi is not None
    h, wd = w.flow.frames[0].shape[:2]
    assert abs(view.roi.x - wd / 8) < 8 and abs(view.roi.width - 3 * wd / 4) < 16 and abs(view.roi.y - h / 8) < 8
    _click(qtbot, w.next_btn)
    qtbot.waitUntil(lambda: w.step == 3, timeout=T)


def test_technician_walks_the_wizard_to_a_saved_version_and_rolls_back(qtbot, partb_station, partb_ctx):
    rt = partb_station()
    ctx = partb_ctx(rt, "technician")
    store = ProfileStore(rt.data_dir / "calibration")
    serial, recipe = rt.camera.describe().serial, rt.cfg.recipe.name
    assert store.versions(serial, recipe) == [1]
    w = _open(partb_ctx, ctx)

    # exposure and gain change the live frames
    _click(qtbot, w.next_btn)
    qtbot.waitUntil(lambda: w.step == 1 and w.exposure_step.view._image is not None, timeout=T)
    qtbot.waitUntil(lambda: "focus" in w.exposure_step.focus_label.text() and
                    w.exposure_step.best_focus > 0, timeout=T)
    w.exposure_step.exposure.setValue(4500)
    _click(qtbot, w.exposure_step.apply_btn)
    qtbot.waitUntil(lambda: w.flow.camera.exposure_us == 4500 and w._task is None, timeout=T)
    _click(qtbot, w.back_btn)
    assert w.step == 0

    _to_validation(qtbot, w)
    # tolerances come pre-filled with the derived ones; the technician widens one
    derived = w.flow.derived
    assert w.tolerances_step.spins["brightness_low"].value() == pytest.approx(derived.brightness_low, abs=1e-4)
    w.tolerances_step.spins["position_max_px"].setValue(derived.position_max_px + 2.0)
    _click(qtbot, w.next_btn)
    assert w.step == 4 and not w.next_btn.isEnabled()  # no save before a validation run

    w.validation_step.count.setValue(4)
    _click(qtbot, w.validation_step.run_btn)
    qtbot.waitUntil(lambda: w.flow.validation is not None and w._task is None, timeout=T)
    assert w.flow.validation.passed, w.flow.validation.summary()
    assert w.validation_step.table.rowCount() == 4
    _click(qtbot, w.next_btn)
    assert w.step == 5
    w.save_step.notes.setText("lamp replaced")
    _click(qtbot, w.save_step.save_btn)
    qtbot.waitUntil(lambda: w.flow.saved is not None and w._task is None, timeout=T)

    assert store.versions(serial, recipe) == [1, 2]
    saved = store.load(serial, recipe, 2)
    assert saved.parent_version == 1 and saved.notes == "lamp replaced"
    assert saved.roi == w.reference_step.view.roi
    assert saved.tolerances.position_max_px == pytest.approx(derived.position_max_px + 2.0, abs=0.05)
    assert store.load(serial, recipe, 1).identity.endswith("@v1")  # the old version stays
    wait_idle(qtbot, ctx)
    audit = [e for e in rt.store.audit_entries() if e["action"] == "calibration.saved"]
    assert audit and audit[-1]["actor"] == ctx.session.username and audit[-1]["subject"] == saved.identity
    assert "Saved" in w.save_step.result.text()

    # roll back to v1: saved again as v3, audited
    for _ in range(5):
        _click(qtbot, w.back_btn)
    assert w.step == 0
    versions = w.camera_step.versions
    row = next(i for i in range(versions.count()) if versions.item(i).text().startswith(f"{serial}/{recipe}@v1"))
    versions.setCurrentRow(row)
    _click(qtbot, w.camera_step.rollback_btn)
    qtbot.waitUntil(lambda: store.versions(serial, recipe) == [1, 2, 3] and w._task is None, timeout=T)
    v3 = store.load(serial, recipe, 3)
    assert v3.parent_version == 1 and v3.reference_sha256 == store.load(serial, recipe, 1).reference_sha256
    assert v3.tolerances == store.load(serial, recipe, 1).tolerances
    wait_idle(qtbot, ctx)
    assert [e for e in rt.store.audit_entries() if e["action"] == "calibration.rollback"]
    assert rt.store.audit_verify().ok
    w.close_page()
    wait_idle(qtbot, ctx)


def test_a_dim_capture_in_the_validation_run_blocks_saving(qtbot, partb_station, partb_ctx):
    rt = partb_station()
    ctx = partb_ctx(rt, "technician")
    store = ProfileStore(rt.data_dir / "calibration")
    serial, recipe = rt.camera.describe().serial, rt.cfg.recipe.name
    w = _open(partb_ctx, ctx)
    _to_validation(qtbot, w)
    _click(qtbot, w.next_btn)
    assert w.step == 4
    w.flow.camera.inject("dim", 1)
    w.validation_step.count.setValue(4)
    _click(qtbot, w.validation_step.run_btn)
    qtbot.waitUntil(lambda: w.flow.validation is not None and w._task is None, timeout=T)
    run = w.flow.validation
    assert not run.passed and not run.reports[0].passed and "brightness" in run.summary()
    assert not w.next_btn.isEnabled() and not w.save_step.save_btn.isEnabled()
    assert "Saving is blocked" in w.validation_step.summary.text()
    with pytest.raises(CalibrationFlowError, match="has not passed"):
        w.flow.save()
    assert store.versions(serial, recipe) == [1]

    # inconsistent limits are refused with a message and keep the technician on the step
    _click(qtbot, w.back_btn)
    w.tolerances_step.spins["brightness_low"].setValue(0.9)
    w.tolerances_step.spins["brightness_high"].setValue(0.5)
    _click(qtbot, w.next_btn)
    assert w.step == 3 and "do not fit together" in w.status.text()
    w.close_page()
    wait_idle(qtbot, ctx)


def test_supervisor_is_refused_the_wizard(qtbot, partb_station, partb_ctx):
    from station.ui.main_window import QtMainWindow

    rt = partb_station()
    ctx = partb_ctx(rt, "supervisor")
    win = QtMainWindow(ctx)
    partb_ctx.pages.append(win)
    win.sign_in_screen.signed_in.emit(ctx.session)
    assert "calibration" not in win.pages and "review" in win.pages
    assert not win.show_page("calibration")

    w = _open(partb_ctx, ctx)
    assert not w.next_btn.isEnabled() and "technician" in w.status.text()
    w.open_camera()  # even called directly: refused, audited, nothing opened
    wait_idle(qtbot, ctx)
    assert w.flow is None
    refusals = [e for e in rt.store.audit_entries() if e["action"] == "user.refused"]
    assert refusals and refusals[-1]["payload"]["permission"] == "calibrate"
    w.close_page()
    win.shutdown()


def test_a_long_capture_can_be_cancelled_and_nothing_is_kept(qtbot, partb_station, partb_ctx):
    rt = partb_station()
    ctx = partb_ctx(rt, "technician")
    w = _open(partb_ctx, ctx)
    _click(qtbot, w.next_btn)
    qtbot.waitUntil(lambda: w.step == 1 and w._task is None, timeout=T)
    _click(qtbot, w.next_btn)
    w.reference_step.count.setValue(1000)
    _click(qtbot, w.reference_step.capture_btn)
    qtbot.waitUntil(lambda: w.progress.value() > 0, timeout=T)  # progress shows while it runs
    assert w.cancel_btn.isVisible() and not w.next_btn.isEnabled()
    _click(qtbot, w.cancel_btn)
    assert w._task is None and "Cancelled" in w.status.text()
    wait_idle(qtbot, ctx)  # the worker stops at the next frame
    assert w.flow.frames == [] and not w.next_btn.isEnabled()
    w.close_page()
    wait_idle(qtbot, ctx)


def test_flow_refuses_bad_requests_with_clear_errors(tmp_path):
    """The wizard's Qt-free steps: wrong order, too few parts, a camera that loses frames."""
    from calibration.profile import ProfileNotFound
    from calibration.ui.flow import CalibrationFlow
    from station.capture.sim_camera import SimCamera

    audits: list[tuple] = []
    flow = CalibrationFlow(lambda: SimCamera(width=320, height=256, fault_wait_s=0), ProfileStore(tmp_path),
                           "r1", username="tech", audit=lambda *a: audits.append(a))
    with pytest.raises(CalibrationFlowError, match="choose the camera first"):
        flow.grab()
    with pytest.raises(CalibrationFlowError, match="build the profile first"):
        flow.validate(3)
    assert flow.open_camera() == "SIM-0001"
    with pytest.raises(CalibrationFlowError, match="at least 3"):
        flow.capture_golden(2)
    flow.camera.inject("dropped", 5)
    with pytest.raises(CalibrationFlowError, match="5 captures in a row failed"):
        flow.capture_golden(4)
    assert flow.frames == []
    flow.capture_golden(4)
    flow.build_profile(None)
    flow.camera.inject("dropped", 1)
    run = flow.validate(3)
    assert not run.passed and len(run.reports) == 3 and "dropped" in run.summary()
    with pytest.raises(CalibrationFlowError, match="has not passed"):
        flow.save()
    with pytest.raises(ProfileNotFound):
        flow.roll_back(7)
    assert audits == [] and ProfileStore(tmp_path).list() == []
    flow.close()
