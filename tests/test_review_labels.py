"""Review labels: label row + audit entry + outbox row in one commit, on a real SQLite store."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sqlalchemy import func, select

from station.review_labels import (
    AlreadyLabelled,
    LabelError,
    ReviewAction,
    label_idempotency_key,
    labels_of,
    record_review_label,
)
from station.store.schema import AuditEntry, Label, OutboxRow
from station.store.record import InspectionRecord
from station.store.station_store import StationStore
from station.ui.review_queue import load_detail, queue_length, review_queue


def _record(store: StationStore, decision: str, i: int, *, heatmap: bool = True) -> str:
    rng = np.random.default_rng(i)
    image = rng.integers(0, 256, size=(64, 80), dtype=np.uint8)
    rec = InspectionRecord(
        station=store.station, decision=decision, started_at=time.time() - 100 + i, recipe="r1",
        part_id=f"P{i:04d}", lot="L1", score=0.4 + 0.1 * i, confidence=0.7, is_anomalous=decision == "reject",
        detection={"score": 0.4 + 0.1 * i, "threshold": 0.5, "model_id": "m", "model_version": "1"},
        spec_checks=[{"name": "brightness", "value": 0.5, "low": 0.3, "high": 0.7, "passed": True}],
        fault={"kind": "timeout", "message": "no frame"} if decision == "check_capture" else None,
    )
    hm = rng.random((32, 40), dtype=np.float32) if heatmap else None
    return store.record_inspection(rec, None if decision == "check_capture" else image, hm)


@pytest.fixture
def store(tmp_path):
    s = StationStore(tmp_path / "data", plant="pl", line="li", station="st")
    yield s
    s.close()


def _count(store: StationStore, table, *where) -> int:
    with store.reader.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def test_confirm_defect_writes_label_audit_and_outbox_in_one_go(store):
    iid = _record(store, "review", 1)
    got = record_review_label(store, iid, ReviewAction.CONFIRM_DEFECT, username="sue", defect_class="spot",
                              note="clear spot near hole")
    labels = labels_of(store, iid)
    assert [(lb["label"], lb["defect_class"], lb["action"], lb["source"], lb["username"]) for lb in labels] == [
        ("defect", "spot", "confirm_defect", "review", "sue")]
    assert labels[0]["image_sha256"] == store.get(iid)["image"]["sha256"]
    audit = [e for e in store.audit_entries(subject=iid) if e["action"] == "review.label"]
    assert len(audit) == 1 and audit[0]["actor"] == "sue" and audit[0]["payload"]["label_id"] == got.label_id
    with store.reader.connect() as conn:
        row = conn.execute(select(*OutboxRow.__table__.c).where(OutboxRow.kind == "label")).one()
    assert (row.sink, row.priority, row.status) == ("s3", 2, "pending")
    assert row.idempotency_key == f"{iid}:s3:label:{got.label_id}" == label_idempotency_key(iid, got.label_id)
    date = store.get(iid)["started_at"][:10]
    assert row.payload["key"] == f"labels/plant=pl/line=li/station=st/date={date}/{iid}.json"
    assert row.payload["document"]["defect_class"] == "spot" and row.payload["document"]["username"] == "sue"
    assert store.audit_verify().ok


@pytest.mark.parametrize("action,label", [("mark_good", "good"), ("recapture", "recapture")])
def test_other_actions_store_their_label(store, action, label):
    iid = _record(store, "reject", 2)
    got = record_review_label(store, iid, action, username="sue")
    assert got.label == label and got.defect_class is None
    assert [lb["label"] for lb in labels_of(store, iid)] == [label]


@pytest.mark.parametrize("kwargs,message", [
    ({"action": "confirm_defect"}, "needs a defect class"),
    ({"action": "confirm_defect", "defect_class": "dent"}, "unknown defect class 'dent'"),
    ({"action": "mark_good", "defect_class": "spot"}, "takes no defect class"),
    ({"action": "approve"}, "unknown review action 'approve'"),
    ({"action": "mark_good", "username": " "}, "signed-in user"),
])
def test_bad_input_is_refused_and_writes_nothing(store, kwargs, message):
    iid = _record(store, "review", 3)
    before = (_count(store, AuditEntry), _count(store, OutboxRow))
    kwargs = {"username": "sue", **kwargs}
    action = kwargs.pop("action")
    with pytest.raises(LabelError, match=message):
        record_review_label(store, iid, action, **kwargs)
    assert labels_of(store, iid) == []
    assert (_count(store, AuditEntry), _count(store, OutboxRow)) == before


def test_unknown_inspection_is_refused(store):
    with pytest.raises(LabelError, match="no inspection 'nope'"):
        record_review_label(store, "nope", "mark_good", username="sue")
    assert _count(store, Label) == 0


def test_second_review_of_the_same_part_is_refused_and_first_kept(store):
    iid = _record(store, "review", 4)
    record_review_label(store, iid, "mark_good", username="sue")
    with pytest.raises(AlreadyLabelled, match="already labelled 'good' by sue"):
        record_review_label(store, iid, "confirm_defect", username="bob", defect_class="spot")
    assert [lb["username"] for lb in labels_of(store, iid)] == ["sue"]
    assert _count(store, OutboxRow, OutboxRow.kind == "label") == 1


def test_concurrent_reviews_of_one_part_make_one_label(store):
    iid = _record(store, "review", 5)
    results: list[object] = []

    def review(name: str) -> None:
        try:
            results.append(record_review_label(store, iid, "mark_good", username=name))
        except AlreadyLabelled as exc:
            results.append(exc)

    threads = [threading.Thread(target=review, args=(f"u{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert len(labels_of(store, iid)) == 1
    assert store.audit_verify().ok


def test_queue_is_oldest_first_and_labelled_items_leave_it(store):
    ids = [_record(store, d, i) for i, d in enumerate(["review", "pass", "reject", "check_capture", "review"])]
    assert [it.inspection_id for it in review_queue(store)] == [ids[0], ids[2], ids[4]]
    with_faults = review_queue(store, include_check_capture=True)
    assert [it.inspection_id for it in with_faults] == [ids[0], ids[2], ids[3], ids[4]]
    record_review_label(store, ids[2], "recapture", username="sue")
    assert [it.inspection_id for it in review_queue(store)] == [ids[0], ids[4]]
    assert queue_length(store) == 2 and queue_length(store, include_check_capture=True) == 3


def test_detail_has_image_heatmap_threshold_and_spec(store):
    iid = _record(store, "review", 6)
    d = load_detail(store, iid)
    assert d.image is not None and d.image.shape == (64, 80)
    assert d.heatmap is not None and d.heatmap.dtype == np.uint8
    assert d.threshold == 0.5 and d.spec_checks[0]["name"] == "brightness" and d.image_error == ""


def test_detail_reports_a_missing_image_file_instead_of_failing(store):
    iid = _record(store, "review", 7)
    store.image_path(iid).chmod(0o644)
    store.image_path(iid).unlink()
    d = load_detail(store, iid)
    assert d.image is None and "image file" in d.image_error
    with pytest.raises(LookupError):
        load_detail(store, "unknown")
