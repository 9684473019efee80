"""A plain-text progress line on stderr: done/total, rate, ETA, errors.

On a terminal it redraws one line (``\\r``); in a log file (AWS Batch / CloudWatch, CI) it
prints a new line every ``log_every_s`` seconds, so the log stays readable.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:d}:{s % 60:02d}"


class ProgressLine:
    def __init__(self, total: int, *, stream: TextIO | None = None, label: str = "batch",
                 tty_every_s: float = 0.2, log_every_s: float = 5.0, already: int = 0) -> None:
        self.total, self.label, self.already = total, label, already
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = tty_every_s if self.tty else log_every_s
        self.done = self.errors = 0
        self.t0 = time.perf_counter()
        self._last = 0.0

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.done / dt if dt > 0 else 0.0

    def text(self) -> str:
        n = self.already + self.done
        pct = 100.0 * n / self.total if self.total else 100.0
        rate = self.rate
        eta = (self.total - n) / rate if rate > 0 else float("nan")
        err = f", {self.errors} error(s)" if self.errors else ""
        return f"{self.label}: {n}/{self.total} ({pct:.1f}%) {rate:.1f} img/s ETA {_clock(eta)}{err}"

    def update(self, error: bool = False) -> None:
        self.done += 1
        self.errors += int(error)
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            self._emit()

    def _emit(self, end: str = "") -> None:
        if self.tty:
            self.stream.write("\r" + self.text().ljust(78) + end)
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        self._emit("\n" if self.tty else "")
