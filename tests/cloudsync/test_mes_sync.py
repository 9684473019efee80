"""The MES write-back end to end: real inspections' outbox rows, the real sync service
(in-process and as ``linestation sync``), a real HTTP MES and a real OPC UA MES.

After every scenario each result reached each MES transport exactly once, the outbox row
is ``done`` with the MES disposition, and ``mes_deliveries`` holds one marker per transport.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mes_servers import TOKEN, MesHttpServer, MesOpcUaServer
from sync_helpers import record_inspections, running_sync, sync_config, wait_drained, wait_until, write_config

from cloudsync.status import sync_status
from station.config import MesConfig, MesOpcUaConfig, MesRestConfig
from station.store.station_store import StationStore

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def mes_ua():
    server = MesOpcUaServer()
    yield server
    server.stop()


@pytest.fixture
def mes_http():
    server = MesHttpServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def token(monkeypatch):
    monkeypatch.setenv("LS_TEST_MES_TOKEN", TOKEN)


def mes_config(http: MesHttpServer, ua: MesOpcUaServer | None = None):
    mes = MesConfig(rest=MesRestConfig(url=http.url, auth_header="X-Api-Key", auth_secret_env="LS_TEST_MES_TOKEN",
                                       timeout_s=2.0),
                    opcua=MesOpcUaConfig(endpoint=ua.endpoint, timeout_s=2.0) if ua else None)
    return sync_config().model_copy(update={"mes": mes})


def mes_rows(data: Path) -> list[dict]:
    with StationStore(data, recover=False) as store, store.reader.connect() as conn:
        rows = conn.exec_driver_sql("SELECT idempotency_key, status, delivery_detail FROM outbox "
                                    "WHERE sink = 'mes' ORDER BY id").all()
        markers = conn.exec_driver_sql("SELECT idempotency_key, transport, disposition FROM mes_deliveries").all()
    return [{"key": k, "status": s, "detail": json.loads(d) if d else None,
             "markers": {t: json.loads(disp) if disp else None for kk, t, disp in markers if kk == k}}
            for k, s, d in rows]


def assert_each_result_once(data: Path, http: MesHttpServer, ua: MesOpcUaServer | None = None) -> list[dict]:
    rows = mes_rows(data)
    keys = sorted(r["key"] for r in rows)
    assert {r["status"] for r in rows} == {"done"}
    assert sorted(p["message_id"] for p in http.posts) == keys  # each booked once, none missing
    for r in rows:
        assert r["markers"]["rest"] == r["detail"]["transports"]["rest"]["disposition"]
    if ua is not None:
        assert set(keys) <= set(ua.booked)
        for r in rows:
            assert r["markers"]["opcua"] == json.loads(ua.booked[r["key"]])
    return rows


def test_sync_service_delivers_every_result_to_rest_and_opcua(tmp_path, mes_http, mes_ua):
    data = tmp_path / "data"
    record_inspections(data, 12)
    with running_sync(mes_config(mes_http, mes_ua), data):
        status = wait_drained(data, sinks=("mes",), timeout_s=60)
    assert status["sinks"]["mes"]["delivered"] == 12 and status["sinks"]["mes"]["dead"] == 0
    rows = assert_each_result_once(data, mes_http, mes_ua)
    verdicts = {p["message_id"]: p["verdict"] for p in mes_http.posts}
    for r in rows:  # the disposition the MES gave is what the row recorded
        expected = {"OK": "accept", "NotOK": "scrap", "NotDecidable": "hold"}[verdicts[r["key"]]]
        assert r["detail"]["disposition"]["action"] == expected
    assert mes_http.requests == 12


def test_mes_down_at_start_queue_grows_then_drains(tmp_path, mes_http):
    data = tmp_path / "data"
    record_inspections(data, 6)
    port = mes_http.port
    cfg = mes_config(mes_http)
    mes_http.stop()
    with running_sync(cfg, data):
        wait_until(lambda: (sync_status(data)["sinks"]["mes"]["last_error"] or "").find("unreachable") >= 0,
                   20, "the MES outage to show")
        record_inspections(data, 6, start=6)  # the station keeps inspecting meanwhile
        st = sync_status(data)["sinks"]["mes"]
        assert st["pending"] + st["in_flight"] == 12 and st["delivered"] == 0
        back = MesHttpServer(port)
        try:
            wait_drained(data, sinks=("mes",), timeout_s=60)
            assert_each_result_once(data, back)
        finally:
            back.stop()


def test_500s_throttling_and_wrong_credentials(tmp_path, mes_http):
    data = tmp_path / "data"
    record_inspections(data, 8)
    mes_http.fail_next = [(500, {}), (429, {"Retry-After": "0"}), (503, {}), (500, {})]
    with running_sync(mes_config(mes_http), data):
        wait_drained(data, sinks=("mes",), timeout_s=60)
    assert_each_result_once(data, mes_http)
    # wrong credentials: permanent, parked as dead letters with the MES's reason
    data2 = tmp_path / "data2"
    record_inspections(data2, 3, start=100)
    mes_http.token = "Bearer rotated"
    with running_sync(mes_config(mes_http), data2):
        wait_until(lambda: sync_status(data2)["sinks"]["mes"]["dead"] == 3, 30, "dead letters")
    dead = sync_status(data2)["sinks"]["mes"]["dead_letters"]
    assert all("HTTP 401" in d["reason"] and "invalid API key" in d["reason"] for d in dead)
    assert len(mes_http.posts) == 8


def _sync_proc(cfg_path: Path, data: Path, log) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "linestation"), "--data-dir", str(data), "sync", "--config", str(cfg_path)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "LS_TEST_MES_TOKEN": TOKEN})


def test_sync_process_sigkilled_during_the_drain_books_each_result_once(tmp_path, mes_http):
    data = tmp_path / "data"
    record_inspections(data, 40)
    mes_http.delay_s = 0.03  # a slow MES keeps requests in flight when the kill lands
    cfg_path = write_config(mes_config(mes_http), tmp_path / "sync.yaml")
    kills = 0
    with open(tmp_path / "sync.log", "ab") as log:
        for extra in (0.0, 0.2, 0.1):
            before = len(mes_http.posts)
            proc = _sync_proc(cfg_path, data, log)
            wait_until(lambda: len(mes_http.posts) > before, 60, "progress")
            time.sleep(extra)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
        assert len(mes_http.posts) < 40  # killed in the middle of the drain
        proc = _sync_proc(cfg_path, data, log)
        try:
            wait_drained(data, sinks=("mes",), timeout_s=90)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    assert_each_result_once(data, mes_http)
    assert kills == 3
