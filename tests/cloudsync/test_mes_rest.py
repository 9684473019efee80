"""MES REST write-back against a real HTTP server on 127.0.0.1 (mes_servers.MesHttpServer, one per test)."""
from __future__ import annotations

import time

import pytest
from mes_servers import TOKEN, MesHttpServer
from sqlalchemy import select

from cloudsync.sinks.base import DeliveryError, OutboxItem
from cloudsync.sinks.mes import MesSink
from cloudsync.sinks.mes_rest import RestTransport
from station.config import MesConfig, MesRestConfig
from station.store.db import DB_FILENAME, make_engine, upgrade
from station.store.schema import MesDelivery


@pytest.fixture
def mes_http():
    server = MesHttpServer()
    yield server
    server.stop()


@pytest.fixture
def engine(tmp_path):
    eng = make_engine(tmp_path / DB_FILENAME)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def mes_token(monkeypatch):
    monkeypatch.setenv("LS_TEST_MES_TOKEN", TOKEN)


def rest_config(url: str, timeout_s: float = 2.0) -> MesRestConfig:
    return MesRestConfig(url=url, auth_header="X-Api-Key", auth_secret_env="LS_TEST_MES_TOKEN", timeout_s=timeout_s)


def make_sink(tmp_path, engine, url: str, timeout_s: float = 2.0) -> MesSink:
    return MesSink(tmp_path, MesConfig(rest=rest_config(url, timeout_s)), engine=engine)


def mes_item(n: int = 1, verdict: str = "NotOK") -> OutboxItem:
    rid = f"01JTESTINSPECTION{n:09d}"
    key = f"{rid}:mes:result"
    payload = {"message_id": key, "inspection_id": rid, "part_id": f"P-{n:05d}", "lot": "LOT-7",
               "recipe": "demo", "station": "st1", "decision": "reject", "verdict": verdict,
               "score": 0.91, "confidence": 0.88, "started_at": "2026-11-26T10:00:00.000000Z",
               "finished_at": "2026-11-26T10:00:00.120000Z"}
    return OutboxItem(id=n, inspection_id=rid, sink="mes", kind="result", priority=2, payload=payload,
                      idempotency_key=key)


