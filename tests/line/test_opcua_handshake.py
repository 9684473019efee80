"""The MES side over OPC UA: a real asyncua client against the station's own OPC UA server."""
from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from asyncua import ua
from plc import MesClient

from station.line.registers import ResultCode

NS = "urn:test:line"


@pytest.fixture
def mes_station(make_line_station):
    clients = []

    def make(**kw):
        rt = make_line_station(modbus=False, opcua=True, **kw)
        mes = MesClient(rt.opcua_port, NS)
        clients.append(mes)
        return rt, mes

    yield make
    for c in clients:
        c.close()


def _row(rt, inspection_id):
    con = sqlite3.connect(rt.data_dir / "station.db")
    try:
        part, lot, recipe, verdict, record = con.execute(
            "select part_id, lot, recipe, verdict, record from inspections where id=?", (inspection_id,)).fetchone()
    finally:
        con.close()
    return {"part_id": part, "lot": lot, "recipe": recipe, "verdict": verdict, "record": json.loads(record)}


def test_trigger_method_returns_the_recorded_result_and_last_result_shows_it(mes_station):
    rt, mes = mes_station(defect_rate=0.5, seed=3)
    assert mes.read("State") == "armed" and mes.read("TriggerReady") is True
    assert (mes.read("ActiveRecipe"), mes.read("ActiveRecipeNumber")) == ("a", 1)
    verdicts = set()
    for i in range(6):
        result_id, verdict, code, _msg = mes.call("Trigger", f"MES-{i}", "LOT-M")
        row = _row(rt, result_id)
        assert (row["part_id"], row["lot"], row["verdict"]) == (f"MES-{i}", "LOT-M", verdict)
        assert code == int(ResultCode.for_verdict(verdict))
        verdicts.add(verdict)
    mes.wait_for(lambda: mes.read("LastResult", "ResultId") == result_id)
    assert mes.read("LastResult", "PartId") == "MES-5" and mes.read("LastResult", "Verdict") == verdict
    assert mes.read("LastResult", "State") == 1 and mes.read("LastResult", "Sequence") == 6
    confidence = _row(rt, result_id)["record"]["confidence"]
    assert mes.read("LastResult", "Confidence") == pytest.approx(confidence)
    assert mes.read("ResultReady") is False  # the method call acknowledged its own result
    assert {"OK", "NotOK"} <= verdicts


def test_select_recipe_is_audited_with_the_unverified_client_name_and_refuses_unknown(mes_station):
    """security none: nothing is proven, so the audit says anonymous and quotes the declared name."""
    rt, mes = mes_station()
    code, active, msg = mes.call("SelectRecipe", "nope", "mes-line4")
    assert (code, active) == (ResultCode.UNKNOWN_RECIPE, "a") and "unknown recipe" in msg
    code, active, _ = mes.call("SelectRecipe", "b", "mes-line4")
    assert (code, active) == (0, "b")
    mes.wait_for(lambda: mes.read("ActiveRecipeNumber") == 2)
    result_id, *_ = mes.call("Trigger", "B-PART", "")
    assert _row(rt, result_id)["recipe"] == "b"
    code, active, _ = mes.call("SelectRecipe", "1", "mes-line4")  # by number works too
    assert (code, active) == (0, "a")
    audit = [(e["action"], e["actor"], e["subject"]) for e in rt.store.audit_entries(limit=50)
             if e["action"].startswith("recipe.")]
    who = "opcua:anonymous (unverified client 'mes-line4')"
    assert audit == [("recipe.refused", who, "nope"), ("recipe.selected", who, "b"), ("recipe.selected", who, "1")]


def test_interlock_written_over_opcua_suspends_and_a_trigger_is_answered_not_hung(mes_station):
    rt, mes = mes_station(interlock_source="opcua")
    mes.call("Trigger", "BEFORE", "")
    count = rt.store.count()
    mes.write(True, ua.VariantType.Boolean, "Interlock")
    mes.wait_for(lambda: mes.read("State") == "suspended")
    assert "interlock" in mes.read("SuspendReasons") and mes.read("TriggerReady") is False
    result_id, verdict, code, msg = mes.call("Trigger", "WHILE-OPEN", "")
    assert (result_id, verdict, code) == ("", "", ResultCode.SUSPENDED) and "interlock" in msg
    assert rt.store.count() == count
    mes.write(False, ua.VariantType.Boolean, "Interlock")
    mes.wait_for(lambda: mes.read("TriggerReady") is True)
    result_id, *_ = mes.call("Trigger", "AFTER", "")
    assert _row(rt, result_id)["part_id"] == "AFTER" and rt.store.count() == count + 1


def test_bad_part_text_over_opcua_is_refused_with_a_code(mes_station):
    rt, mes = mes_station()
    result_id, _, code, msg = mes.call("Trigger", "bad\x07part", "")
    assert (result_id, code) == ("", ResultCode.BAD_PART_DATA) and "printable" in msg
    assert rt.store.count() == 0


def test_closing_the_line_answers_a_trigger_call_that_waits_for_its_result(make_line_station):
    from test_modbus_handshake import _SlowDetector

    rt = make_line_station(modbus=False, opcua=True)
    mes = MesClient(rt.opcua_port, NS)
    slow = _SlowDetector(rt.cycle.detector, delay_s=1.5)
    rt.cycle.detector = slow
    answers: list = []
    caller = threading.Thread(target=lambda: answers.append(mes.call("Trigger", "CLOSE-1", "LOT-C")))
    caller.start()
    try:
        assert slow.entered.wait(10)
        line, rt.line = rt.line, None
        line.close()  # the waiting MES call is answered first, then the server stops
        caller.join(timeout=15)
        assert not caller.is_alive()
        ((_result_id, _verdict, code, message),) = answers
        assert code == ResultCode.NOT_READY and "closing" in message
    finally:
        try:
            mes.close()
        except Exception:  # the server is gone: the session cannot be closed politely
            pass
    assert rt.store.count() == 1  # the inspection itself was finished and recorded
