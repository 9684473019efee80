"""Window / level controls for 16-bit images: the button bar and the drag on the image.

:class:`QtWindowLevelBar` holds the current :class:`~station.display_window.GreyWindow` and
shows it as numbers (W / L), with one large button per recipe preset, *Auto* (percentiles
of the frame on screen) and *Reset* (:func:`~station.display_window.default_window`: the
recipe's first preset, else its grey window, else the full range).
:class:`WindowLevelMouse` lets the operator drag on the image itself, the usual radiology
gesture: left / right moves the level, up / down the width; the wheel and the arrow keys
make fine steps (Shift: ten at once). Both only change what is shown.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from station.display_window import DragGain, GreyWindow, auto_window, default_window, fine_step, fit_window

DRAG_TIP = ("Window / level: drag on the image - left / right moves the level (right = darker), "
            "up / down the width (up = softer, down = harder contrast). Wheel: width in fine "
            "steps; arrow keys: ← → level, ↑ ↓ width; hold Shift for 10x.")


class QtWindowLevelBar(QWidget):
    """Presets, Auto, Reset and the W / L readout; emits ``window_changed`` on every change."""

    window_changed = Signal(object)  # GreyWindow

    def __init__(self, presets: list[tuple[str, GreyWindow]],
                 frame_source: Callable[[], np.ndarray | None], parent: QWidget | None = None,
                 *, grey_window: GreyWindow | None = None) -> None:
        super().__init__(parent)
        self.presets = list(presets)
        self.grey_window = grey_window  # the recipe's model window: the default without presets
        self._frame_source = frame_source
        self.top = 65535
        self.window: GreyWindow | None = None
        self.active = False
        self.readout = QLabel("")
        self.readout.setObjectName("wlReadout")
        self.readout.setStyleSheet("font-size: 26px; font-weight: bold; font-family: monospace;")
        self.readout.setToolTip(DRAG_TIP)
        self.preset_buttons: dict[str, QPushButton] = {}
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(8)
        lay.addWidget(self.readout)
        lay.addSpacing(8)
        self._preset_row = QHBoxLayout()
        self._preset_row.setSpacing(8)
        lay.addLayout(self._preset_row)
        self._make_preset_buttons()
        self.auto_button = QPushButton("Auto")
        self.auto_button.setToolTip("Window from this frame: its 0.5 % to 99.5 % grey levels")
        self.auto_button.clicked.connect(self.auto)
        self.reset_button = QPushButton("Reset")
        self.reset_button.clicked.connect(self.reset)
        self._reset_tip()
        for b in (self.auto_button, self.reset_button):
            b.setMinimumHeight(56)
            lay.addWidget(b)
        lay.addStretch(1)
        self.setVisible(False)

    def _make_preset_buttons(self) -> None:
        for b in self.preset_buttons.values():
            self._preset_row.removeWidget(b)
            b.deleteLater()
        self.preset_buttons = {}
        for name, w in self.presets:
            b = QPushButton(name)
            b.setCheckable(True)  # checked = the preset on screen now
            b.setMinimumHeight(56)
            b.setToolTip(f"{name}: grey {w.low} .. {w.high}")
            b.clicked.connect(lambda _=False, n=name: self.apply_preset(n))
            self.preset_buttons[name] = b
            self._preset_row.addWidget(b)

    def set_presets(self, presets: list[tuple[str, GreyWindow]], grey_window: GreyWindow | None = None) -> None:
        """Another recipe's presets (the line switched recipe): its default window applies."""
        if list(presets) == self.presets and grey_window == self.grey_window:
            return
        self.presets = list(presets)
        self.grey_window = grey_window
        self._make_preset_buttons()
        self._reset_tip()
        if self.active:
            self.reset()

    def _reset_tip(self) -> None:
        back = (self.presets[0][0] if self.presets else
                f"the recipe's grey window ({self.grey_window.low} .. {self.grey_window.high})" if self.grey_window else "the full range")
        self.reset_button.setToolTip(f"Back to {back}")

    # --- state ---------------------------------------------------------------------------
    @property
    def default_window(self) -> GreyWindow:
        return default_window([w for _, w in self.presets], self.top, self.grey_window)

    def _fit(self, w: GreyWindow) -> GreyWindow:
        return fit_window(w, self.top)

    def activate(self, top: int) -> None:
        """A 16-bit frame is on screen: show the controls (first time: the default window)."""
        if self.active and top == self.top:
            return
        self.top = int(top)
        self.active = True
        self.setVisible(True)
        self.set_window(self.window if self.window is not None else self.default_window)

    def deactivate(self) -> None:
        """An 8-bit frame: no window, no controls."""
        if self.active:
            self.active = False
            self.setVisible(False)
            self.window_changed.emit(None)

    def set_window(self, w: GreyWindow | None) -> None:
        w = self._fit(w) if w is not None else None
        self.window = w
        self.readout.setText(w.text() if w is not None else "")
        for name, b in self.preset_buttons.items():
            b.setChecked(w is not None and self._fit(dict(self.presets)[name]) == w)
        self.window_changed.emit(w)

    # --- commands ------------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        self.set_window(dict(self.presets)[name])

    def auto(self) -> None:
        frame = self._frame_source()
        if frame is not None and frame.ndim == 2:
            self.set_window(auto_window(frame, self.top))

    def reset(self) -> None:
        self.set_window(self.default_window)

    def nudge(self, d_level: float = 0.0, d_width: float = 0.0) -> None:
        if self.window is None:
            return
        w = self.window
        self.set_window(GreyWindow.from_level_width(w.level + d_level, w.width + d_width, self.top))


class WindowLevelMouse(QObject):
    """Event filter on an image view (anything with ``image_rect()``): drag, wheel, arrows."""

    def __init__(self, view: QWidget, bar: QtWindowLevelBar) -> None:
        super().__init__(view)
        self.view, self.bar = view, bar
        self._start: tuple[QPointF, GreyWindow] | None = None
        view.installEventFilter(self)
        view.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        bar.window_changed.connect(self._tooltip)

    def _tooltip(self, w: GreyWindow | None) -> None:
        self.view.setToolTip(DRAG_TIP if w is not None else "")

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        bar = self.bar
        if not bar.active or bar.window is None:
            return False
        t = event.type()
        if t == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            self._start = (event.position(), bar.window)
            return True
        if t == QEvent.Type.MouseMove and self._start is not None:
            origin, w0 = self._start
            r = self.view.image_rect()
            gain = DragGain(int(r.width()) or self.view.width(), int(r.height()) or self.view.height(), bar.top)
            d = event.position() - origin
            bar.set_window(gain.dragged(w0, d.x(), d.y()))
            return True
        if t == QEvent.Type.MouseButtonRelease and self._start is not None:
            self._start = None
            return True
        if t == QEvent.Type.Wheel:
            notches = event.angleDelta().y() / 120.0
            bar.nudge(d_width=-notches * self._step(event))  # wheel away = narrower (harder)
            return True
        if t == QEvent.Type.KeyPress:
            step = self._step(event)
            moves = {Qt.Key.Key_Left: (-step, 0), Qt.Key.Key_Right: (step, 0),
                     Qt.Key.Key_Up: (0, step), Qt.Key.Key_Down: (0, -step)}
            move = moves.get(event.key())
            if move is not None:
                bar.nudge(*move)
                return True
        return False

    def _step(self, event) -> int:
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        return fine_step(self.bar.top) * (10 if shift else 1)
