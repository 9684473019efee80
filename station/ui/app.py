"""Assembling and running the station application (``linestation demo`` / ``run``).

:func:`build_context` wires a running station to the UI's services (task runner,
notifier, line thread, events); :func:`open_runtime_with_progress` opens the station -
calibrating and training on a fresh data dir - behind a progress dialog; :func:`run_station`
does both and runs the window until it is closed.
"""
from __future__ import annotations

import gc
import logging
import signal
import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QProgressDialog

from station.config import LineStationConfig
from station.inspect.states import CycleState
from station.runtime import StationRuntime
from station.ui.context import UiContext, UiEvents
from station.ui.line_runner import LineRunner
from station.ui.notify import Notifier
from station.ui.tasks import TaskControl, TaskRunner
from station.ui.theme import STYLESHEET
from station.users import UserDirectory

log = logging.getLogger(__name__)

# The line thread runs Python between its numpy/OpenCV calls; with the default 5 ms GIL
# switch interval every Qt call the GUI thread makes can wait that long for the GIL again,
# and a paint makes several. 1 ms keeps the GUI thread's waits short (bench/ui.py).
GUI_SWITCH_INTERVAL_S = 0.001


def configure_interpreter() -> None:
    """Process settings the station window needs: call once the station and its window
    are open, before the line starts.

    Besides the switch interval: everything built so far (models, SQLAlchemy, Qt wrappers)
    lives as long as the process, so it is frozen out of the cyclic garbage collector;
    otherwise a full collection walks it all while holding the GIL - 50-100 ms stalls of
    the GUI thread, measured by bench/ui.py.
    """
    sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()


class _CycleStateRelay:
    """Re-emits the cycle's state changes (line thread) as a queued Qt signal."""

    def __init__(self, events: UiEvents) -> None:
        self.events = events

    def __call__(self, old: CycleState, new: CycleState) -> None:
        self.events.cycle_state.emit(old.value, new.value)


def build_context(runtime: StationRuntime) -> UiContext:
    """The services every screen gets, for an opened station (call on the GUI thread)."""
    notifier = Notifier()
    tasks = TaskRunner(on_unhandled_error=notifier.error)
    events = UiEvents()
    line = LineRunner(runtime, rate_hz=runtime.cfg.ui.run_rate_hz,
                      on_result=events.inspected.emit, on_error=events.line_error.emit)
    relay = _CycleStateRelay(events)
    runtime.cycle.add_state_listener(relay)
    ctx = UiContext(runtime, UserDirectory(runtime.store), tasks, notifier, line, events)
    ctx.extras["_state_relay"] = relay
    return ctx


def open_runtime_with_progress(cfg: LineStationConfig, data_dir: Path) -> StationRuntime | None:
    """Open the station on a worker thread behind a progress dialog (first run: calibrate,
    train). None if it failed (the reason was shown) or the person cancelled."""
    dialog = QProgressDialog("Opening the station ...", "Cancel", 0, 0)
    dialog.setWindowTitle("LineStation")
    dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
    dialog.setMinimumWidth(720)
    dialog.setStyleSheet(STYLESHEET)
    dialog.setMinimumDuration(0)
    dialog.show()  # a busy dialog never reaches the auto-show that setValue() would trigger
    tasks = TaskRunner()
    loop = QEventLoop()
    result: dict[str, object] = {}

    def work(control: TaskControl) -> StationRuntime:
        def progress(msg: str) -> None:
            control.check()
            control.progress(msg.strip())
        return StationRuntime.open(cfg, data_dir, progress=progress)

    def done(rt: StationRuntime) -> None:
        result["runtime"] = rt
        loop.quit()

    def failed(exc: BaseException) -> None:
        result["error"] = exc
        loop.quit()

    handle = tasks.run(work, done, failed, lambda msg, _f: dialog.setLabelText(msg), label="open station")
    dialog.canceled.connect(handle.cancel)
    dialog.canceled.connect(loop.quit)
    loop.exec()
    dialog.canceled.disconnect()  # closing a QProgressDialog emits canceled() too
    dialog.close()
    tasks.shutdown(timeout_ms=120_000)  # a cancelled bootstrap stops at its next step
    rt = result.get("runtime")
    if handle.control.cancelled:
        if isinstance(rt, StationRuntime):
            rt.close()
        return None
    if "error" in result:
        QMessageBox.critical(None, "LineStation cannot start", f"The station cannot start:\n\n{result['error']}")
        return None
    return rt  # type: ignore[return-value]


def run_station(cfg: LineStationConfig, data_dir: Path) -> int:
    """Open the station and its window; returns the exit status when the window closes."""
    from station.ui.main_window import QtMainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("LineStation")
    runtime = open_runtime_with_progress(cfg, data_dir)
    if runtime is None:
        return 1
    ctx = build_context(runtime)
    window = QtMainWindow(ctx)
    window.closed.connect(app.quit)
    configure_interpreter()
    # Ctrl-C / SIGTERM close the window cleanly (the line finishes its part first).
    previous = {s: signal.signal(s, lambda *_: window.close()) for s in (signal.SIGINT, signal.SIGTERM)}
    wake = QTimer()  # lets the Python signal handlers run while Qt's loop sleeps
    wake.start(250)
    wake.timeout.connect(lambda: None)
    if cfg.ui.kiosk:
        window.showFullScreen()
    else:
        window.resize(1700, 1000)
        window.show()
    try:
        status = app.exec()
    finally:
        wake.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        window.shutdown()
        window.deleteLater()
        runtime.close()
    return int(status)
