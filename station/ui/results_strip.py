"""The strip of the last results: thumbnail plus verdict word and icon letter, newest left."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from station.ui.live_view import qimage_of
from station.ui.theme import VERDICTS

_SYMBOL = {"pass": "✓", "reject": "✗", "review": "?", "check_capture": "!"}
_WORD = {"pass": "PASS", "reject": "DEFECT", "review": "REVIEW", "check_capture": "CHECK"}


class _Tile(QFrame):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.setFixedWidth(width)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setFixedHeight(int(width * 0.8))
        self.image.setStyleSheet("background: #0d0f12;")
        self.verdict = QLabel("")
        self.verdict.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict.setFixedHeight(34)
        self.part = QLabel("")
        self.part.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.part.setStyleSheet("font-size: 14px; color: #a9b0bb;")
        for w in (self.image, self.verdict, self.part):
            lay.addWidget(w)
        self.decision = ""

    def fill(self, decision: str, part_id: str, pixmap: QPixmap | None) -> None:
        if decision != self.decision:  # a style sheet change re-polishes: only when needed
            st = VERDICTS[decision]
            self.decision = decision
            self.verdict.setText(f"{_SYMBOL[decision]} {_WORD[decision]}")
            self.verdict.setStyleSheet(f"background: {st.bg}; color: {st.fg}; font-size: 17px; font-weight: bold;")
        self.part.setText(part_id[-10:])
        if pixmap is not None:
            self.image.setPixmap(pixmap)
        else:
            self.image.clear()
            self.image.setText("no image")
        if not self.isVisible():
            self.setVisible(True)


class QtResultsStrip(QWidget):
    """The last ``n`` results, newest first."""

    def __init__(self, n: int, tile_width: int = 150) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.setSpacing(8)
        self.tiles = [_Tile(tile_width) for _ in range(n)]
        self._size = (tile_width, int(tile_width * 0.8))
        self._items: list[tuple[str, str, QPixmap | None]] = []
        for t in self.tiles:
            t.setVisible(False)
            lay.addWidget(t)
        lay.addStretch(1)

    def _pixmap(self, thumb: np.ndarray | None) -> QPixmap | None:
        if thumb is None:
            return None
        pm = QPixmap.fromImage(qimage_of(thumb))  # copies, so the array may go
        return pm.scaled(*self._size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)

    def push(self, decision: str, part_id: str, thumb: np.ndarray | None) -> None:
        self._items.insert(0, (decision, part_id, self._pixmap(thumb)))
        del self._items[len(self.tiles):]
        self._render()

    def set_items(self, items: list[tuple[str, str, np.ndarray | None]]) -> None:
        self._items = [(d, p, self._pixmap(t)) for d, p, t in items[: len(self.tiles)]]
        self._render()

    @property
    def decisions(self) -> list[str]:
        return [d for d, _, _ in self._items]

    def _render(self) -> None:
        for tile, item in zip(self.tiles, self._items):
            tile.fill(*item)
