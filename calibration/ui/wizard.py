"""The technician's calibration wizard: a stepped page of the station window.

choose camera -> exposure and gain (live histogram, focus meter) -> capture the golden
reference and draw the ROI -> tolerances (pre-filled, derived) -> validation run (every
capture must pass) -> save a new calibration version (audited; older versions stay and can
be rolled back to).

The steps' logic is :class:`calibration.ui.flow.CalibrationFlow` (Qt-free); every camera
call and every slow step runs on the UI's task runner with progress and a Cancel button.
``ctx`` is the station's ``UiContext``: ``runtime`` (config, store, data dir), ``session``,
``can`` / ``require``, ``tasks`` and ``notifier``. The ``calibrate`` permission
(technician, admin) is needed to use it; it is checked again before each action.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidgetItem, QProgressBar, QPushButton, QStackedWidget, \
    QVBoxLayout, QWidget

from calibration.profile import ProfileStore
from calibration.ui.flow import CalibrationFlow, StepCancelled, live_stats
from calibration.ui.steps import QtCameraStep, QtExposureStep, QtReferenceStep, QtSaveStep, QtTolerancesStep, \
    QtValidationStep
from station.users import PermissionDenied  # the station's accounts: the wizard runs in its window

PERMISSION = "calibrate"
LIVE_MS = 200
STEPS = ("Camera", "Exposure", "Reference", "Tolerances", "Validation", "Save")


def camera_choices(cfg: Any) -> list[tuple[str, Callable[[], Any]]]:
    """The cameras the wizard can calibrate: the station config's, made by the factory."""
    from station.capture.factory import make_camera

    cam = cfg.camera
    serial = getattr(cam, "serial", None) or "first found"
    return [(f"{cam.type} camera {serial} (station config)", lambda: make_camera(cam))]


