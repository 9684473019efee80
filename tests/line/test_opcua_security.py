"""The OPC UA server with Basic256Sha256 security, trusted client certificates and station
accounts: real asyncua clients (with their own certificates) against the station on 127.0.0.1."""
from __future__ import annotations

import os
import shutil
import socket
import sqlite3

import pytest
from asyncua import Client, ua
from cryptography.hazmat.primitives import serialization
from plc import MesClient

from station.config import ConfigError, LineOpcUaConfig
from station.line.loop_thread import LoopThread
from station.line.opcua_pki import key_pem, make_certificate, thumbprint
from station.line.registers import ResultCode
from station.users import UserDirectory

NS = "urn:test:line"
SECURE = {"security": "Basic256Sha256_SignAndEncrypt", "anonymous": "control"}


@pytest.fixture(scope="module")
def client_certs(tmp_path_factory):
    """Two client identities ``mes`` and ``intruder``: (cert .der, key .pem, certificate)."""
    root = tmp_path_factory.mktemp("client-certs")
    out = {}
    for name, cn in (("mes", "MES line 4"), ("intruder", "Intruder")):
        cert, key = make_certificate(cn, "urn:test:mes", ["localhost", socket.gethostname()], server=False)
        der, pem = root / f"{name}.der", root / f"{name}.pem"
        der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        pem.write_bytes(key_pem(key))
        out[name] = (der, pem, cert)
    return out


@pytest.fixture
def secure_station(make_line_station, client_certs):
    """``make(**opcua_security)``: a secured station whose trusted folder holds the ``mes`` certificate."""
    clients: list[MesClient] = []

    def make(interlock_source="any", **security):
        rt = make_line_station(modbus=False, opcua=True, opcua_security={**SECURE, **security},
                               interlock_source=interlock_source)
        shutil.copy(client_certs["mes"][0], rt.data_dir / "opcua-pki" / "trusted" / "mes.der")
        return rt

    def connect(rt, who="mes", **kw):
        der, pem, _ = client_certs[who]
        mes = MesClient(rt.opcua_port, NS, cert=(der, pem), **kw)
        clients.append(mes)
        return mes

    make.connect = connect
    yield make
    for c in clients:
        c.close()


def _audit(rt, action):
    return [e for e in rt.store.audit_entries(limit=200) if e["action"] == action]


def _operator(rt, name="alice", secret="alice-pin-42"):
    users = UserDirectory(rt.store)
    users.create_first_admin("boss", "boss-pass-1")
    users.create_user(name, secret, "operator", actor=users.sign_in("boss", "boss-pass-1"))
    return name, secret


def test_an_untrusted_client_certificate_is_refused_named_and_kept_for_trusting(secure_station, client_certs, caplog):
    rt = secure_station()
    intruder = client_certs["intruder"][2]
    with pytest.raises(ua.UaError, match="BadCertificateUntrusted"):
        secure_station.connect(rt, "intruder")
    thumb = thumbprint(intruder)
    assert f"subject CN=Intruder,O=LineStation, SHA-1 thumbprint {thumb}" in caplog.text
    (refused,) = _audit(rt, "line.opcua_refused")
    assert refused["subject"] == "CN=Intruder,O=LineStation" and refused["payload"]["thumbprint"] == thumb
    saved = rt.data_dir / "opcua-pki" / "rejected" / f"{thumb}.der"
    assert saved.read_bytes() == client_certs["intruder"][0].read_bytes()
    assert rt.store.count() == 0
    # trusting it is moving the saved file; no restart
    shutil.move(saved, rt.data_dir / "opcua-pki" / "trusted" / saved.name)
    mes = secure_station.connect(rt, "intruder")
    assert mes.read("State") == "armed"


def test_a_trusted_certificate_triggers_and_the_audit_names_the_certificate_not_the_declared_client(
        secure_station, client_certs):
    rt = secure_station(anonymous="control")
    mes = secure_station.connect(rt)
    result_id, verdict, code, _ = mes.call("Trigger", "SEC-1", "LOT-S")
    assert code == int(ResultCode.for_verdict(verdict)) and rt.store.count() == 1
    code, active, _ = mes.call("SelectRecipe", "b", "pretends-to-be-admin")
    assert (code, active) == (0, "b")
    thumb = thumbprint(client_certs["mes"][2])
    who = f"opcua:cert:CN=MES line 4,O=LineStation [{thumb[:12]}]"
    (trigger,) = _audit(rt, "line.trigger")
    assert (trigger["actor"], trigger["subject"], trigger["payload"]["part_id"]) == (who, result_id, "SEC-1")
    assert trigger["payload"]["thumbprint"] == thumb
    (selected,) = _audit(rt, "recipe.selected")
    assert selected["actor"] == who and "pretends" not in selected["actor"]


