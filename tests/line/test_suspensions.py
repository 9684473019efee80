"""Suspensions keyed by source: the interlock and the disk guard hold the cycle independently."""
from __future__ import annotations

import shutil
import threading
import time

from cloudsync.disk_guard import DiskGuard
from station.inspect.states import CycleState


def test_each_source_holds_the_cycle_until_it_clears_its_own_suspension(make_line_station):
    rt = make_line_station(modbus=False, opcua=False)
    cycle = rt.cycle
    cycle.suspend("door open", source="interlock")
    cycle.suspend("disk nearly full", source="disk")
    assert cycle.state is CycleState.SUSPENDED
    assert cycle.suspensions == {"interlock": "door open", "disk": "disk nearly full"}
    assert cycle.suspend_reason == "door open; disk nearly full"
    cycle.resume(source="interlock")
    assert cycle.state is CycleState.SUSPENDED and cycle.suspensions == {"disk": "disk nearly full"}
    cycle.disarm()
    cycle.arm()  # arming does not clear a suspension: the disk is still full
    assert cycle.state is CycleState.SUSPENDED
    cycle.resume(source="disk")
    assert cycle.state is CycleState.ARMED and cycle.suspensions == {} and cycle.suspend_reason is None


def test_the_disk_guard_resuming_leaves_an_open_interlock_in_place(make_line_station, tmp_path):
    rt = make_line_station(modbus=False, opcua=False)
    free = shutil.disk_usage(rt.data_dir).free
    guard = DiskGuard(rt.data_dir, free + (4 << 30), interval_s=3600).attach(rt.cycle)
    try:
        assert "disk" in rt.cycle.suspensions and guard.alarm
        rt.cycle.suspend("door open", source="interlock")
        guard.min_free_bytes = 0  # space is back
        guard.evaluate()
        assert guard.alarm is None and rt.cycle.suspensions == {"interlock": "door open"}
        assert rt.cycle.state is CycleState.SUSPENDED
        rt.cycle.resume(source="interlock")
        assert rt.cycle.state is CycleState.ARMED
    finally:
        guard.close()





def test_concurrent_interlock_writes_ending_closed_leave_the_cycle_running(make_line_station):
    """Door open, then door closed at once from another client while the first write is still
    on its way into the cycle (a busy box); the door ends closed: the cycle must not stay held."""
    rt = make_line_station(modbus=True)
    hs = rt.line.handshake
    real_suspend = rt.cycle.suspend

    def slow_suspend(*args, **kwargs):  # the real suspend, reached late
        time.sleep(0.05)
        real_suspend(*args, **kwargs)

    rt.cycle.suspend = slow_suspend
    stuck = []
    for round_ in range(8):
        threads = [threading.Thread(target=hs.set_interlock, args=(a, "modbus")) for a in (True, False)]
        threads[0].start()
        time.sleep(0.01)  # "open" has been taken, its suspend is on its way
        threads[1].start()
        for t in threads:
            t.join(timeout=30)
        hs.set_interlock(False, "modbus")  # the last word: the door is closed
        if "interlock" in rt.cycle.suspensions:
            stuck.append(round_)
            rt.cycle.resume(source="interlock")
    assert stuck == [] and rt.cycle.state is CycleState.ARMED and hs.status().interlock is False
