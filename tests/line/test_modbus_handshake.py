"""The PLC handshake over Modbus TCP: a real pymodbus client against the station's server.

Every test runs the real station (sim camera, calibration, variation model, SQLite file)
and a PLC client on 127.0.0.1 that polls the way a PLC does (tests/line/plc.py).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
from plc import SimPlc

from station.line.registers import ResultCode

CODE_OF_VERDICT = {"OK": ResultCode.OK, "NotOK": ResultCode.NOT_OK, "NotDecidable": ResultCode.NOT_DECIDABLE}


def _rows(rt, sql, *args):
    con = sqlite3.connect(rt.data_dir / "station.db")
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _row(rt, part_id):
    (row,) = _rows(rt, "select id, part_id, lot, recipe, verdict, record from inspections where part_id=?", part_id)
    return {"id": row[0], "part_id": row[1], "lot": row[2], "recipe": row[3], "verdict": row[4],
            "record": json.loads(row[5])}


@pytest.fixture
def plc_station(make_line_station):
    plcs = []

    def make(**kw):
        rt = make_line_station(**kw)
        plc = SimPlc(rt.modbus_port)
        plcs.append(plc)
        return rt, plc

    yield make
    for p in plcs:
        p.close()


def test_trigger_result_acknowledge_matches_the_record_and_the_ground_truth(plc_station):
    rt, plc = plc_station(defect_rate=0.5, seed=5)
    assert plc.bit("trigger_ready") and not plc.bit("result_ready")
    codes = []
    for i in range(12):
        res = plc.inspect(part_id=f"PLC-{i:04d}", lot="LOT-77")
        row = _row(rt, f"PLC-{i:04d}")
        # the part context from the registers is in the record, and the PLC got its verdict
        assert (row["lot"], row["recipe"]) == ("LOT-77", "a")
        assert res.part_id == f"PLC-{i:04d}" and res.code == CODE_OF_VERDICT[row["verdict"]]
        assert res.result_seq == i + 1
        defect = row["record"]["meta"]["sim"]["defect"]
        assert res.code in ((ResultCode.NOT_OK, ResultCode.NOT_DECIDABLE) if defect
                            else (ResultCode.OK, ResultCode.NOT_DECIDABLE)), (defect, row["record"]["reason"])
        codes.append(res.code)
    assert ResultCode.OK in codes and ResultCode.NOT_OK in codes
    ir = plc.inputs()
    assert ir["state"] == 1 and ir["active_recipe"] == 1 and ir["protocol_errors"] == 0
    assert rt.store.count() == 12


def test_a_line_without_part_ids_gets_numbered_parts_of_the_configured_lot(plc_station):
    rt, plc = plc_station()
    first, second = plc.inspect(), plc.inspect()
    assert (first.part_id, second.part_id) == ("LOT-T-000001", "LOT-T-000002")
    assert _row(rt, "LOT-T-000002")["lot"] == "LOT-T"


def test_a_trigger_before_the_acknowledge_is_ignored_and_counted(plc_station):
    rt, plc = plc_station()
    plc.write_part("P-1")
    plc.coil("trigger", True)
    plc.wait_bit("result_ready", True)
    plc.coil("trigger", False)
    plc.coil("trigger", True)  # the PLC did not acknowledge: a protocol error, not a second part
    ir = plc.inputs()
    assert ir["protocol_errors"] == 1 and ir["result_seq"] == 1 and ir["result_part_id"] == "P-1"
    assert rt.store.count() == 1
    plc.coil("acknowledge", True)
    plc.wait_bit("result_ready", False)
    plc.coil("trigger", False)  # a new part needs a new rising edge
    plc.coil("acknowledge", False)
    assert plc.inspect("P-2").part_id == "P-2" and rt.store.count() == 2


def _count_grabs(rt) -> list:
    grabs: list = []
    real_grab = rt.camera.grab
    rt.camera.grab = lambda timeout_s=1.0: grabs.append(1) or real_grab(timeout_s)
    return grabs


def test_unreadable_part_registers_answer_bad_part_data_and_record_nothing(plc_station):
    rt, plc = plc_station()
    grabs = _count_grabs(rt)
    plc.write_raw("part_id", [0x4142, 0x0107])  # "AB" then a control character
    plc.coil("trigger", True)
    plc.wait_bit("result_ready", True)
    assert plc.inputs()["result_code"] == ResultCode.BAD_PART_DATA
    assert rt.store.count() == 0 and grabs == []
    assert "not printable ASCII" in rt.line.handshake.status().last_result.message
    plc.coil("trigger", False)
    plc.coil("acknowledge", True)
    plc.coil("acknowledge", False)
    assert plc.inspect("GOOD-1").code in (ResultCode.OK, ResultCode.NOT_DECIDABLE)
    assert rt.store.count() == 1


def test_recipe_switch_from_the_plc_is_audited_and_refused_when_unknown_or_uncalibrated(plc_station):
    rt, plc = plc_station()
    assert plc.select_recipe(9) == ResultCode.UNKNOWN_RECIPE
    assert plc.select_recipe(3) == ResultCode.NOT_CALIBRATED  # recipe c has no calibration profile
    assert plc.inputs()["active_recipe"] == 1
    # a part that needs recipe 2 while 1 is active is not inspected with the wrong recipe
    assert plc.inspect("NEEDS-B", recipe=2).code == ResultCode.RECIPE_MISMATCH
    assert rt.store.count() == 0
    assert plc.select_recipe(2) == 0
    assert plc.inputs()["active_recipe"] == 2
    res = plc.inspect("B-1", recipe=2)
    row = _row(rt, "B-1")
    assert row["recipe"] == "b" and "/b@v" in row["record"]["calibration_version"]
    assert res.code == CODE_OF_VERDICT[row["verdict"]]
    entries = [e for e in rt.store.audit_entries(limit=50) if e["action"].startswith("recipe.")]
    assert [(e["action"], e["actor"], e["payload"]["code"]) for e in entries] == [
        ("recipe.refused", "plc:modbus", ResultCode.UNKNOWN_RECIPE),
        ("recipe.refused", "plc:modbus", ResultCode.NOT_CALIBRATED),
        ("recipe.selected", "plc:modbus", 0)]
    assert rt.store.audit_verify().ok


def test_recipe_switch_is_refused_while_an_inspection_runs(plc_station):
    rt, plc = plc_station()
    slow = _SlowDetector(rt.cycle.detector, delay_s=0.6)
    rt.cycle.detector = slow
    plc.write_part("SLOW-1")
    plc.coil("trigger", True)
    slow.entered.wait(5)
    assert plc.select_recipe(2) == ResultCode.NOT_READY
    plc.wait_bit("result_ready", True)
    assert _row(rt, "SLOW-1")["recipe"] == "a" and plc.inputs()["active_recipe"] == 1


class _SlowDetector:
    """The real model, made slow for real (a sleep before it runs): a loaded CPU, a cold cache."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.entered = threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def detect(self, image, **kw):
        self.entered.set()
        time.sleep(self.delay_s)
        return self.inner.detect(image, **kw)


