"""MES OPC UA write-back against a real asyncua server on 127.0.0.1 (mes_servers.MesOpcUaServer)."""
from __future__ import annotations

import time

import pytest
from asyncua import ua
from mes_servers import NS, TOKEN, MesHttpServer, MesOpcUaServer
from sqlalchemy import select

from cloudsync.sinks.base import DeliveryError, OutboxItem
from cloudsync.sinks.mes import MesSink
from cloudsync.sinks.mes_opcua import OpcUaTransport
from station.config import MesConfig, MesOpcUaConfig, MesRestConfig
from station.store.db import DB_FILENAME, make_engine, upgrade
from station.store.schema import MesDelivery


@pytest.fixture(scope="module")
def mes_ua():
    server = MesOpcUaServer()
    yield server
    server.stop()


@pytest.fixture
def engine(tmp_path):
    eng = make_engine(tmp_path / DB_FILENAME)
    upgrade(eng)
    yield eng
    eng.dispose()


_counter = iter(range(1, 1_000_000))


def mes_item(verdict: str = "NotOK") -> OutboxItem:
    n = next(_counter)
    rid = f"01JOPCUAINSPECTION{n:08d}"
    key = f"{rid}:mes:result"
    payload = {"message_id": key, "inspection_id": rid, "part_id": f"P-{n:05d}", "lot": "LOT-7",
               "recipe": "demo", "station": "st1", "decision": "reject", "verdict": verdict,
               "score": 0.91, "confidence": 0.88, "started_at": "2026-11-26T10:00:00.000000Z",
               "finished_at": "2026-11-26T10:00:00.120000Z"}
    return OutboxItem(id=n, inspection_id=rid, sink="mes", kind="result", priority=2, payload=payload,
                      idempotency_key=key)


def ua_config(endpoint: str, **kw) -> MesOpcUaConfig:
    return MesOpcUaConfig(endpoint=endpoint, timeout_s=kw.pop("timeout_s", 2.0), **kw)


def markers(engine, key: str) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(select(MesDelivery.transport, MesDelivery.disposition)
                            .where(MesDelivery.idempotency_key == key)).all()
    return dict(rows)


def test_report_result_method_once_with_disposition(tmp_path, engine, mes_ua):
    sink = MesSink(tmp_path, MesConfig(opcua=ua_config(mes_ua.endpoint)), engine=engine)
    try:
        item = mes_item("NotDecidable")
        got = sink.deliver(item)
        assert got.duplicate is False
        part = item.payload["part_id"]
        assert got.detail["disposition"] == {"action": "hold", "part_id": part}
        call = [c for c in mes_ua.calls if c["ResultId"] == item.idempotency_key]
        assert len(call) == 1
        assert (call[0]["PartId"], call[0]["State"], call[0]["Verdict"]) == (part, 1, "NotDecidable")
        assert call[0]["Timestamp"].isoformat().startswith("2026-11-26T10:00:00.12")
        assert markers(engine, item.idempotency_key) == {"opcua": {"action": "hold", "part_id": part}}
        before = len(mes_ua.calls)
        assert sink.deliver(item).duplicate is True  # confirmed earlier: not called again
        assert len(mes_ua.calls) == before
    finally:
        sink.close()


def test_crash_between_call_and_mark_is_reported_duplicate(tmp_path, engine, mes_ua):
    item = mes_item("OK")
    first = OpcUaTransport(ua_config(mes_ua.endpoint))
    try:
        first.send(item.payload)  # the process that made this call died before its marker
    finally:
        first.close()
    sink = MesSink(tmp_path, MesConfig(opcua=ua_config(mes_ua.endpoint)), engine=engine)
    try:
        got = sink.deliver(item)
    finally:
        sink.close()
    assert got.duplicate is True and got.detail["disposition"]["action"] == "accept"
    assert len(mes_ua.booked) >= 1 and sum(1 for k in mes_ua.booked if k == item.idempotency_key) == 1
    assert markers(engine, item.idempotency_key)["opcua"]["action"] == "accept"


def test_node_writes_by_browse_name_and_node_id(tmp_path, engine, mes_ua):
    verdict_code_id = mes_ua.vars["VerdictCode"].nodeid.to_string()
    cfg = ua_config(mes_ua.endpoint, method=None, namespace_uri=NS,
                    nodes={"ResultId": "ResultId", "PartId": "PartId", "State": "State",
                           "Verdict": verdict_code_id, "Timestamp": "Timestamp"})
    sink = MesSink(tmp_path, MesConfig(opcua=cfg), engine=engine)
    try:
        item = mes_item("NotOK")
        got = sink.deliver(item)
    finally:
        sink.close()
    assert got.detail["transports"]["opcua"]["disposition"] is None
    assert mes_ua.read("ResultId") == item.idempotency_key
    assert mes_ua.read("PartId") == item.payload["part_id"]
    assert mes_ua.read("State") == 1
    assert mes_ua.read("VerdictCode") == 2  # an Int32 node gets the ResultEvaluation code for NotOK
    assert mes_ua.read("Timestamp").isoformat().startswith("2026-11-26T10:00:00.12")
    assert "opcua" in markers(engine, item.idempotency_key)


