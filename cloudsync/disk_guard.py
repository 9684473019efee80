"""The disk quota policy: stop accepting parts before the disk is full, never delete data.

Greengrass stream manager drops the oldest data when its store is full. LineStation does
not: nothing here (or anywhere in the sync service) deletes a record, synced or not, and
an unsynced defect or review record in particular stays until it is delivered. Instead,
when the data directory's free space falls below ``sync.min_free_disk_mb``, the guard
*suspends* the inspection cycle (an interlock: the part in progress is finished and
recorded, then the cycle holds) with an alarm that says why and how much still waits for
sync. It resumes the cycle by itself once there is room again (the network came back and
an operator moved old synced data off, or a disk was added).

:func:`check_disk` is the check alone (for the station screen, ``linestation`` commands).
"""
from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MB = 1 << 20
ALARM_PREFIX = "disk nearly full"
SUSPEND_SOURCE = "disk"  # the guard's key in the cycle's suspensions


@dataclass(frozen=True)
class DiskStatus:
    ok: bool
    free_bytes: int
    min_free_bytes: int
    unsynced_rows: int | None  # outbox rows not yet delivered (None when not counted)
    message: str


def _unsynced(data_dir: Path) -> int | None:
    db = data_dir / "station.db"
    if not db.exists():
        return None
    try:  # read-only, short: this runs while the disk is in trouble
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM outbox WHERE status != 'done'").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def check_disk(data_dir: Path, min_free_bytes: int,
               usage: Callable[[Path], Any] = shutil.disk_usage, count_unsynced: bool = True) -> DiskStatus:
    """Is there at least ``min_free_bytes`` free where the station keeps its data?"""
    data_dir = Path(data_dir)
    free = int(usage(data_dir).free)
    if free >= min_free_bytes:
        return DiskStatus(True, free, min_free_bytes, None, f"{free / MB:.0f} MB free")
    unsynced = _unsynced(data_dir) if count_unsynced else None
    waiting = f"; {unsynced} outbox rows wait for sync and are kept" if unsynced is not None else ""
    msg = (f"{ALARM_PREFIX}: {free / MB:.0f} MB free in {data_dir}, the station needs "
           f"{min_free_bytes / MB:.0f} MB to accept parts{waiting}. Nothing is deleted: restore the "
           f"network so sync can deliver, or free space, and the line resumes by itself.")
    return DiskStatus(False, free, min_free_bytes, unsynced, msg)


class DiskGuard:
    """Suspends an inspection cycle while the disk is nearly full; resumes it after.

    Checks after every recorded inspection (at most every ``min_check_interval_s``), when
    the cycle is armed, and every ``interval_s`` on its own thread (to resume).
    """

    def __init__(self, data_dir: Path, min_free_bytes: int, *, interval_s: float = 2.0,
                 min_check_interval_s: float = 1.0, usage: Callable[[Path], Any] = shutil.disk_usage) -> None:
        self.data_dir = Path(data_dir)
        self.min_free_bytes = int(min_free_bytes)
        self.interval_s = interval_s
        self.min_check_interval_s = min_check_interval_s
        self.usage = usage
        self.alarm: str | None = None  # the current alarm text (None: all well)
        self._cycle: Any = None
        self._last_check = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> DiskStatus:
        return check_disk(self.data_dir, self.min_free_bytes, self.usage)

    def attach(self, cycle: Any) -> DiskGuard:
        """Guard ``cycle`` (an :class:`~station.inspect.cycle.InspectionCycle`) from now on."""
        self._cycle = cycle
        cycle.add_inspection_listener(self._after_inspection)
        cycle.add_state_listener(self._on_state)
        self.evaluate()
        self._thread = threading.Thread(target=self._loop, name="disk-guard", daemon=True)
        self._thread.start()
        return self

    def _after_inspection(self, _outcome: Any) -> None:
        if time.monotonic() - self._last_check >= self.min_check_interval_s:
            self.evaluate()

    def _on_state(self, _old: Any, new: Any) -> None:
        if getattr(new, "value", new) == "armed" and self.alarm is not None:
            self.evaluate()  # belt and braces: the disk may have filled between two checks

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.evaluate()
            except Exception:
                log.exception("disk guard check failed")

    def evaluate(self) -> DiskStatus:
        with self._lock:
            self._last_check = time.monotonic()
            st = self.check()
            cycle = self._cycle
            if not st.ok:
                if self.alarm is None:
                    log.error("%s", st.message)
                self.alarm = st.message
                if cycle is not None and cycle.suspensions.get(SUSPEND_SOURCE) != st.message:
                    cycle.suspend(st.message, source=SUSPEND_SOURCE)
            elif self.alarm is not None:
                log.warning("disk space is back (%s): resuming", st.message)
                self.alarm = None
                if cycle is not None:
                    cycle.resume(source=SUSPEND_SOURCE)  # only our own suspension; an interlock stays
            return st

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._cycle is not None:
            for remove, fn in ((self._cycle.remove_inspection_listener, self._after_inspection),
                               (self._cycle.remove_state_listener, self._on_state)):
                try:
                    remove(fn)
                except ValueError:
                    pass
            self._cycle = None
