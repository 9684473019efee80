"""The verdict banner: PASS / DEFECT / REVIEW / CHECK CAPTURE, readable from two metres.

Each verdict differs in three ways at once - the word, the icon's shape (circle with a
check, octagon with a cross, diamond with a question mark, triangle with an exclamation
mark) and the colour - so nobody has to rely on telling colours apart.
"""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from station.ui.theme import VERDICTS, VerdictStyle


def _shape_path(shape: str, r: QRectF) -> QPainterPath:
    path = QPainterPath()
    c, rad = r.center(), min(r.width(), r.height()) / 2
    if shape == "circle":
        path.addEllipse(c, rad, rad)
    elif shape == "octagon":
        pts = [QPointF(c.x() + rad * math.cos(math.radians(22.5 + 45 * i)),
                       c.y() + rad * math.sin(math.radians(22.5 + 45 * i))) for i in range(8)]
        path.addPolygon(QPolygonF(pts))
        path.closeSubpath()
    elif shape == "diamond":
        path.addPolygon(QPolygonF([QPointF(c.x(), c.y() - rad), QPointF(c.x() + rad, c.y()),
                                   QPointF(c.x(), c.y() + rad), QPointF(c.x() - rad, c.y())]))
        path.closeSubpath()
    elif shape == "triangle":
        path.addPolygon(QPolygonF([QPointF(c.x(), c.y() - rad), QPointF(c.x() + rad, c.y() + rad * 0.8),
                                   QPointF(c.x() - rad, c.y() + rad * 0.8)]))
        path.closeSubpath()
    else:
        path.addRoundedRect(QRectF(c.x() - rad, c.y() - rad, 2 * rad, 2 * rad), rad * 0.2, rad * 0.2)
    return path


def _draw_mark(p: QPainter, mark: str, r: QRectF, colour: QColor) -> None:
    c, rad = r.center(), min(r.width(), r.height()) / 2
    pen = QPen(colour, max(4.0, rad * 0.2), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
               Qt.PenJoinStyle.RoundJoin)
    p.setPen(pen)
    if mark == "check":
        p.drawPolyline(QPolygonF([QPointF(c.x() - rad * 0.45, c.y()), QPointF(c.x() - rad * 0.1, c.y() + rad * 0.38),
                                  QPointF(c.x() + rad * 0.5, c.y() - rad * 0.35)]))
    elif mark == "cross":
        d = rad * 0.38
        p.drawLine(QPointF(c.x() - d, c.y() - d), QPointF(c.x() + d, c.y() + d))
        p.drawLine(QPointF(c.x() + d, c.y() - d), QPointF(c.x() - d, c.y() + d))
    elif mark == "dash":
        p.drawLine(QPointF(c.x() - rad * 0.4, c.y()), QPointF(c.x() + rad * 0.4, c.y()))
    else:
        f = QFont()
        f.setPixelSize(int(rad * (1.0 if mark == "question" else 0.95)))
        f.setBold(True)
        p.setFont(f)
        box = QRectF(r)
        if mark == "bang":
            box.translate(0, rad * 0.15)
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, "?" if mark == "question" else "!")


class QtVerdictBanner(QWidget):
    """Shows one verdict: icon, word and what the operator does about it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(210)
        self.decision = "idle"
        self.detail = VERDICTS["idle"].hint
        self.shown_seq = 0  # which result is on screen (tests and bench/ui.py read it)

    @property
    def style_(self) -> VerdictStyle:
        return VERDICTS[self.decision]

    @property
    def text(self) -> str:
        return self.style_.text

    def show_verdict(self, decision: str, detail: str = "", seq: int = 0) -> None:
        if decision not in VERDICTS:
            raise ValueError(f"unknown decision {decision!r}")
        self.decision = decision
        self.detail = detail or VERDICTS[decision].hint
        self.shown_seq = seq
        self.setAccessibleName(self.text)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        st = self.style_
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        bg, fg = QColor(st.bg), QColor(st.fg)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(bg)
        p.drawRoundedRect(QRectF(self.rect()).adjusted(2, 2, -2, -2), 14, 14)
        h = self.height()
        icon = QRectF(24, h * 0.14, h * 0.72, h * 0.72)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(QPen(fg, max(5.0, h * 0.035)))
        p.drawPath(_shape_path(st.shape, icon))
        _draw_mark(p, st.mark, icon, fg)
        text_left = icon.right() + 28
        room = self.width() - text_left - 20
        f = QFont()
        f.setBold(True)
        size = int(h * 0.42)
        f.setPixelSize(size)
        while size > 24 and QFontMetrics(f).horizontalAdvance(st.text) > room:
            size -= 4  # the word must fit whole: never clip a verdict
            f.setPixelSize(size)
        p.setFont(f)
        p.setPen(fg)
        p.drawText(QRectF(text_left, 0, self.width() - text_left - 16, h * 0.68),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom), st.text)
        f2 = QFont()
        f2.setPixelSize(max(18, int(h * 0.12)))
        p.setFont(f2)
        detail = QFontMetrics(f2).elidedText(self.detail, Qt.TextElideMode.ElideRight, int(room))
        p.drawText(QRectF(text_left, h * 0.70, room, h * 0.26),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), detail)
        p.end()
