"""Outbox rows: one per sink delivery, written in the inspection's own transaction."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from station.store.images import StoredImage
from station.store.outbox import outbox_rows_for
from station.store.schema import OutboxRow
from store_helpers import fault_record, make_record

IMG = StoredImage(sha256="ab" * 32, relpath="images/ab/" + "ab" * 32 + ".png", dtype="uint8",
                  shape=(1024, 1280), bit_depth=8, nbytes=1234)
WHERE = dict(plant="plantA", line="line2", station="station1")


def _kinds(rows):
    return {(r["sink"], r["kind"]): r["priority"] for r in rows}


def test_pass_has_no_alert():
    rows = outbox_rows_for(make_record(1, "pass"), IMG, **WHERE)
    assert _kinds(rows) == {("s3", "image"): 3, ("s3", "result"): 2,
                            ("stepfunctions", "start_execution"): 2, ("mes", "result"): 2}


@pytest.mark.parametrize("decision", ["reject", "review", "check_capture"])
def test_alert_decisions_add_an_sns_alert_first(decision):
    rows = outbox_rows_for(make_record(1, decision), IMG, **WHERE)
    kinds = _kinds(rows)
    assert kinds[("sns", "alert")] == 1 and len(kinds) == 5
    alert = rows[0]["payload"]
    assert alert["attributes"]["decision"] == decision and len(alert["subject"]) <= 100


def test_fault_without_image_has_no_image_upload():
    rows = outbox_rows_for(fault_record(3), None, **WHERE)
    assert ("s3", "image") not in _kinds(rows) and ("sns", "alert") in _kinds(rows)
    sfn = next(r for r in rows if r["sink"] == "stepfunctions")
    assert sfn["payload"]["requires"] == [f"{rows[0]['inspection_id']}:s3:result"]


def test_keys_payloads_and_s3_layout():
    rec = make_record(4, "reject", started_at=datetime(2026, 3, 9, 23, 59, 59, tzinfo=timezone.utc))
    rows = outbox_rows_for(rec, IMG, plant="plant 1", line="L/2", station="st=3")
    by = {(r["sink"], r["kind"]): r for r in rows}
    for (sink, kind), r in by.items():
        assert r["idempotency_key"] == f"{rec.id}:{sink}:{kind}"
        assert r["status"] == "pending" and r["attempts"] == 0
    prefix = "plant=plant_1/line=L_2/station=st_3/date=2026-03-09"
    assert by["s3", "image"]["payload"]["key"] == f"raw/{prefix}/{rec.id}.png"
    assert by["s3", "image"]["payload"]["local_path"] == IMG.relpath
    assert by["s3", "image"]["payload"]["sha256"] == IMG.sha256
    assert by["s3", "result"]["payload"]["key"] == f"results/{prefix}/{rec.id}.json"
    assert by["s3", "result"]["payload"]["document"]["id"] == rec.id
    assert by["stepfunctions", "start_execution"]["payload"]["name"] == rec.id
    assert by["mes", "result"]["payload"]["verdict"] == "NotOK"
    assert by["mes", "result"]["payload"]["part_id"] == rec.part_id


def test_store_writes_outbox_rows_with_unique_keys(store, rng):
    ids = [store.record_inspection(make_record(i, d), rng.integers(0, 255, (32, 32), dtype=np.uint8))
           for i, d in enumerate(["pass", "reject", "review", "check_capture"])]
    with Session(store.reader) as s:
        rows = s.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()
    assert len(rows) == 4 + 5 * 3
    assert len({r.idempotency_key for r in rows}) == len(rows)
    assert {r.inspection_id for r in rows} == set(ids)
    claim_order = sorted(rows, key=lambda r: (r.priority, r.id))
    assert [r.sink for r in claim_order[:3]] == ["sns"] * 3
    assert store.outbox_counts() == {"pending": len(rows)}
    # The database itself refuses a second row with the same key.
    raw = sqlite3.connect(store.db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="idempotency_key"):
            raw.execute(
                "INSERT INTO outbox (inspection_id, sink, kind, priority, payload, idempotency_key,"
                " status, attempts, next_attempt_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (ids[0], "s3", "image", 3, "{}", rows[0].idempotency_key, "pending", 0, "x", "x"))
    finally:
        raw.close()