def test_anonymous_reads_but_cannot_write_the_interlock_or_trigger_an_operator_can(secure_station):
    rt = secure_station(anonymous="read", security="Basic256Sha256_Sign", interlock_source="opcua")
    name, secret = _operator(rt)
    watcher = secure_station.connect(rt, mode="Sign")
    assert watcher.read("State") == "armed"
    with pytest.raises(ua.UaError, match="BadUserAccessDenied"):
        watcher.write(True, ua.VariantType.Boolean, "Interlock")
    with pytest.raises(ua.UaError, match="BadUserAccessDenied"):
        watcher.call("Trigger", "ANON", "")
    assert watcher.read("State") == "armed" and rt.store.count() == 0 and not _audit(rt, "line.interlock")

    operator = secure_station.connect(rt, mode="Sign", user=name, password=secret)
    operator.write(True, ua.VariantType.Boolean, "Interlock")
    watcher.wait_for(lambda: watcher.read("State") == "suspended")
    operator.write(False, ua.VariantType.Boolean, "Interlock")
    watcher.wait_for(lambda: watcher.read("TriggerReady") is True)
    operator.call("Trigger", "BY-ALICE", "")
    actors = {e["actor"] for e in _audit(rt, "line.interlock") + _audit(rt, "line.trigger")}
    assert len(actors) == 1 and actors.pop().startswith("opcua:user:alice via cert:CN=MES line 4")


def test_a_wrong_password_or_no_user_name_is_refused_when_the_config_says_so(secure_station):
    rt = secure_station(anonymous="refuse")
    name, secret = _operator(rt)
    with pytest.raises(ua.UaError, match="BadUserAccessDenied"):
        secure_station.connect(rt, user=name, password="not-the-pin")
    with pytest.raises(ua.UaError, match="BadUserAccessDenied"):
        secure_station.connect(rt, user="nobody", password="whatever")
    with pytest.raises(ua.UaError, match="BadIdentityTokenRejected|BadUserAccessDenied"):
        secure_station.connect(rt)  # anonymous
    failed = [(e["subject"], e["payload"]["reason"]) for e in _audit(rt, "user.signin_failed")]
    assert failed == [(name, "wrong password"), ("nobody", "unknown user")]
    mes = secure_station.connect(rt, user=name, password=secret)
    result_id, *_ = mes.call("Trigger", "OK-USER", "")
    assert _audit(rt, "line.trigger")[0]["actor"].startswith("opcua:user:alice")


def test_the_server_certificate_is_created_once_kept_across_restarts_and_never_replaced_silently(
        make_line_station, line_template, tmp_path):
    from line_config import line_config

    from station.runtime import StationRuntime

    rt = make_line_station(modbus=False, opcua=True, opcua_security=SECURE)
    own = rt.data_dir / "opcua-pki" / "own"
    first = (own / "cert.der").read_bytes()
    assert (own / "key.pem").stat().st_mode & 0o777 == 0o600 and own.stat().st_mode & 0o077 == 0
    data_dir, port = rt.data_dir, rt.opcua_port
    rt.close()
    cfg = line_config(None, port, opcua_security=SECURE)
    rt = StationRuntime.open(cfg, data_dir)
    try:
        assert (own / "cert.der").read_bytes() == first
        endpoints = _endpoints(port)
        assert {e.ServerCertificate for e in endpoints} == {first}
        assert {e.SecurityPolicyUri.rsplit("#", 1)[1] for e in endpoints} == {"Basic256Sha256"}
    finally:
        rt.close()
    created = [e for e in _audit_file(data_dir) if e[0] == "line.opcua_certificate_created"]
    assert len(created) == 1
    os.remove(own / "key.pem")
    with pytest.raises(Exception, match="key.pem is missing; the station never replaces"):
        StationRuntime.open(cfg, data_dir)
    assert (own / "cert.der").read_bytes() == first and not (own / "key.pem").exists()


def _endpoints(port):
    """What the server offers (read over a None channel without a session, as clients do first)."""
    loop = LoopThread("endpoints")
    loop.start()
    try:
        return loop.run(Client(f"opc.tcp://127.0.0.1:{port}/linestation").connect_and_get_server_endpoints(), 30)
    finally:
        loop.stop()


def _audit_file(data_dir):
    con = sqlite3.connect(data_dir / "station.db")
    try:
        return con.execute("select action, subject from audit_log order by seq").fetchall()
    finally:
        con.close()


def test_the_config_defaults_to_signed_and_encrypted_and_refuses_a_server_nobody_can_use():
    assert LineOpcUaConfig().security == "Basic256Sha256_SignAndEncrypt"
    assert LineOpcUaConfig().anonymous == "read"
    with pytest.raises(ValueError, match="admits nobody"):
        LineOpcUaConfig(security="none", anonymous="refuse")
    from line_config import line_config

    with pytest.raises(ConfigError, match="line.opcua.security"):
        line_config(None, 4840, opcua_security={"security": "Basic128Rsa15"})


def test_the_line_demo_runs_unsecured_only_on_loopback_and_says_so_explicitly():
    from pathlib import Path

    import yaml

    from station.config import load_config

    path = Path(__file__).resolve().parents[2] / "resources" / "line-demo.yaml"
    raw = yaml.safe_load(path.read_text())["line"]["opcua"]
    assert (raw["security"], raw["anonymous"]) == ("none", "control")  # written out, not a default
    cfg = load_config(path).line.opcua
    assert cfg.endpoint.startswith("opc.tcp://127.0.0.1:")
