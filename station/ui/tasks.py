"""Background work for the UI: run a function off the GUI thread, get its result on it.

Like Anki's ``TaskManager``: one helper every screen uses, so no widget starts threads of
its own. Reads run on a small pool; writes (``write=True``) run one at a time on their own
single-thread pool, so database writes from the UI are serialized. Results, errors and
progress are delivered on the GUI thread through queued signals. Errors nobody handles go
to the notifier (one path for errors). Work can be cancelled: the function receives a
:class:`TaskControl` and should look at ``cancelled`` between steps; a cancelled task's
result is dropped.
"""
from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)


class TaskCancelled(Exception):
    """Raised by :meth:`TaskControl.check` when the task was cancelled."""


class TaskControl:
    """Handed to the background function: progress reports and the cancel flag."""

    def __init__(self, relay: _Relay) -> None:
        self._relay = relay
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise TaskCancelled()

    def progress(self, message: str, fraction: float | None = None) -> None:
        """Report progress (any thread); shown on the GUI thread."""
        if not self._cancel.is_set():
            self._relay.progressed.emit(message, -1.0 if fraction is None else float(fraction))


class _Relay(QObject):
    """Lives on the GUI thread; signals emitted from a worker arrive queued on it."""

    finished = Signal(object)
    failed = Signal(object, str)
    progressed = Signal(str, float)


class TaskHandle:
    """A running task: cancel it, or ask whether it is done."""

    def __init__(self, runner: TaskRunner, label: str) -> None:
        self.label = label
        self.done = False
        self._runner = runner
        self.relay = _Relay()
        self.control = TaskControl(self.relay)

    def cancel(self) -> None:
        self.control._cancel.set()


class _Job(QRunnable):
    def __init__(self, fn: Callable[[TaskControl], Any], handle: TaskHandle) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._fn = fn
        self._handle = handle

    def run(self) -> None:  # worker thread
        h = self._handle
        try:
            if h.control.cancelled:
                raise TaskCancelled()
            result = self._fn(h.control)
        except TaskCancelled as exc:
            h.relay.failed.emit(exc, "")
        except BaseException as exc:  # noqa: BLE001 - delivered to the GUI, never lost
            h.relay.failed.emit(exc, traceback.format_exc())
        else:
            h.relay.finished.emit(result)


class TaskRunner(QObject):
    """Runs work off the GUI thread; create one per application window, on the GUI thread."""

    def __init__(self, on_unhandled_error: Callable[[str, BaseException], None] | None = None,
                 parent: QObject | None = None, max_readers: int = 2) -> None:
        super().__init__(parent)
        self._readers = QThreadPool(self)
        self._readers.setMaxThreadCount(max_readers)
        self._writer = QThreadPool(self)
        self._writer.setMaxThreadCount(1)  # one database write at a time
        self._on_unhandled = on_unhandled_error
        self._live: set[TaskHandle] = set()
        self._closed = False

    @property
    def active(self) -> int:
        return len(self._live)

    def run(
        self,
        fn: Callable[[TaskControl], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[str, float | None], None] | None = None,
        *,
        label: str = "task",
        write: bool = False,
    ) -> TaskHandle:
        """Run ``fn(control)`` in the background; callbacks run on the GUI thread.

        ``on_error`` gets the exception; without it the error goes to the notifier.
        A cancelled task calls neither callback.
        """
        if self._closed:
            raise RuntimeError("the task runner is shut down")
        handle = TaskHandle(self, label)
        self._live.add(handle)

        def finished(result: Any) -> None:
            self._finish(handle)
            if not handle.control.cancelled and on_done is not None:
                on_done(result)

        def failed(exc: BaseException, tb: str) -> None:
            self._finish(handle)
            if isinstance(exc, TaskCancelled) or handle.control.cancelled:
                return
            if on_error is not None:
                on_error(exc)
            else:
                log.error("%s failed: %s\n%s", label, exc, tb)
                if self._on_unhandled is not None:
                    self._on_unhandled(f"{label} failed", exc)

        def progressed(message: str, fraction: float) -> None:
            if on_progress is not None and not handle.control.cancelled:
                on_progress(message, None if fraction < 0 else fraction)

        handle.relay.finished.connect(finished)
        handle.relay.failed.connect(failed)
        handle.relay.progressed.connect(progressed)
        (self._writer if write else self._readers).start(_Job(fn, handle))
        return handle

    @Slot()
    def _finish(self, handle: TaskHandle) -> None:
        handle.done = True
        self._live.discard(handle)

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Cancel everything and wait for the workers; True when all stopped in time."""
        self._closed = True
        for h in list(self._live):
            h.cancel()
        ok = self._readers.waitForDone(timeout_ms) and self._writer.waitForDone(timeout_ms)
        for h in list(self._live):
            for sig in (h.relay.finished, h.relay.failed, h.relay.progressed):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError):
                    pass
        self._live.clear()
        return ok
