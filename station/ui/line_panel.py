"""The line panel beside the live image: the active recipe and, when the station talks to a
PLC / MES, each line link (Modbus TCP / OPC UA): listening, clients, last trigger.

Read-only, like the other panels; the operator screen refreshes it on a timer from the
adapters in :mod:`station.ui.line_view`.
"""
from __future__ import annotations

import time

from PySide6.QtWidgets import QHBoxLayout, QLabel

from station.ui.line_view import LinkShown, RecipeShown
from station.ui.operator_panels import _Panel
from station.ui.station_status import human_age
from station.ui.theme import MUTED, STATE_BAD, STATE_OK, STATE_WARN


def link_text(link: LinkShown, now: float | None = None) -> str:
    """``● Modbus TCP  listening on 0.0.0.0:502, 1 client(s) · last trigger 3 s ago`` (rich text)."""
    now = time.time() if now is None else now
    if not link.listening:
        colour, symbol = STATE_BAD, "○"
    elif link.clients == 0:
        colour, symbol = STATE_WARN, "◐"  # listening, but no PLC has connected
    else:
        colour, symbol = STATE_OK, "●"
    last = ("no trigger yet" if link.last_trigger_at is None
            else f"last trigger {human_age(max(0.0, now - link.last_trigger_at))} ago")
    return f"<span style='color:{colour}'>{symbol}</span> <b>{link.kind}</b>  {link.state} · {last}"


class QtLinePanel(_Panel):
    """Recipe (name and number) in large type on the title's row; one line per line link.

    Compact on purpose: the column beside the image is full, and a station without a PLC
    link needs only the one row.
    """

    def __init__(self) -> None:
        super().__init__("Line")
        title = self.box.itemAt(0).widget()
        self.box.removeWidget(title)
        row = QHBoxLayout()
        row.setSpacing(16)
        self.recipe = QLabel("-")
        self.recipe.setStyleSheet("font-size: 26px; font-weight: bold;")
        self.no_link = QLabel("no PLC / MES link")
        self.no_link.setStyleSheet(f"color: {MUTED}; font-size: 18px;")
        row.addWidget(title)
        row.addWidget(self.recipe)
        row.addStretch(1)
        row.addWidget(self.no_link)
        self.box.insertLayout(0, row)
        self.links = QLabel("")
        self.links.setWordWrap(True)
        self.links.setStyleSheet(f"color: {MUTED}; font-size: 18px;")
        self.links.setVisible(False)
        self.box.addWidget(self.links)
        self._shown: tuple | None = None

    def show_line(self, recipe: RecipeShown, links: list[LinkShown], now: float | None = None) -> None:
        texts = [link_text(link, now) for link in links]
        key = (recipe, tuple(texts))
        if key == self._shown:  # refreshed on a timer: touch the labels only on a change
            return
        self._shown = key
        self.recipe.setText(f"recipe {recipe.text()}")
        self.links.setText("<br>".join(texts))
        self.links.setVisible(bool(texts))
        self.no_link.setVisible(not texts)
