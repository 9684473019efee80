"""The first run's calibration and training behind a progress dialog, and its Cancel."""
from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QProgressDialog, QPushButton

from conftest import ui_config
from station.ui.app import open_runtime_with_progress


def _dialog() -> QProgressDialog | None:
    return next((w for w in QApplication.topLevelWidgets()
                 if isinstance(w, QProgressDialog) and w.isVisible()), None)


def test_first_run_shows_its_progress_and_opens_the_station(qtbot, tmp_path):
    labels: list[str] = []
    timer = QTimer()
    timer.timeout.connect(lambda: labels.append(_dialog().labelText()) if _dialog() else None)
    timer.start(20)
    rt = open_runtime_with_progress(ui_config(), tmp_path / "fresh")
    timer.stop()
    try:
        assert rt is not None and rt.detector.model_id
        assert any(t.startswith("calibrating") for t in labels)
        assert any(t.startswith("training the variation model") for t in labels)
    finally:
        rt.close()
    assert _dialog() is None


def test_cancel_during_the_first_run_opens_nothing(qtbot, tmp_path):
    def cancel_when_training() -> None:
        d = _dialog()
        if d is not None:  # the person presses Cancel as soon as the dialog is up
            button = next(b for b in d.findChildren(QPushButton) if b.text() == "Cancel")
            button.click()

    timer = QTimer()
    timer.timeout.connect(cancel_when_training)
    timer.start(10)
    rt = open_runtime_with_progress(ui_config(), tmp_path / "fresh")
    timer.stop()
    assert rt is None
    assert not list((tmp_path / "fresh").glob("models/*/model*")), "no model after a cancelled first run"
    from station.store.station_store import StationStore

    StationStore(tmp_path / "fresh").close()  # the data dir was released
