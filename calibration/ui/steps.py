"""The six pages of the calibration wizard (layout only; the wizard wires the actions)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from calibration.profile import Tolerances
from calibration.ui.flow import LiveStats, ValidationRun
from calibration.ui.roi_view import QtFrameView

TOLERANCE_STEPS = {"position_max_px": (0.5, 1), "rotation_max_deg": (0.1, 2)}  # step, decimals


def _title(text: str) -> QLabel:
    t = QLabel(text)
    t.setObjectName("wizardStepTitle")
    f = QFont(t.font())
    if f.pointSizeF() > 0:  # the station's style sheet may size fonts in pixels instead
        f.setPointSizeF(f.pointSizeF() * 1.5)
    elif f.pixelSize() > 0:
        f.setPixelSize(round(f.pixelSize() * 1.5))
    f.setBold(True)
    t.setFont(f)
    return t


def _help(text: str) -> QLabel:
    h = QLabel(text)
    h.setWordWrap(True)
    h.setStyleSheet("color: #9aa0a6;")  # readable on the light and the dark theme
    return h


class QtCameraStep(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.camera_box = QComboBox()
        self.recipe_label = QLabel("")
        self.versions = QListWidget()
        self.rollback_btn = QPushButton("Roll back to the selected version")
        lay = QVBoxLayout(self)
        lay.addWidget(_title("1  Choose the camera"))
        lay.addWidget(_help("The wizard opens its own connection to the camera; stop the line first "
                            "when the camera allows only one."))
        form = QFormLayout()
        form.addRow("Camera", self.camera_box)
        form.addRow("Recipe", self.recipe_label)
        lay.addLayout(form)
        lay.addWidget(QLabel("Saved calibration versions (newest first)"))
        lay.addWidget(self.versions, 1)
        lay.addWidget(self.rollback_btn)


class QtExposureStep(QWidget):
    """Live image, histogram and focus meter while exposure and gain are set."""

    def __init__(self) -> None:
        super().__init__()
        self.view = QtFrameView()
        self.hist = pg.PlotWidget(background="w")
        self.hist.setTitle("Histogram", color="#222")
        self.hist.setMenuEnabled(False)
        self.hist.setMouseEnabled(x=False, y=False)
        self.hist.hideButtons()
        self.hist.getAxis("left").setStyle(showValues=False)
        self.hist_curve = self.hist.plot([0.0, 1.0], [0.0], stepMode="center", fillLevel=0,
                                         brush=pg.mkBrush("#1565c080"), pen=pg.mkPen("#1565c0", width=2))
        self.hist.setXRange(0, 1, padding=0.01)
        self.exposure = QDoubleSpinBox()
        self.exposure.setRange(10, 1_000_000)
        self.exposure.setDecimals(0)
        self.exposure.setSuffix(" us")
        self.exposure.setSingleStep(250)
        self.gain = QDoubleSpinBox()
        self.gain.setRange(0, 48)
        self.gain.setDecimals(1)
        self.gain.setSuffix(" dB")
        self.gain.setSingleStep(0.5)
        self.apply_btn = QPushButton("Apply")
        self.focus_bar = QProgressBar()
        self.focus_bar.setRange(0, 1000)
        self.focus_bar.setTextVisible(False)
        self.focus_label = QLabel("focus -")
        self.brightness_label = QLabel("brightness -")
        self.clipping_label = QLabel("clipping -")
        self.best_focus = 0.0
        side = QVBoxLayout()
        form = QFormLayout()
        form.addRow("Exposure", self.exposure)
        form.addRow("Gain", self.gain)
        side.addLayout(form)
        side.addWidget(self.apply_btn)
        side.addWidget(self.hist, 1)
        side.addWidget(self.brightness_label)
        side.addWidget(self.clipping_label)
        side.addWidget(QLabel("Focus meter (variance of the Laplacian; turn the lens for the maximum)"))
        side.addWidget(self.focus_bar)
        side.addWidget(self.focus_label)
        body = QHBoxLayout()
        body.addWidget(self.view, 3)
        body.addLayout(side, 2)
        lay = QVBoxLayout(self)
        lay.addWidget(_title("2  Exposure, gain and focus"))
        lay.addLayout(body, 1)

    def dispose(self) -> None:
        """Free the histogram's context menus (pyqtgraph makes them parentless)."""
        item = self.hist.getPlotItem()
        for menu in (item.ctrlMenu, item.vb.menu if item.vb is not None else None):
            if menu is not None:
                menu.deleteLater()

    def show_stats(self, s: LiveStats) -> None:
        edges = np.linspace(0.0, 1.0, s.histogram.size + 1)
        self.hist_curve.setData(edges, s.histogram)
        self.best_focus = max(self.best_focus, s.focus)
        self.focus_bar.setValue(int(1000 * s.focus / self.best_focus) if self.best_focus > 0 else 0)
        self.focus_label.setText(f"focus {s.focus:.1f}  (best seen {self.best_focus:.1f})")
        self.brightness_label.setText(f"brightness {100 * s.mean:.1f} % of full scale")
        clip = 100 * (s.clipped_low + s.clipped_high)
        self.clipping_label.setText(f"clipping {clip:.2f} %  (black {100 * s.clipped_low:.2f} %, "
                                    f"saturated {100 * s.clipped_high:.2f} %)")
        self.clipping_label.setStyleSheet("color: #c62828; font-weight: bold;" if clip > 1.0 else "")


