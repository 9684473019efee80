"""The UI's background task runner: results on the GUI thread, errors to the notifier,
cancel, progress, and database writes one at a time."""
from __future__ import annotations

import threading
import time

import pytest

from station.ui.notify import Notifier
from station.ui.tasks import TaskRunner


@pytest.fixture
def runner(qtbot):
    notifier = Notifier()
    tasks = TaskRunner(on_unhandled_error=notifier.error)
    yield tasks, notifier
    assert tasks.shutdown(10_000)


def test_results_and_progress_arrive_on_the_gui_thread(qtbot, runner):
    tasks, _ = runner
    gui = threading.get_ident()
    seen: dict = {}

    def work(control):
        seen["worker"] = threading.get_ident()
        control.progress("half", 0.5)
        return 42

    tasks.run(work, on_done=lambda r: seen.update(result=r, done_on=threading.get_ident()),
              on_progress=lambda m, f: seen.update(progress=(m, f), progress_on=threading.get_ident()))
    qtbot.waitUntil(lambda: "result" in seen, timeout=5000)
    assert seen["result"] == 42 and seen["worker"] != gui
    assert seen["done_on"] == gui and seen["progress"] == ("half", 0.5) and seen["progress_on"] == gui
    assert tasks.active == 0


def test_unhandled_errors_reach_the_notifier(qtbot, runner):
    tasks, notifier = runner

    def boom(_c):
        raise OSError("disk unplugged")

    tasks.run(boom, label="export")
    qtbot.waitUntil(lambda: len(notifier.history) > 0, timeout=5000)
    assert notifier.history[-1].level == "error" and "export failed: disk unplugged" in notifier.history[-1].text


def test_a_cancelled_task_delivers_nothing(qtbot, runner):
    tasks, _ = runner
    started, got = threading.Event(), []

    def slow(control):
        started.set()
        for _ in range(200):
            control.check()
            time.sleep(0.01)
        return "finished"

    h = tasks.run(slow, on_done=got.append, on_error=got.append)
    assert started.wait(5)
    h.cancel()
    qtbot.waitUntil(lambda: h.done, timeout=5000)
    qtbot.wait(50)
    assert got == []


def test_writes_run_one_at_a_time(qtbot, runner):
    tasks, _ = runner
    lock, overlaps, done = threading.Lock(), [], []

    def write(_c):
        if not lock.acquire(blocking=False):
            overlaps.append(1)
            return
        try:
            time.sleep(0.02)
        finally:
            lock.release()

    for _ in range(6):
        tasks.run(write, on_done=done.append, write=True)
    qtbot.waitUntil(lambda: len(done) == 6, timeout=10_000)
    assert overlaps == []
