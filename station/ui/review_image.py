"""A widget that shows one RGB picture scaled to fit, keeping its aspect ratio."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget


def qimage_from_rgb(rgb: np.ndarray) -> QImage:
    """A QImage owning a copy of an HxWx3 uint8 RGB array."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def scaled_font(font: QFont, factor: float) -> QFont:
    """``font`` made ``factor`` times bigger, whether the style sheet sized it in points or pixels."""
    f = QFont(font)
    if f.pointSizeF() > 0:
        f.setPointSizeF(f.pointSizeF() * factor)
    elif f.pixelSize() > 0:
        f.setPixelSize(round(f.pixelSize() * factor))
    return f


class QtPictureView(QWidget):
    """Paints a picture letterboxed into the widget, or a message when there is none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._message = "no image"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(800, 640)

    def set_rgb(self, rgb: np.ndarray | None, message: str = "no image") -> None:
        self._image = qimage_from_rgb(rgb) if rgb is not None else None
        self._message = message
        self.update()

    @property
    def has_image(self) -> bool:
        return self._image is not None

    def image_rect(self) -> QRect:
        """Where the picture is drawn, in widget coordinates."""
        if self._image is None:
            return QRect()
        size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = (self.width() - size.width()) // 2
        y = (self.height() - size.height()) // 2
        return QRect(x, y, size.width(), size.height())

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#1e1e1e"))
        if self._image is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(self.image_rect(), self._image)
        else:
            p.setPen(QColor("#bbbbbb"))
            p.setFont(scaled_font(self.font(), 1.4))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
        p.end()
