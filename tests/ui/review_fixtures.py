"""Fixtures for part B's pages (review, charts, calibration wizard, models panel).

A real station on the simulated camera in a temp dir (calibrated and trained once per
session, then copied), real users signed in with argon2 hashes, the real task runner,
notifier and line runner. Every context built here is shut down after the test, and the
test fails if it left threads behind.
"""
from __future__ import annotations

import gc
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
import yaml  # noqa: E402

from station.config import LineStationConfig, parse_config  # noqa: E402
from station.runtime import StationRuntime  # noqa: E402

SIM = {
    "schema_version": 1,
    "station": {"plant": "p1", "line": "l1", "station": "s1", "lot": "LOT-R"},
    "camera": {"type": "sim", "width": 640, "height": 512, "seed": 5, "defect_rate": 0.0, "timeout_s": 0.5},
    "detector": {"type": "variation", "train_images": 24},
    "recipe": {"name": "rv"},
    "calibration": {"calibration_images": 12},
}
PASSWORD = "pin-4321"


def sim_config(camera: dict | None = None, **sections: object) -> LineStationConfig:
    data = yaml.safe_load(yaml.safe_dump(SIM))
    data["camera"].update(camera or {})
    data.update(sections)
    return parse_config(yaml.safe_dump(data), "part-b-test.yaml")


@pytest.fixture(scope="session")
def partb_template(tmp_path_factory) -> Path:
    """A data dir whose calibration profile and first model were made once for the session."""
    root = tmp_path_factory.mktemp("partb-template")
    StationRuntime.open(sim_config(), root, arm=False).close()
    return root


@pytest.fixture
def partb_station(tmp_path, partb_template, partb_ctx) -> Iterator[Callable[..., StationRuntime]]:
    """``make(camera={...}, arm=False, **sections)``: a station with its own database.

    The stations are closed by ``partb_ctx`` after its contexts and pages, before it checks
    for leaked threads (a station runs threads of its own: disk guard, shadow model).
    """
    def make(camera: dict | None = None, arm: bool = False, **sections: object) -> StationRuntime:
        data_dir = tmp_path / f"data{len(partb_ctx.runtimes)}"
        for part in ("calibration", "models"):
            shutil.copytree(partb_template / part, data_dir / part)
        rt = StationRuntime.open(sim_config(camera, **sections), data_dir, arm=arm)
        partb_ctx.runtimes.append(rt)
        return rt

    yield make


def inspect_parts(rt: StationRuntime, count: int) -> list:
    """Run ``count`` real inspections (arms the cycle for them, disarms after)."""
    rt.cycle.arm()
    try:
        return list(rt.run(count=count))
    finally:
        rt.cycle.disarm()


def _running_timers() -> list:
    from PySide6.QtCore import QTimer
    from shiboken6 import isValid

    with warnings.catch_warnings():  # isinstance() on some torch objects warns about deprecated aliases
        warnings.simplefilter("ignore", FutureWarning)
        return [t for t in gc.get_objects() if isinstance(t, QTimer) and isValid(t) and t.isActive()]


class PartB:
    """``partb_ctx(runtime, role)`` builds a context; ``partb_ctx.open(Page, ctx)`` shows a page."""

    def __init__(self, qtbot) -> None:
        self.qtbot = qtbot
        self.contexts: list = []
        self.pages: list = []
        self.runtimes: list[StationRuntime] = []

    def __call__(self, runtime: StationRuntime, role: str = "supervisor"):
        from station.ui.context import UiContext, UiEvents
        from station.ui.line_runner import LineRunner
        from station.ui.notify import Notifier
        from station.ui.tasks import TaskRunner
        from station.users import UserDirectory

        users = UserDirectory(runtime.store)
        if users.needs_first_admin():
            users.create_first_admin("admin1", PASSWORD)
        admin = users.sign_in("admin1", PASSWORD)
        if role == "admin":
            session = admin
        else:
            name = f"{role[:4]}{len(self.contexts)}x"
            users.create_user(name, PASSWORD, role, actor=admin)
            session = users.sign_in(name, PASSWORD)
        notifier = Notifier()
        tasks = TaskRunner(on_unhandled_error=lambda text, exc: notifier.error(text, exc))
        line = LineRunner(runtime, rate_hz=10.0, thumbnails=False)
        ctx = UiContext(runtime=runtime, users=users, tasks=tasks, notifier=notifier, line=line,
                        events=UiEvents(), session=session)
        self.contexts.append(ctx)
        return ctx

    def open(self, page_cls, ctx, size=(1400, 900)):
        page = page_cls(ctx)
        self.pages.append(page)
        page.resize(*size)
        page.show()
        self.qtbot.waitExposed(page)
        return page

    def close_all(self) -> None:
        from PySide6.QtCore import QCoreApplication, QEvent
        from PySide6.QtWidgets import QApplication

        for page in self.pages:
            closer = getattr(page, "close_page", None)
            if closer is not None:
                closer()
            page.close()
            page.deleteLater()
        for ctx in self.contexts:
            ctx.line.close()
            assert ctx.tasks.shutdown(20_000), "background tasks did not stop"
            ctx.tasks.deleteLater()
            ctx.notifier.deleteLater()
            ctx.events.deleteLater()
        for rt in self.runtimes:
            rt.close()
        app = QApplication.instance()
        for _ in range(3):
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            app.processEvents()
        gc.collect()


@pytest.fixture
def partb_ctx(qtbot) -> Iterator[PartB]:
    """Contexts with a real user of a role signed in, and pages shown on them; after the
    test everything is closed, and leaked threads, running timers or widgets fail it."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    threads_before = {t.ident for t in threading.enumerate()}
    widgets_before = len(app.allWidgets())
    timers_before = len(_running_timers())
    partb = PartB(qtbot)
    yield partb
    partb.close_all()
    leaked = [t.name for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()
              and not t.name.startswith("Dummy")]  # Qt's pooled workers, seen by Python once used
    assert leaked == [], f"threads left running: {leaked}"
    timers = _running_timers()
    assert len(timers) <= timers_before, f"timers left running: {timers}"
    extra = len(app.allWidgets()) - widgets_before
    assert extra <= 0, f"widgets leaked: {extra}: {sorted({type(w).__name__ for w in app.allWidgets()})}"


def wait_idle(qtbot, ctx, timeout: int = 20_000) -> None:
    """Wait until the context's task runner has nothing left to deliver."""
    qtbot.waitUntil(lambda: ctx.tasks.active == 0, timeout=timeout)
