"""The hash-chained audit log: intact chains verify, any tampering names its first entry."""
from __future__ import annotations

import sqlite3

from station.store import audit
from station.store.station_store import StationStore
from store_helpers import make_record


def _fill(store, n=5):
    ids = [store.record_inspection(make_record(i, "pass"), None) for i in range(n)]
    store.audit("operator.login", "alice", {"role": "operator"}, actor="user:alice")
    return ids


def _raw(store, sql, *args):
    conn = sqlite3.connect(store.db_path)
    try:
        conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


def test_intact_chain_verifies(store):
    _fill(store)
    report = store.audit_verify()
    assert report.ok and report.count == 6 and report.first_broken_seq is None
    assert report.head_seq == 6 and len(report.head_hash) == 64
    entries = store.audit_entries()
    assert entries[0]["prev_hash"] == audit.GENESIS_HASH
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(entries, entries[1:]))
    assert entries[-1]["actor"] == "user:alice"


def test_altered_payload_is_detected_at_its_seq(store):
    _fill(store)
    _raw(store, "UPDATE audit_log SET payload = json_set(payload, '$.decision', 'reject') WHERE seq = 3")
    report = store.audit_verify()
    assert not report.ok and report.first_broken_seq == 3 and "altered" in report.reason


def test_altered_and_rehashed_entry_breaks_the_next_link(store):
    _fill(store)
    _raw(store, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    # A forger who also recomputes entry 2's own hash still breaks entry 3's link.
    conn = sqlite3.connect(store.db_path)
    seq, at, actor, action, subject, payload, prev = conn.execute(
        "SELECT seq, at, actor, action, subject, payload, prev_hash FROM audit_log WHERE seq = 2").fetchone()
    import json

    new_hash = audit.entry_hash(prev, seq, at, actor, action, subject, json.loads(payload))
    conn.execute("UPDATE audit_log SET hash = ? WHERE seq = 2", (new_hash,))
    conn.commit()
    conn.close()
    report = audit.verify(store.reader)
    assert not report.ok and report.first_broken_seq == 3 and "link" in report.reason


def test_deleted_entry_is_detected(store):
    _fill(store)
    _raw(store, "DELETE FROM audit_log WHERE seq = 4")
    report = store.audit_verify()
    assert not report.ok and report.first_broken_seq == 4 and "missing" in report.reason


def test_cut_off_tail_is_detected_by_the_inspection_cross_check(store):
    ids = _fill(store)
    _raw(store, "DELETE FROM audit_log WHERE seq >= 5")
    assert audit.verify(store.reader).ok  # the chain alone cannot see a cut-off tail...
    report = store.audit_verify()
    assert not report.ok and ids[4] in report.reason  # ...the cross-check can
    assert report.first_broken_seq == 5


def test_altered_inspection_record_is_detected(store):
    ids = _fill(store)
    _raw(store, "UPDATE inspections SET record = json_set(record, '$.decision', 'reject') WHERE id = ?", ids[1])
    report = store.audit_verify()
    assert not report.ok and report.first_broken_seq == 2 and "record" in report.reason


def test_recovery_reports_a_broken_chain_at_open(tmp_path):
    with StationStore(tmp_path) as s:
        _fill(s)
    conn = sqlite3.connect(tmp_path / "station.db")
    conn.execute("UPDATE audit_log SET at = '2020-01-01T00:00:00.000000Z' WHERE seq = 1")
    conn.commit()
    conn.close()
    with StationStore(tmp_path) as s:
        assert not s.recovery_report.ok and s.recovery_report.audit.first_broken_seq == 1
