"""The "line held" banner: the cycle is suspended (door open, shutter closed, disk nearly
full) and the operator must see why from two metres.

It must never be mistaken for a verdict, so it differs from the verdict banner in all three
cues at once: the words (LINE HELD and the reasons, never a verdict word), the shape (a
pause sign inside hazard stripes round the whole banner, where verdicts are solid fills with
a circle / octagon / diamond / triangle / square icon) and the colour (Okabe-Ito orange
stripes on black). Hidden while the cycle runs.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from station.ui.line_view import split_reason

HELD_WORD = "LINE HELD"
STRIPE = "#E69F00"  # Okabe-Ito orange (hazard stripes)
INNER = "#111111"
STRIPE_PX = 14  # width of the striped frame


def _stripes(p: QPainter, r: QRectF) -> None:
    """Diagonal orange / black hazard stripes filling ``r``."""
    p.fillRect(r, QColor(INNER))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(STRIPE))
    step = 2 * STRIPE_PX
    x = r.left() - r.height()
    while x < r.right():
        p.drawPolygon(QPolygonF([QPointF(x, r.bottom()), QPointF(x + STRIPE_PX, r.bottom()),
                                 QPointF(x + STRIPE_PX + r.height(), r.top()), QPointF(x + r.height(), r.top())]))
        x += step


class QtSuspensionBanner(QWidget):
    """Shows the reasons the line is held; ``show_reasons([])`` hides it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(176)
        self.reasons: list[str] = []
        self.setVisible(False)

    def show_reasons(self, reasons: list[str]) -> None:
        reasons = [r for r in reasons if r]
        if reasons == self.reasons:
            return
        self.reasons = reasons
        self.setAccessibleName(f"{HELD_WORD}: " + "; ".join(reasons) if reasons else "")
        self.setToolTip("\n".join(reasons))
        self.setVisible(bool(reasons))
        self.update()

    @property
    def headline(self) -> str:
        """The reasons' short forms, as printed large (``door open · shutter closed``)."""
        return "  ·  ".join(split_reason(r)[0] for r in self.reasons)

    @property
    def details(self) -> str:
        return "   ".join(d for d in (split_reason(r)[1] for r in self.reasons) if d)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        outer = QRectF(self.rect())
        clip = QPainterPath()
        clip.addRoundedRect(outer, 14, 14)
        p.setClipPath(clip)
        _stripes(p, outer)
        inner = outer.adjusted(STRIPE_PX, STRIPE_PX, -STRIPE_PX, -STRIPE_PX)
        p.setBrush(QColor(INNER))
        p.drawRoundedRect(inner, 8, 8)
        h = inner.height()
        # the pause sign: two bars, no outline (verdict icons are outlined shapes)
        bar_w, bar_h = h * 0.17, h * 0.62
        x0, y0 = inner.left() + 30, inner.top() + (h - bar_h) / 2
        p.setBrush(QBrush(QColor(STRIPE)))
        for dx in (0.0, bar_w * 1.9):
            p.drawRoundedRect(QRectF(x0 + dx, y0, bar_w, bar_h), 4, 4)
        text_left = x0 + bar_w * 2.9 + 28
        room = inner.right() - text_left - 20
        word = QFont()
        word.setBold(True)
        word.setPixelSize(int(h * 0.36))
        p.setFont(word)
        p.setPen(QColor(STRIPE))
        word_w = QFontMetrics(word).horizontalAdvance(HELD_WORD)
        p.drawText(QRectF(text_left, inner.top() + h * 0.04, word_w + 10, h * 0.48),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), HELD_WORD)
        self._draw_reasons(p, QRectF(text_left, inner.top() + h * 0.52, room, h * 0.46), word_w, h)
        p.end()

    def _draw_reasons(self, p: QPainter, box: QRectF, word_w: float, h: float) -> None:
        head = QFont()
        head.setBold(True)
        size = int(h * 0.30)
        head.setPixelSize(size)
        while size > 20 and QFontMetrics(head).horizontalAdvance(self.headline) > box.width():
            size -= 2  # the reasons must fit whole: shrink, never clip
            head.setPixelSize(size)
        p.setFont(head)
        p.setPen(QColor("#ffffff"))
        text = QFontMetrics(head).elidedText(self.headline, Qt.TextElideMode.ElideRight, int(box.width()))
        p.drawText(box, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
        # beside the big word: what happens next, and the details (free space, ...)
        side = QFont()
        side.setPixelSize(max(18, int(h * 0.13)))
        p.setFont(side)
        p.setPen(QColor("#dddddd"))
        left = box.left() + word_w + 34
        rect = QRectF(left, box.top() - h * 0.48, box.right() - left, h * 0.46)
        note = "nothing is captured; the line resumes when cleared"
        if self.details:
            note = f"{self.details}  -  {note}"
        fm = QFontMetrics(side)
        lines = fm.elidedText(note, Qt.TextElideMode.ElideRight, int(rect.width() * 2 - 40))
        p.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextWordWrap),
                   lines)
