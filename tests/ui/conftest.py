"""UI tests: PySide6 offscreen, a real station on the simulated camera per test.

Calibration and the first model are made once per session in a template data dir (as in
tests/inspect/conftest.py); each test copies them and has its own database. The window
fixture fails the test if it leaves threads, running timers or widgets behind.
"""
from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

import gc  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

from station.config import LineStationConfig, parse_config  # noqa: E402
from station.runtime import StationRuntime  # noqa: E402

UI_SIM = {
    "schema_version": 1,
    "station": {"plant": "p1", "line": "l1", "station": "s1", "lot": "LOT-U"},
    "camera": {"type": "sim", "width": 640, "height": 512, "seed": 3, "defect_rate": 0.0, "timeout_s": 0.5},
    "detector": {"type": "variation", "train_images": 24},
    "recipe": {"name": "ui"},
    "calibration": {"calibration_images": 12},
}
PIN = "4711"


def ui_config(camera: dict | None = None, recipe: dict | None = None, config: dict | None = None,
              **ui: object) -> LineStationConfig:
    data = yaml.safe_load(yaml.safe_dump(UI_SIM))
    data["camera"].update(camera or {})
    data["recipe"].update(recipe or {})
    data.update(config or {})  # further top-level sections (line, recipes)
    if ui:
        data["ui"] = dict(ui)
    return parse_config(yaml.safe_dump(data), "ui-test.yaml")


@pytest.fixture(scope="session")
def ui_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ui-template")
    StationRuntime.open(ui_config(), root, arm=False).close()
    return root


@pytest.fixture(scope="session")
def ui_template_16(tmp_path_factory) -> Path:
    """The same, calibrated and trained on a 16-bit (Mono16) simulated camera."""
    root = tmp_path_factory.mktemp("ui-template-16")
    StationRuntime.open(ui_config(MONO16), root, arm=False).close()
    return root


MONO16 = {"pixel_format": "Mono16"}


def xray_camera(folder: Path) -> dict:
    """The simulated X-ray detector (station/capture/sim_xray.py) writing 16-bit TIFFs into ``folder``."""
    return {"type": "xray_folder", "folder": str(folder), "serial": "SIMXRAY-UI", "settle_s": 0.05,
            "timeout_s": 5, "sim": {"seed": 3, "rate_hz": 20, "width": 256, "height": 192, "defect_rate": 0.0}}


@pytest.fixture(scope="session")
def ui_template_xray(tmp_path_factory) -> Path:
    """Calibrated and trained on the simulated X-ray detector (recipe kind xray)."""
    root = tmp_path_factory.mktemp("ui-template-xray")
    StationRuntime.open(ui_config(config={"camera": xray_camera(root / "inbox")}), root, arm=False).close()
    return root


def copy_template(template: Path, data_dir: Path) -> Path:
    for part in ("calibration", "models"):
        shutil.copytree(template / part, data_dir / part)
    return data_dir


def _running_timers() -> list:
    from PySide6.QtCore import QTimer
    from shiboken6 import isValid

    with warnings.catch_warnings():  # isinstance() on lazy modules of other libraries warns
        warnings.simplefilter("ignore")
        return [t for t in gc.get_objects() if isinstance(t, QTimer) and isValid(t) and t.isActive()]


@pytest.fixture
def station_window(qtbot, tmp_path, ui_template) -> Iterator[Callable[..., object]]:
    """``open(camera={...}, recipe={...}, template=dir, config={...}, **ui)`` -> (window, ctx):
    a real station and its window (``template``: calibration and models to start from;
    ``config``: more top-level sections, e.g. ``line`` and ``recipes``).

    After the test: the window is closed and the station closed, and the test fails on
    leaked threads, running timers or widgets.
    """
    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    from station.ui.app import build_context
    from station.ui.main_window import QtMainWindow
    from station.ui.pages import PAGES

    app = QApplication.instance()
    threads_before = {t.ident for t in threading.enumerate()}
    widgets_before = len(app.allWidgets())
    timers_before = len(_running_timers())
    opened: list[tuple[object, object]] = []

    def open_(camera: dict | None = None, recipe: dict | None = None, template: Path | None = None,
              config: dict | None = None, **ui: object):
        data_dir = copy_template(template or ui_template, tmp_path / f"data{len(opened)}")
        rt = StationRuntime.open(ui_config(camera, recipe, config, **ui), data_dir)
        ctx = build_context(rt)
        # only this part's pages: part B's pages have tests of their own
        win = QtMainWindow(ctx, [p for p in PAGES if p.key in ("operator", "health", "accounts")])
        win.resize(1600, 1000)
        win.show()
        qtbot.waitExposed(win)
        opened.append((win, rt))
        return win, ctx

    yield open_
    for win, rt in opened:
        win.close()
        win.deleteLater()
        rt.close()
    for _ in range(3):
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        app.processEvents()
    gc.collect()
    leaked_threads = [t.name for t in threading.enumerate()
                      if t.ident not in threads_before and t.is_alive()]
    assert leaked_threads == [], f"threads left running: {leaked_threads}"
    timers = _running_timers()
    assert len(timers) <= timers_before, f"timers left running: {timers}"
    assert len(app.allWidgets()) <= widgets_before, (
        f"widgets leaked: {len(app.allWidgets()) - widgets_before}")


def make_user(ctx, username: str, role: str, pin: str = PIN) -> None:
    """An account of ``role`` (creating the first admin if the station has none)."""
    users = ctx.users
    if users.needs_first_admin():
        users.create_first_admin("admin", PIN)
    admin = users.sign_in("admin", PIN)
    users.create_user(username, pin, role, actor=admin)
    users.sign_out(admin)


def sign_in(qtbot, win, username: str, pin: str = PIN) -> None:
    from PySide6.QtCore import Qt

    win.show_entry_screen()
    screen = win.sign_in_screen
    screen.username.setText(username)
    screen.secret.setText(pin)
    qtbot.mouseClick(screen.sign_in_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.ctx.session is not None, timeout=5000)


def audit_actions(store, action_prefix: str = "user.") -> list[tuple[str, str, str]]:
    return [(e["action"], e["actor"], e["subject"]) for e in store.audit_entries(limit=1000)
            if e["action"].startswith(action_prefix)]
