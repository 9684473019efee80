"""An image view that letterboxes a frame and lets the technician drag the ROI on it."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QRubberBand, QSizePolicy, QWidget

from calibration.roi import Roi


def to_qimage(image: np.ndarray, bit_depth: int = 8) -> QImage:
    """A QImage (own copy) of a mono or BGR frame; 16-bit scaled by its significant bits."""
    img = image
    if img.dtype != np.uint8:
        img = np.clip(img.astype(np.float32) * (255.0 / ((1 << bit_depth) - 1)), 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    h, w = img.shape[:2]
    if img.ndim == 2:
        return QImage(img.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QImage(img.data, w, h, 3 * w, QImage.Format.Format_BGR888).copy()


class QtFrameView(QWidget):
    """Shows one frame scaled to fit; with ``pick_roi`` the mouse drags a ROI rectangle.

    The ROI is kept in image pixel coordinates (``roi``) whatever the widget's size.
    """

    roi_changed = Signal(object)  # Roi or None

    def __init__(self, pick_roi: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._shape: tuple[int, int] | None = None  # (h, w) of the frame
        self._message = "no image yet"
        self._pick = pick_roi
        self.roi: Roi | None = None
        self._band = QRubberBand(QRubberBand.Shape.Rectangle, self) if pick_roi else None
        self._origin: QPoint | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 256)
        if pick_roi:
            self.setCursor(Qt.CursorShape.CrossCursor)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(640, 512)

    def set_frame(self, image: np.ndarray | None, bit_depth: int = 8, message: str = "no image yet") -> None:
        if image is None:
            self._image, self._shape = None, None
        else:
            self._image = to_qimage(image, bit_depth)
            self._shape = (int(image.shape[0]), int(image.shape[1]))
            if self.roi is not None and not self.roi.fits(image.shape):
                self.set_roi(None)
        self._message = message
        self.update()

    def set_roi(self, roi: Roi | None) -> None:
        self.roi = roi
        self.roi_changed.emit(roi)
        self.update()

    # --- coordinates -----------------------------------------------------------------
    def image_rect(self) -> QRect:
        if self._image is None:
            return QRect()
        size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        return QRect((self.width() - size.width()) // 2, (self.height() - size.height()) // 2,
                     size.width(), size.height())

    def to_image(self, p: QPoint) -> tuple[int, int]:
        """Widget point -> image pixel (clamped to the image)."""
        r = self.image_rect()
        h, w = self._shape or (1, 1)
        x = (p.x() - r.x()) * w / max(1, r.width())
        y = (p.y() - r.y()) * h / max(1, r.height())
        return int(min(max(x, 0), w)), int(min(max(y, 0), h))

    def to_widget(self, roi: Roi) -> QRect:
        r = self.image_rect()
        h, w = self._shape or (1, 1)
        sx, sy = r.width() / w, r.height() / h
        return QRect(int(r.x() + roi.x * sx), int(r.y() + roi.y * sy), int(roi.width * sx), int(roi.height * sy))

    # --- mouse (ROI) -----------------------------------------------------------------
    def mousePressEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._pick and self._image is not None and e.button() == Qt.MouseButton.LeftButton:
            self._origin = e.position().toPoint()
            self._band.setGeometry(QRect(self._origin, QSize()))
            self._band.show()

    def mouseMoveEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._origin is not None:
            self._band.setGeometry(QRect(self._origin, e.position().toPoint()).normalized())

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._origin is None:
            return
        (x0, y0), (x1, y1) = self.to_image(self._origin), self.to_image(e.position().toPoint())
        self._origin = None
        self._band.hide()
        x, y, w, h = min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)
        if w >= 16 and h >= 16:  # a click or a sliver is not a ROI
            self.set_roi(Roi(x, y, w, h))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#1e1e1e"))
        if self._image is None:
            p.setPen(QColor("#bbbbbb"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._message)
        else:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(self.image_rect(), self._image)
            if self.roi is not None:
                p.setPen(QPen(QColor("#00e676"), 3))
                p.drawRect(self.to_widget(self.roi))
        p.end()