def test_a_slow_inspection_answers_timeout_in_time_and_keeps_the_late_record(plc_station):
    rt, plc = plc_station(timeout_ms=250)
    rt.cycle.detector = _SlowDetector(rt.cycle.detector, delay_s=0.8)
    plc.write_part("LATE-1")
    plc.coil("trigger", True)
    plc.wait_bit("result_ready", True)
    ir = plc.inputs()
    # the answer came while the inspection was still running: nothing recorded yet, busy
    assert (ir["result_code"], ir["result_part_id"]) == (ResultCode.TIMEOUT, "LATE-1")
    assert plc.bit("busy") and rt.store.count() == 0
    plc.coil("trigger", False)
    plc.coil("acknowledge", True)
    plc.coil("acknowledge", False)
    plc.wait_bit("trigger_ready", True)  # back once the slow inspection has been recorded
    row = _row(rt, "LATE-1")  # the record is kept ...
    (late,) = [e for e in rt.store.audit_entries(subject=row["id"]) if e["action"] == "line.result_not_reported"]
    assert late["payload"]["reported_code"] == ResultCode.TIMEOUT  # ... and marked as not reported
    assert late["payload"]["elapsed_ms"] >= 800
    rt.cycle.detector = rt.cycle.detector.inner
    assert plc.inspect("ON-TIME-1").code != ResultCode.TIMEOUT


def test_interlock_mid_run_suspends_nothing_is_captured_and_clearing_resumes(plc_station):
    rt, plc = plc_station()
    grabs = _count_grabs(rt)
    for i in range(3):
        assert plc.inspect(f"RUN-{i}").code in (ResultCode.OK, ResultCode.NOT_DECIDABLE)
    plc.coil("interlock", True)  # door open
    assert plc.bit("suspended") and plc.bit("interlock_active") and not plc.bit("trigger_ready")
    assert "interlock" in rt.cycle.suspensions and rt.cycle.state.value == "suspended"
    before = (len(grabs), rt.store.count())
    # a PLC that triggers anyway gets an answer at once, and nothing is captured
    plc.write_part("WHILE-OPEN")
    plc.coil("trigger", True)
    plc.wait_bit("result_ready", True, timeout_s=1.0)
    assert plc.inputs()["result_code"] == ResultCode.SUSPENDED
    plc.coil("trigger", False)
    plc.coil("acknowledge", True)
    plc.coil("acknowledge", False)
    time.sleep(0.3)
    assert (len(grabs), rt.store.count()) == before == (3, 3)
    # a second reason (disk nearly full) holds the cycle after the door closes
    rt.cycle.suspend("disk nearly full (test)", source="disk")
    plc.coil("interlock", False)
    time.sleep(0.2)
    assert rt.cycle.suspensions == {"disk": "disk nearly full (test)"} and not plc.bit("trigger_ready")
    rt.cycle.resume(source="disk")
    plc.wait_bit("trigger_ready", True, timeout_s=2.0)
    for i in range(2):
        assert plc.inspect(f"AFTER-{i}").code in (ResultCode.OK, ResultCode.NOT_DECIDABLE)
    assert (len(grabs), rt.store.count()) == (5, 5)
    actions = [(e["action"], e["subject"]) for e in rt.store.audit_entries(limit=50) if e["action"] == "line.interlock"]
    assert actions == [("line.interlock", "open"), ("line.interlock", "closed")]


def test_interlock_from_a_transport_that_is_not_the_configured_source_is_ignored(plc_station):
    rt, plc = plc_station(interlock_source="opcua")
    plc.coil("interlock", True)
    time.sleep(0.1)
    assert rt.cycle.suspensions == {} and plc.bit("trigger_ready")


def test_a_record_that_cannot_be_written_is_answered_and_the_faulted_station_says_not_ready(plc_station, monkeypatch):
    import errno

    import station.store.images as images

    rt, plc = plc_station()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images.os, "fsync", full)  # the image write hits a full disk
    assert plc.inspect("NO-SPACE").code == ResultCode.STATION_ERROR
    assert rt.cycle.state.value == "faulted" and rt.store.count() == 0
    assert plc.inputs()["state"] == 7
    plc.write_part("AFTER-FAULT")
    plc.coil("trigger", True)
    plc.wait_bit("result_ready", True)
    assert plc.inputs()["result_code"] == ResultCode.NOT_READY