def markers(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(select(MesDelivery.idempotency_key, MesDelivery.transport,
                                   MesDelivery.disposition)).all()


def test_delivered_once_with_key_auth_and_disposition(tmp_path, engine, mes_http):
    sink = make_sink(tmp_path, engine, mes_http.url)
    item = mes_item(1, "NotOK")
    got = sink.deliver(item)
    assert got.duplicate is False
    assert got.detail["disposition"] == {"action": "scrap", "part_id": "P-00001"}
    assert len(mes_http.posts) == 1
    post = mes_http.posts[0]
    assert post["message_id"] == item.idempotency_key and post["verdict"] == "NotOK"
    assert post["result"]["ResultId"] == item.idempotency_key and post["result"]["Verdict"] == "NotOK"
    assert markers(engine) == [(item.idempotency_key, "rest", {"action": "scrap", "part_id": "P-00001"})]
    # the engine retries (e.g. it died before marking the outbox row): nothing goes out again
    again = sink.deliver(item)
    assert again.duplicate is True and again.detail["transports"]["rest"]["earlier"] is True
    assert again.detail["disposition"] == {"action": "scrap", "part_id": "P-00001"}
    assert mes_http.requests == 1 and len(mes_http.posts) == 1
    sink.close()


def test_500_is_retryable_then_delivered_once(tmp_path, engine, mes_http):
    sink = make_sink(tmp_path, engine, mes_http.url)
    mes_http.fail_next = [(500, {}), (503, {})]
    item = mes_item(2, "OK")
    for _ in range(2):
        with pytest.raises(DeliveryError) as err:
            sink.deliver(item)
        assert err.value.retryable is True and "HTTP 50" in str(err.value)
    assert markers(engine) == []
    assert sink.deliver(item).detail["disposition"]["action"] == "accept"
    assert len(mes_http.posts) == 1 and mes_http.requests == 3


def test_429_is_retryable_with_retry_after(tmp_path, engine, mes_http):
    sink = make_sink(tmp_path, engine, mes_http.url)
    mes_http.fail_next = [(429, {"Retry-After": "2"})]
    with pytest.raises(DeliveryError) as err:
        sink.deliver(mes_item(3))
    assert err.value.retryable is True and err.value.retry_after_s == 2.0
    sink.deliver(mes_item(3))
    assert len(mes_http.posts) == 1


def test_wrong_credentials_are_permanent_with_the_mes_message(tmp_path, engine, mes_http):
    mes_http.token = "Bearer rotated"
    sink = make_sink(tmp_path, engine, mes_http.url)
    with pytest.raises(DeliveryError) as err:
        sink.deliver(mes_item(4))
    assert err.value.retryable is False
    assert "HTTP 401" in str(err.value) and "invalid API key" in str(err.value)
    assert mes_http.posts == [] and markers(engine) == []
    mes_http.token = TOKEN  # fixed on the MES side: the parked row retried by command goes through
    assert sink.deliver(mes_item(4)).duplicate is False and len(mes_http.posts) == 1


def test_missing_secret_variable_is_permanent_and_sends_nothing(tmp_path, engine, mes_http, monkeypatch):
    monkeypatch.delenv("LS_TEST_MES_TOKEN")
    sink = make_sink(tmp_path, engine, mes_http.url)
    with pytest.raises(DeliveryError) as err:
        sink.deliver(mes_item(5))
    assert err.value.retryable is False and "LS_TEST_MES_TOKEN" in str(err.value)
    assert mes_http.requests == 0


def test_bad_payload_is_permanent_and_sends_nothing(tmp_path, engine, mes_http):
    sink = make_sink(tmp_path, engine, mes_http.url)
    item = mes_item(6, verdict="Maybe")
    with pytest.raises(DeliveryError) as err:
        sink.deliver(item)
    assert err.value.retryable is False and "Maybe" in str(err.value)
    assert mes_http.requests == 0 and markers(engine) == []


def test_server_down_then_up(tmp_path, engine, mes_http):
    port, url = mes_http.port, mes_http.url
    mes_http.stop()
    sink = make_sink(tmp_path, engine, url)
    item = mes_item(7)
    for _ in range(3):
        with pytest.raises(DeliveryError) as err:
            sink.deliver(item)
        assert err.value.retryable is True and "unreachable" in str(err.value)
    with pytest.raises(DeliveryError):
        sink.probe()
    back = MesHttpServer(port)
    try:
        sink.probe()
        assert sink.deliver(item).duplicate is False
        assert len(back.posts) == 1 and markers(engine)[0][1] == "rest"
    finally:
        back.stop()


def test_timeout_after_the_mes_booked_it_does_not_double(tmp_path, engine, mes_http):
    # The MES processes the post but answers after our timeout: the station must retry,
    # and the retry must not book the result twice.
    mes_http.delay_s = 1.0
    sink = make_sink(tmp_path, engine, mes_http.url, timeout_s=0.3)
    item = mes_item(8)
    t0 = time.monotonic()
    with pytest.raises(DeliveryError) as err:
        sink.deliver(item)
    assert err.value.retryable is True and "timed out" in str(err.value)
    assert time.monotonic() - t0 < 1.0  # bounded by timeout_s, not by the MES
    deadline = time.monotonic() + 5
    while not mes_http.posts and time.monotonic() < deadline:
        time.sleep(0.05)
    mes_http.delay_s = 0.0
    got = make_sink(tmp_path, engine, mes_http.url).deliver(item)
    assert got.duplicate is True and got.detail["disposition"]["action"] == "scrap"
    assert len(mes_http.posts) == 1


def test_crash_between_send_and_mark_does_not_post_twice(tmp_path, engine, mes_http):
    item = mes_item(9)
    # a previous process sent the result and died before writing its marker
    RestTransport(rest_config(mes_http.url)).send(item.payload)
    assert markers(engine) == []
    got = make_sink(tmp_path, engine, mes_http.url).deliver(item)
    assert got.duplicate is True
    assert len(mes_http.posts) == 1 and mes_http.requests == 2
    assert markers(engine) == [(item.idempotency_key, "rest", {"action": "scrap", "part_id": "P-00009"})]


def test_sink_opens_the_station_database_by_itself(tmp_path, engine, mes_http):
    sink = MesSink(tmp_path, MesConfig(rest=rest_config(mes_http.url)))
    sink.deliver(mes_item(10))
    sink.close()
    assert [m[0] for m in markers(engine)] == [mes_item(10).idempotency_key]


@pytest.mark.parametrize("section, expect", [
    ("mes: {}\n", "mes = {}: configure 'rest' and/or 'opcua'"),
    ("mes:\n  rest: {url: ftp://mes/x}\n", "mes.rest.url"),
    ("mes:\n  rest: {url: 'http://mes/x', auth_secret: abc}\n", "name it with 'auth_secret_env'"),
    ("mes:\n  opcua: {endpoint: 'opc.tcp://mes:4840', method: null}\n", "set 'method'"),
    ("mes:\n  opcua: {endpoint: 'opc.tcp://mes:4840', password: pw}\n", "name it with 'password_env'"),
    ("mes:\n  opcua: {endpoint: 'opc.tcp://mes:4840', nodes: {Result: x}}\n", "mes.opcua.nodes.Result"),
    ("mes:\n  rest: {url: 'http://mes/x', timeout_s: 0}\n", "mes.rest.timeout_s"),
])
def test_bad_mes_config_is_refused_with_the_key_path(section, expect):
    from station.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config("schema_version: 1\ncamera: {type: sim}\n" + section, "station.yaml")
    line = 3 if section.startswith("mes: {}") else 4  # the line of the offending key
    assert expect in str(err.value) and f"station.yaml:{line}:" in str(err.value)


def test_no_mes_section_means_no_mes_sink(tmp_path):
    from cloudsync.sinks.mes import build
    from station.config import parse_config

    cfg = parse_config("schema_version: 1\ncamera: {type: sim}\n")
    assert cfg.mes is None and build(cfg, tmp_path, None) is None
