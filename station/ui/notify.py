"""One path for telling the person at the station about errors and alarms.

Every screen gets the same :class:`Notifier` through its :class:`~station.ui.context.UiContext`
and calls ``info`` / ``warning`` / ``error`` / ``alarm``; the main window shows the newest
message in its message strip (never a modal box that would stop the line), the log gets
every message, and tests read ``history``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

log = logging.getLogger("station.ui")

LEVELS = ("info", "warning", "error", "alarm")


@dataclass(frozen=True)
class Notice:
    level: str
    text: str
    at: float


class Notifier(QObject):
    """Collects and broadcasts notices; call from the GUI thread."""

    posted = Signal(object)  # Notice

    def __init__(self, parent: QObject | None = None, keep: int = 200) -> None:
        super().__init__(parent)
        self.history: list[Notice] = []
        self._keep = keep

    def post(self, level: str, text: str) -> Notice:
        if level not in LEVELS:
            raise ValueError(f"unknown notice level {level!r}")
        notice = Notice(level, text, time.time())
        self.history.append(notice)
        del self.history[:-self._keep]
        log.log({"info": logging.INFO, "warning": logging.WARNING}.get(level, logging.ERROR), "%s", text)
        self.posted.emit(notice)
        return notice

    def info(self, text: str) -> Notice:
        return self.post("info", text)

    def warning(self, text: str) -> Notice:
        return self.post("warning", text)

    def error(self, text: str, exc: BaseException | None = None) -> Notice:
        return self.post("error", f"{text}: {exc}" if exc is not None else text)

    def alarm(self, text: str) -> Notice:
        """Something the technician must act on (capture out of spec, station faulted)."""
        return self.post("alarm", text)