def test_mes_rejecting_the_call_is_permanent(tmp_path, engine, mes_ua):
    mes_ua.fail_with = ua.StatusCodes.BadInvalidArgument
    sink = MesSink(tmp_path, MesConfig(opcua=ua_config(mes_ua.endpoint)), engine=engine)
    try:
        item = mes_item()
        with pytest.raises(DeliveryError) as err:
            sink.deliver(item)
        assert err.value.retryable is False and "BadInvalidArgument" in str(err.value)
        assert markers(engine, item.idempotency_key) == {}
    finally:
        sink.close()


def test_unknown_method_and_wrong_password_are_permanent(tmp_path, engine, mes_ua, monkeypatch):
    for cfg, expect in ((ua_config(mes_ua.endpoint, method="NoSuchMethod"), "NoSuchMethod"),
                        (ua_config(mes_ua.endpoint, username="station", password_env="LS_TEST_UA_PW"),
                         "BadUserAccessDenied")):
        monkeypatch.setenv("LS_TEST_UA_PW", "wrong")
        sink = MesSink(tmp_path, MesConfig(opcua=cfg), engine=engine)
        try:
            with pytest.raises(DeliveryError) as err:
                sink.deliver(mes_item())
            assert err.value.retryable is False, str(err.value)
            assert expect in str(err.value)
        finally:
            sink.close()
    monkeypatch.setenv("LS_TEST_UA_PW", "pw-for-tests")
    sink = MesSink(tmp_path, MesConfig(opcua=ua_config(mes_ua.endpoint, username="station",
                                                       password_env="LS_TEST_UA_PW")), engine=engine)
    try:
        assert sink.deliver(mes_item()).duplicate is False
    finally:
        sink.close()


def test_server_down_then_up_reconnects(tmp_path, engine):
    server = MesOpcUaServer()
    port = server.port
    sink = MesSink(tmp_path, MesConfig(opcua=ua_config(server.endpoint, timeout_s=1.0)), engine=engine)
    try:
        sink.deliver(mes_item())  # connected
        server.stop()  # the MES goes away under an open session
        item = mes_item("NotOK")
        t0 = time.monotonic()
        for _ in range(2):
            with pytest.raises(DeliveryError) as err:
                sink.deliver(item)
            assert err.value.retryable is True, str(err.value)
        with pytest.raises(DeliveryError) as err:
            sink.probe()  # what the engine's circuit asks while the sink is offline
        assert err.value.retryable is True
        assert time.monotonic() - t0 < 10
        server = MesOpcUaServer(port)
        sink.probe()
        got = sink.deliver(item)
        assert got.detail["disposition"]["action"] == "scrap"
        assert [c["ResultId"] for c in server.calls] == [item.idempotency_key]
    finally:
        sink.close()
        if server._thread.is_alive():
            server.stop()


def test_rest_and_opcua_fan_out_resend_only_the_failed_transport(tmp_path, engine, mes_ua, monkeypatch):
    http = MesHttpServer()
    http.fail_next = [(503, {})]
    cfg = MesConfig(rest=MesRestConfig(url=http.url, auth_header="X-Api-Key", auth_secret_env="LS_TEST_TOKEN2",
                                       timeout_s=2.0),
                    opcua=ua_config(mes_ua.endpoint))
    monkeypatch.setenv("LS_TEST_TOKEN2", TOKEN)
    sink = None
    try:
        sink = MesSink(tmp_path, cfg, engine=engine)
        item = mes_item("OK")
        with pytest.raises(DeliveryError) as err:
            sink.deliver(item)
        assert err.value.retryable is True and "rest:" in str(err.value) and "confirmed: opcua" in str(err.value)
        assert set(markers(engine, item.idempotency_key)) == {"opcua"}
        calls = len(mes_ua.calls)
        got = sink.deliver(item)
        assert len(mes_ua.calls) == calls  # OPC UA confirmed on the first attempt: not called again
        assert got.detail["transports"]["opcua"]["earlier"] is True
        assert got.detail["transports"]["rest"]["disposition"]["action"] == "accept"
        assert len(http.posts) == 1
        assert set(markers(engine, item.idempotency_key)) == {"opcua", "rest"}
    finally:
        if sink:
            sink.close()
        http.stop()
