"""A text progress bar for long CLI work (training, evaluation), written to stderr.

On a terminal it redraws one line; into a file or pipe it writes a line per 10 % step, so
logs stay readable.
"""
from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """``bar(stage, done, total)`` draws ``stage [#####-----] done/total``."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last: tuple[str, int] | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        total = max(int(total), 1)
        done = min(max(int(done), 0), total)
        filled = round(self.width * done / total)
        line = f"{stage:<20} [{'#' * filled}{'-' * (self.width - filled)}] {done}/{total}"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done == total else ""))
            self.stream.flush()
            return
        step = (stage, 10 * done // total)
        if step != self._last:
            self._last = step
            print(line, file=self.stream, flush=True)
