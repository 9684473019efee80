"""The live image: the latest frame, painted straight from its numpy buffer, with an
optional heatmap overlay.

The widget never asks the camera or the cycle for anything: the operator screen's timer
hands it the newest frame from the line's one-slot mailbox. A frame is wrapped in a
``QImage`` without copying (8-bit, 16-bit grey or BGR) and painted scaled to fit with a
fast transform - at 1280x1024 that is a few milliseconds, well inside a 25 fps budget.

A 16-bit frame is shown through a grey window when one is set (:meth:`QtLiveView.set_window`):
mapped to 8 bits here, on the GUI thread when the frame or the window changes (well under a
millisecond at 1280x1024, see ``bench/window_level.py``), never on the line's thread.
8-bit frames are never windowed.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from station.display_window import GreyWindow, apply_window

def qimage_of(image: np.ndarray) -> QImage:
    """Wrap a frame without copying; the caller keeps ``image`` alive while it is shown."""
    img = np.ascontiguousarray(image)
    h, w = img.shape[:2]
    if img.ndim == 2 and img.dtype == np.uint8:
        fmt = QImage.Format.Format_Grayscale8
    elif img.ndim == 2 and img.dtype == np.uint16:
        fmt = QImage.Format.Format_Grayscale16
    elif img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
        fmt = QImage.Format.Format_BGR888
    elif img.ndim == 3 and img.shape[2] == 4 and img.dtype == np.uint8:
        fmt = QImage.Format.Format_RGBA8888
    else:
        raise ValueError(f"cannot show an image of shape {img.shape} and type {img.dtype}")
    return QImage(img.data, w, h, img.strides[0], fmt)


class QtLiveView(QWidget):
    """Paints the frame it was last given (and the overlay, when shown)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(320, 256)
        self._frame: np.ndarray | None = None
        self._qimage: QImage | None = None
        self._shown: np.ndarray | None = None  # the 8-bit windowed copy of a 16-bit frame
        self.window: GreyWindow | None = None
        self._overlay: np.ndarray | None = None
        self._qoverlay: QImage | None = None
        self.show_overlay = False
        self.caption = "waiting for the first part"
        self.painted = 0  # paint events that drew a frame (bench/ui.py counts these)
        self.frames_set = 0

    def set_frame(self, image: np.ndarray | None, overlay: np.ndarray | None = None) -> None:
        """Show ``image`` (kept by reference) and its RGBA ``overlay`` (or none)."""
        if image is None:
            self._frame = self._qimage = self._shown = None
        else:
            self._frame = np.ascontiguousarray(image)
            self._map()
        self._overlay = overlay
        self._qoverlay = qimage_of(overlay) if overlay is not None else None
        self.frames_set += 1
        self.update()

    @property
    def frame(self) -> np.ndarray | None:
        """The frame on screen, as given (16-bit stays 16-bit)."""
        return self._frame

    @property
    def windowed(self) -> bool:
        return self._shown is not None

    def set_window(self, window: GreyWindow | None) -> None:
        """Show 16-bit frames through ``window`` (None: as they are)."""
        self.window = window
        if self._frame is not None:
            self._map()
        self.update()

    def _map(self) -> None:
        f = self._frame
        if self.window is not None and f.dtype == np.uint16 and f.ndim == 2:
            self._shown = apply_window(f, self.window)
            self._qimage = qimage_of(self._shown)
        else:
            self._shown = None
            self._qimage = qimage_of(f)

    def set_overlay_visible(self, visible: bool) -> None:
        self.show_overlay = bool(visible)
        self.update()

    @property
    def has_overlay(self) -> bool:
        return self._qoverlay is not None

    def image_rect(self) -> QRectF:
        """Where the frame lands in the widget (aspect kept, centred)."""
        if self._qimage is None:
            return QRectF()
        iw, ih = self._qimage.width(), self._qimage.height()
        s = min(self.width() / iw, self.height() / ih)
        w, h = iw * s, ih * s
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0d0f12"))
        if self._qimage is None:
            p.setPen(QColor("#a9b0bb"))
            f = QFont()
            f.setPixelSize(28)
            p.setFont(f)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.caption)
            p.end()
            return
        target = self.image_rect()
        p.drawImage(target, self._qimage)
        if self.show_overlay and self._qoverlay is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(target, self._qoverlay)
        p.end()
        self.painted += 1