class QtCalibrationWizard(QWidget):
    """The stepped calibration wizard page."""

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        rt = ctx.runtime
        self.profiles = ProfileStore(rt.data_dir / "calibration")
        self.recipe = rt.cfg.recipe.name
        self.choices = camera_choices(rt.cfg)
        self.flow: CalibrationFlow | None = None
        self._task = None
        self._live_busy = False
        self._closed = False

        self.step_labels = [QLabel(f"{i + 1} {name}") for i, name in enumerate(STEPS)]
        self.camera_step = QtCameraStep()
        self.exposure_step = QtExposureStep()
        self.reference_step = QtReferenceStep(rt.cfg.calibration.calibration_images)
        self.tolerances_step = QtTolerancesStep()
        self.validation_step = QtValidationStep()
        self.save_step = QtSaveStep()
        self.stack = QStackedWidget()
        for w in (self.camera_step, self.exposure_step, self.reference_step, self.tolerances_step,
                  self.validation_step, self.save_step):
            self.stack.addWidget(w)
        self.camera_step.camera_box.addItems([name for name, _ in self.choices])
        self.camera_step.recipe_label.setText(self.recipe)

        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setObjectName("wizardStatus")
        self.status.setWordWrap(True)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setVisible(False)
        self.back_btn = QPushButton("Back")
        self.next_btn = QPushButton("Next")
        for b in (self.back_btn, self.next_btn, self.cancel_btn):
            b.setMinimumHeight(48)

        header = QHBoxLayout()
        for lbl in self.step_labels:
            header.addWidget(lbl)
        footer = QHBoxLayout()
        footer.addWidget(self.status, 1)
        footer.addWidget(self.progress)
        footer.addWidget(self.cancel_btn)
        footer.addWidget(self.back_btn)
        footer.addWidget(self.next_btn)
        root = QVBoxLayout(self)
        root.addLayout(header)
        root.addWidget(self.stack, 1)
        root.addLayout(footer)

        self.back_btn.clicked.connect(self.back)
        self.next_btn.clicked.connect(self.next)
        self.cancel_btn.clicked.connect(self.cancel_task)
        self.camera_step.rollback_btn.clicked.connect(self.roll_back_selected)
        self.exposure_step.apply_btn.clicked.connect(self.apply_exposure)
        self.reference_step.capture_btn.clicked.connect(self.capture_golden)
        self.reference_step.whole_btn.clicked.connect(lambda: self.reference_step.view.set_roi(None))
        self.reference_step.view.roi_changed.connect(self._roi_changed)
        self.tolerances_step.reset_btn.clicked.connect(self._reset_tolerances)
        self.validation_step.run_btn.clicked.connect(self.run_validation)
        self.save_step.save_btn.clicked.connect(self.save)

        self._live = QTimer(self)
        self._live.setInterval(LIVE_MS)
        self._live.timeout.connect(self._live_tick)
        if not ctx.can(PERMISSION):
            self.status.setText("The calibration wizard needs a technician or admin sign-in.")
        self._refresh_versions()
        self._go(0)

    # --- navigation ------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.stack.currentIndex()

    def _go(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        for i, lbl in enumerate(self.step_labels):
            lbl.setStyleSheet("font-weight: bold; color: #1565c0;" if i == index else "color: #777;")
        if index == 1 and not self._closed:
            self._live.start()
        else:
            self._live.stop()
        if index == 3 and self.flow is not None and self.flow.profile is not None:
            self.tolerances_step.set_values(self.flow.profile.tolerances)
            self._show_baseline()
        if index == 4 and self.flow is not None:
            self.validation_step.show_run(self.flow.validation)
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self._task is not None
        allowed = self.ctx.can(PERMISSION)
        f = self.flow
        ready = {
            0: True,
            1: f is not None and f.camera is not None,
            2: f is not None and bool(f.frames),
            3: f is not None and f.profile is not None,
            4: f is not None and f.validation is not None and f.validation.passed,
            5: False,
        }[self.step]
        self.next_btn.setEnabled(allowed and not busy and ready)
        self.next_btn.setText("Save ..." if self.step == 4 else "Next")
        self.back_btn.setEnabled(not busy and self.step > 0)
        for b in (self.reference_step.capture_btn, self.validation_step.run_btn, self.save_step.save_btn,
                  self.camera_step.rollback_btn, self.exposure_step.apply_btn):
            b.setEnabled(allowed and not busy)
        self.save_step.save_btn.setEnabled(allowed and not busy and f is not None and f.validation is not None
                                           and f.validation.passed and f.saved is None)
        self.cancel_btn.setVisible(busy)
        self.progress.setVisible(busy)

    def back(self) -> None:
        if self.step > 0 and self._task is None:
            self._go(self.step - 1)

    def next(self) -> None:
        if self._task is not None:
            return
        if self.step == 0:
            self.open_camera()
        elif self.step == 2:
            self.build_profile()
        elif self.step == 3:
            self.apply_tolerances()
        elif self.step in (1, 4):
            self._go(self.step + 1)

    # --- background work -------------------------------------------------------------
    def _run(self, what: str, fn, on_done, *, write: bool = False, allowed: bool = True) -> None:
        """Run one step's work on the task runner with progress and Cancel."""
        if not allowed:
            return
        self._live.stop()
        self.status.setText(f"{what} ...")
        self.status.setStyleSheet("")
        self.progress.setRange(0, 0)

        def done(result: Any) -> None:
            self._task = None
            if self._closed:
                return
            self.status.setText("")
            on_done(result)
            self._update_buttons()

        def failed(exc: BaseException) -> None:
            self._task = None
            if self._closed:
                return
            self.status.setText(f"{what} stopped: {exc}" if isinstance(exc, StepCancelled) else f"{what} failed: {exc}")
            self.status.setStyleSheet("" if isinstance(exc, StepCancelled) else "color: #c62828; font-weight: bold;")
            if not isinstance(exc, StepCancelled):
                self.ctx.notifier.error(f"calibration: {what} failed", exc)
            self._go(self.step)

        def progressed(message: str, fraction: float | None) -> None:
            if self._closed:
                return
            self.status.setText(message)
            if fraction is not None:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(1000 * fraction))

        self._task = self.ctx.tasks.run(fn, done, failed, progressed, label=f"calibration: {what}", write=write)
        self._update_buttons()

    def cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.status.setText("Cancelled.")
            self._go(self.step)

    def _allowed(self, what: str) -> bool:
        try:
            self.ctx.require(PERMISSION, what)
        except PermissionDenied:  # audited and shown by ctx.require
            self._update_buttons()
            return False
        return True

    # --- step 1: camera --------------------------------------------------------------
    def open_camera(self) -> None:
        if not self._allowed("open the camera for calibration"):
            return
        name, factory = self.choices[self.camera_step.camera_box.currentIndex()]
        if self.flow is not None:
            self.flow.close()
        rt, session = self.ctx.runtime, self.ctx.session
        store = rt.store
        self.flow = CalibrationFlow(factory, self.profiles, self.recipe, username=session.username,
                                    audit=lambda a, s, p: store.audit(a, s, p, actor=session.username),
                                    grab_timeout_s=max(1.0, rt.cfg.camera.timeout_s))
        flow = self.flow

        def work(_c) -> tuple[float | None, float | None]:
            flow.open_camera()
            return flow.settings()

        self._run(f"opening {name}", work, self._camera_open)

    def _camera_open(self, settings: tuple[float | None, float | None]) -> None:
        exposure, gain = settings
        if exposure is not None:
            self.exposure_step.exposure.setValue(exposure)
        if gain is not None:
            self.exposure_step.gain.setValue(gain)
        self.exposure_step.best_focus = 0.0
        self._refresh_versions()
        self._go(1)

    def _refresh_versions(self) -> None:
        lst = self.camera_step.versions
        lst.clear()
        serial = self.flow.serial if self.flow is not None and self.flow.serial else None
        refs = [r for r in self.profiles.list() if r.recipe == self.recipe and (serial is None or r.camera_serial == serial)]
        for ref in sorted(refs, key=lambda r: -r.version):
            try:
                p = self.profiles.load(*ref)
                text = f"{ref.identity}   {p.created_at:%Y-%m-%d %H:%M}   {p.created_by or '-'}   {p.notes}"
            except Exception as exc:  # noqa: BLE001 - a damaged version is listed, not hidden
                text = f"{ref.identity}   unreadable: {exc}"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, (ref.camera_serial, ref.version))
            lst.addItem(item)

    def roll_back_selected(self) -> None:
        item = self.camera_step.versions.currentItem()
        if item is None:
            self.status.setText("Select the version to roll back to.")
            return
        serial, version = item.data(Qt.ItemDataRole.UserRole)
        if not self._allowed(f"roll back the calibration to v{version}"):
            return
        session, store = self.ctx.session, self.ctx.runtime.store
        flow = CalibrationFlow(lambda: None, self.profiles, self.recipe, username=session.username,
                               audit=lambda a, s, p: store.audit(a, s, p, actor=session.username))
        flow.serial = serial

        def done(saved) -> None:
            self._refresh_versions()
            self.status.setText(f"Rolled back: v{version} is current again as {saved.identity}.")
            self.ctx.notifier.info(f"calibration rolled back to v{version} ({saved.identity})")

        self._run(f"rolling back to v{version}", lambda _c: flow.roll_back(version), done, write=True)

    # --- step 2: exposure ------------------------------------------------------------
    def _live_tick(self) -> None:
        flow = self.flow
        if flow is None or flow.camera is None or self._live_busy or self._task is not None or self._closed:
            return
        self._live_busy = True

        def work(_c):
            frame = flow.grab()
            return frame, live_stats(frame.image, frame.bit_depth)

        def done(result) -> None:
            self._live_busy = False
            if self._closed:
                return
            frame, stats = result
            self.exposure_step.view.set_frame(frame.image, frame.bit_depth)
            self.exposure_step.show_stats(stats)

        def failed(exc: BaseException) -> None:
            self._live_busy = False
            if not self._closed:
                self.exposure_step.view.set_frame(None, message=f"no frame: {exc}")

        self.ctx.tasks.run(work, done, failed, label="calibration live view")

    def apply_exposure(self) -> None:
        flow = self.flow
        if flow is None or not self._allowed("change exposure and gain"):
            return
        exposure, gain = self.exposure_step.exposure.value(), self.exposure_step.gain.value()

        def done(_r) -> None:
            self.status.setText(f"Exposure {exposure:.0f} us, gain {gain:.1f} dB set.")
            self._go(1)

        self._run("setting exposure and gain", lambda _c: flow.set_exposure_gain(exposure, gain), done)

    # --- step 3: golden reference and ROI --------------------------------------------
    def capture_golden(self) -> None:
        flow = self.flow
        if flow is None or not self._allowed("capture the golden reference"):
            return
        n = self.reference_step.count.value()

        def work(control) -> int:
            return flow.capture_golden(n, lambda d, t: control.progress(f"captured {d} of {t} good parts", d / t),
                                       lambda: control.cancelled)

        def done(count: int) -> None:
            view = self.reference_step.view
            view.set_frame(flow.reference_preview, flow.bit_depth)
            roi = self.ctx.runtime.cfg.recipe.roi
            if roi is not None and view.roi is None:
                from calibration.roi import Roi
                view.set_roi(Roi(*roi))
            self.status.setText(f"{count} good parts captured. Drag the ROI on the image, then Next.")

        self._run(f"capturing {n} good parts", work, done)

    def _roi_changed(self, roi) -> None:
        self.reference_step.roi_label.setText(
            "ROI: whole image (drag on the image to set it)" if roi is None else
            f"ROI: x {roi.x}, y {roi.y}, {roi.width} x {roi.height} px")

    def build_profile(self) -> None:
        flow = self.flow
        if flow is None or not self._allowed("build the calibration profile"):
            return
        roi = self.reference_step.view.roi

        def work(control):
            return flow.build_profile(roi, lambda d, t: control.progress(f"measured {d} of {t} parts", d / t))

        self._run("building the reference and deriving limits", work, lambda _p: self._go(3))

    # --- step 4: tolerances ----------------------------------------------------------
    def _show_baseline(self) -> None:
        b = self.flow.profile.baseline if self.flow and self.flow.profile else None
        if b is None:
            return
        self.tolerances_step.baseline.setText(
            f"Good parts measured (n={b.n_images}): brightness {b.brightness.mean:.3f} +- {b.brightness.std:.3f}, "
            f"contrast {b.contrast.mean:.3f}, focus {b.focus.mean:.2f}, noise {b.noise.mean:.4f}, "
            f"position {b.position.max:.1f} px max, rotation {b.rotation.max:.2f} deg max")

    def _reset_tolerances(self) -> None:
        if self.flow is not None and self.flow.derived is not None:
            self.tolerances_step.set_values(self.flow.derived)

    def apply_tolerances(self) -> None:
        try:
            self.flow.set_tolerances(**self.tolerances_step.values())
        except ValueError as exc:
            msg = str(exc).splitlines()
            self.status.setText("These limits do not fit together: " + " ".join(m.strip() for m in msg[1:] or msg))
            self.status.setStyleSheet("color: #c62828; font-weight: bold;")
            return
        self.status.setStyleSheet("")
        self._go(4)

    # --- step 5: validation ----------------------------------------------------------
    def run_validation(self) -> None:
        flow = self.flow
        if flow is None or not self._allowed("run the calibration validation"):
            return
        n = self.validation_step.count.value()

        def work(control):
            return flow.validate(n, lambda d, t: control.progress(f"checked {d} of {t} captures", d / t),
                                 lambda: control.cancelled)

        self._run(f"validating {n} captures", work, lambda run: self.validation_step.show_run(run))

    # --- step 6: save ----------------------------------------------------------------
    def save(self) -> None:
        flow = self.flow
        if flow is None or not self._allowed("save a calibration version"):
            return
        notes = self.save_step.notes.text().strip()

        def done(saved) -> None:
            self.save_step.result.setText(f"Saved {saved.label}. The previous versions stay available for rollback.")
            self.ctx.notifier.info(f"calibration {saved.identity} saved")
            self._refresh_versions()

        self._run("saving the calibration", lambda _c: flow.save(notes), done, write=True)

    # --- closing ---------------------------------------------------------------------
    def close_page(self) -> None:
        """Stop the live view, cancel work and release the camera (sign-out, close)."""
        if self._closed:
            return
        self._closed = True
        self.exposure_step.dispose()
        self._live.stop()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.flow is not None:
            flow, self.flow = self.flow, None
            try:  # off the GUI thread: a real camera can take a moment to let go
                self.ctx.tasks.run(lambda _c: flow.close(), label="calibration: close camera")
            except RuntimeError:  # the task runner is already shut down
                flow.close()