class QtReferenceStep(QWidget):
    def __init__(self, default_count: int) -> None:
        super().__init__()
        self.count = QSpinBox()
        self.count.setRange(3, 1000)
        self.count.setValue(default_count)
        self.capture_btn = QPushButton("Capture good parts")
        self.view = QtFrameView(pick_roi=True)
        self.roi_label = QLabel("ROI: whole image (drag on the image to set it)")
        self.whole_btn = QPushButton("Use the whole image")
        row = QHBoxLayout()
        row.addWidget(QLabel("Good parts"))
        row.addWidget(self.count)
        row.addWidget(self.capture_btn)
        row.addStretch(1)
        row.addWidget(self.roi_label)
        row.addWidget(self.whole_btn)
        lay = QVBoxLayout(self)
        lay.addWidget(_title("3  Golden reference and region of interest"))
        lay.addWidget(_help("Put known-good parts in front of the camera one after the other; the "
                            "reference is their aligned median. Then drag the region the checks measure."))
        lay.addLayout(row)
        lay.addWidget(self.view, 1)


class QtTolerancesStep(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.spins: dict[str, QDoubleSpinBox] = {}
        self.baseline = QLabel("")
        self.baseline.setWordWrap(True)
        self.reset_btn = QPushButton("Reset to the derived limits")
        form = QFormLayout()
        for name, info in Tolerances.model_fields.items():
            spin = QDoubleSpinBox()
            step, decimals = TOLERANCE_STEPS.get(name, (0.005, 4))
            spin.setDecimals(decimals)
            spin.setSingleStep(step)
            spin.setRange(-1.0 if name == "registration_min" else 0.0, 1000.0)
            spin.setToolTip(info.description or "")
            spin.setMaximumWidth(260)
            self.spins[name] = spin
            form.addRow(name.replace("_", " "), spin)
        lay = QVBoxLayout(self)
        lay.addWidget(_title("4  Tolerances"))
        lay.addWidget(_help("Pre-filled with the limits derived from the good parts. Tighten or widen "
                            "them only for a reason you can name."))
        lay.addLayout(form)
        lay.addWidget(self.reset_btn)
        lay.addWidget(self.baseline)
        lay.addStretch(1)

    def set_values(self, tol: Tolerances) -> None:
        for name, spin in self.spins.items():
            spin.setValue(float(getattr(tol, name)))

    def values(self) -> dict[str, float]:
        return {name: spin.value() for name, spin in self.spins.items()}


class QtValidationStep(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.count = QSpinBox()
        self.count.setRange(1, 500)
        self.count.setValue(10)
        self.run_btn = QPushButton("Run validation")
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["capture", "result"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.summary = QLabel("Not run yet: saving needs a validation run in which every capture passes.")
        self.summary.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Captures"))
        row.addWidget(self.count)
        row.addWidget(self.run_btn)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(_title("5  Validation run"))
        lay.addLayout(row)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.summary)

    def show_run(self, run: ValidationRun | None) -> None:
        if run is None:
            self.table.setRowCount(0)
            self.summary.setText("Not run yet: saving needs a validation run in which every capture passes.")
            self.summary.setStyleSheet("")
            return
        rows = [("PASS" if r.passed else "FAIL: " + "; ".join(c.message for c in r.failed)) for r in run.reports]
        rows += [f"FAIL: {e}" for e in run.errors]
        self.table.setRowCount(len(rows))
        for i, text in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(str(i + 1)))
            item = QTableWidgetItem(text)
            item.setForeground(Qt.GlobalColor.darkGreen if text == "PASS" else Qt.GlobalColor.red)
            self.table.setItem(i, 1, item)
        self.summary.setText(("Passed: " if run.passed else "Saving is blocked. ") + run.summary())
        self.summary.setStyleSheet("color: #2e7d32; font-weight: bold;" if run.passed
                                   else "color: #c62828; font-weight: bold;")


class QtSaveStep(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.notes = QLineEdit()
        self.notes.setPlaceholderText("why this calibration (new lamp, lens cleaned, new fixture ...)")
        self.save_btn = QPushButton("Save calibration version")
        self.result = QLabel("")
        self.result.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(_title("6  Save a new calibration version"))
        lay.addWidget(_help("Saving never replaces a version: the previous ones stay available for "
                            "rollback. The line uses the newest version from its next start; retrain the "
                            "model on the Models page when the reference changed."))
        form = QFormLayout()
        form.addRow("Notes", self.notes)
        lay.addLayout(form)
        lay.addWidget(self.save_btn)
        lay.addWidget(self.result)
        lay.addStretch(1)
