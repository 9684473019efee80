"""The line panel beside the live image: the active recipe and, when the station talks to a
PLC / MES, each line link (Modbus TCP / OPC UA): listening, clients, last trigger.

Read-only, like the other panels; the operator screen refreshes it on a timer from the
adapters in :mod:`station.ui.line_view`.
"""
from __future__ import annotations

import time

from PySide6.QtWidgets import QLabel

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
    """Recipe (name and number) in large type; one line per line link."""

    def __init__(self) -> None:
        super().__init__("Line")
        self.recipe = QLabel("-")
        self.recipe.setObjectName("bigValue")
        self.links = QLabel("")
        self.links.setWordWrap(True)
        self.links.setStyleSheet(f"color: {MUTED}; font-size: 18px;")
        self.box.addWidget(self.recipe)
        self.box.addWidget(self.links)
        self._shown: tuple | None = None

    def show_line(self, recipe: RecipeShown, links: list[LinkShown], now: float | None = None) -> None:
        texts = [link_text(link, now) for link in links]
        key = (recipe, tuple(texts))
        if key == self._shown:  # refreshed on a timer: touch the labels only on a change
            return
        self._shown = key
        self.recipe.setText(f"recipe {recipe.text()}")
        self.links.setText("<br>".join(texts) if texts else "no PLC / MES link configured")
