"""Recording inspections: images byte-exact, the self-describing document, the rows."""
from __future__ import annotations

import hashlib
import time
from datetime import datetime

import cv2
import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from station.store.errors import DuplicateInspection, StoreError
from station.store.ids import inspection_id_time, new_inspection_id
from station.store.images import sha256_file
from station.store.record import InspectionRecord, verdict_for
from station.store.schema import Inspection, SpecResult
from station.store.station_store import StationStore
from store_helpers import fault_record, make_record, random_image


def test_sixteen_bit_image_round_trips_exactly(store, rng):
    img = random_image(rng, (1024, 1280), np.uint16)  # full 12-bit range in uint16
    rid = store.record_inspection(make_record(1, bit_depth=12), img)
    path = store.image_path(rid)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == img.shape
    assert np.array_equal(back, img)
    doc = store.get(rid)
    assert doc["image"]["sha256"] == sha256_file(path) == path.stem
    assert doc["image"] | {"dtype": "uint16", "shape": [1024, 1280], "bit_depth": 12} == doc["image"]
    with store.reader.connect() as conn:
        row = conn.execute(select(Inspection).where(Inspection.id == rid)).one()
    assert (row.image_dtype, row.image_shape, row.image_bit_depth) == ("uint16", [1024, 1280], 12)
    assert row.image_sha256 == path.stem and row.image_path == doc["image"]["path"]


@pytest.mark.parametrize("shape,dtype", [((480, 640), np.uint8), ((480, 640, 3), np.uint8),
                                         ((300, 200, 3), np.uint16)])
def test_other_pixel_formats_round_trip(store, rng, shape, dtype):
    img = random_image(rng, shape, dtype)
    rid = store.record_inspection(make_record(2), img)
    assert np.array_equal(cv2.imread(str(store.image_path(rid)), cv2.IMREAD_UNCHANGED), img)


def test_compact_png_is_lossless_too(tmp_path, rng):
    from station.store.images import PngOptions

    with StationStore(tmp_path, png=PngOptions.compact()) as s:
        img = random_image(rng, (256, 320), np.uint16)
        rid = s.record_inspection(make_record(3), img)
        assert np.array_equal(cv2.imread(str(s.image_path(rid)), cv2.IMREAD_UNCHANGED), img)


def test_document_is_self_describing(store, rng):
    rec = make_record(7, "reject")
    rid = store.record_inspection(rec, random_image(rng, (64, 80)))
    doc = store.get(rid)
    assert doc["schema"] == "linestation.inspection" and doc["schema_version"] == 1
    for key in ("station", "recipe", "part_id", "lot", "config_hash", "calibration_version",
                "model_id", "model_version", "model_hash", "decision", "reason"):
        assert doc[key] == getattr(rec, key), key
    assert doc["verdict"] == "NotOK"
    assert doc["camera"]["serial"] == "SIM-0001" and doc["camera"]["trigger_mode"] == "software"
    assert doc["detection"]["DetectAnomalyResult"]["IsAnomalous"] is True
    assert [c["name"] for c in doc["spec_checks"]] == [c["name"] for c in rec.spec_checks]
    assert doc["spec_passed"] is True
    assert doc["started_at"].endswith("Z") and doc["recorded_at"] >= doc["started_at"]
    assert store.recent(1)[0] == doc


def test_spec_results_rows(store):
    rec = make_record(4, "check_capture")
    rec.spec_checks[2] |= {"passed": False, "value": 3.0, "message": "contrast too low"}
    rid = store.record_inspection(rec, None)
    with Session(store.reader) as session:
        rows = session.scalars(select(SpecResult).where(SpecResult.inspection_id == rid)
                               .order_by(SpecResult.id)).all()
    assert [(r.name, r.passed) for r in rows][1:3] == [("clipping", True), ("contrast", False)]
    assert (rows[2].value, rows[2].low, rows[2].high, rows[2].unit, rows[2].message) == (
        3.0, 10.0, 90.0, "DN", "contrast too low")


def test_capture_fault_is_recorded_without_image(store):
    rid = store.record_inspection(fault_record(5), None)
    doc = store.get(rid)
    assert doc["image"] is None and doc["fault"]["kind"] == "timeout"
    assert doc["decision"] == "check_capture" and doc["verdict"] == "NotDecidable"
    assert store.image_path(rid) is None
    assert store.count() == 1 and store.count("check_capture") == 1


def test_heatmap_is_stored_small_and_8_bit(store, rng):
    heat = rng.random((1024, 1280)).astype(np.float32)
    rid = store.record_inspection(make_record(6), random_image(rng, (1024, 1280)), heat)
    doc = store.get(rid)
    hm = cv2.imread(str(store.data_dir / doc["heatmap"]["path"]), cv2.IMREAD_UNCHANGED)
    assert hm.dtype == np.uint8 and max(hm.shape) == 640 and doc["heatmap"]["shape"] == [512, 640]


def test_verdict_mapping_and_bad_input():
    assert [verdict_for(d) for d in ("pass", "reject", "review", "check_capture")] == [
        "OK", "NotOK", "NotDecidable", "NotDecidable"]
    with pytest.raises(ValueError, match="unknown decision"):
        make_record(decision="maybe")
    with pytest.raises(ValueError, match="naive"):
        make_record(started_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="kind"):
        make_record(fault={"message": "x"})


def test_decision_enum_and_non_finite_numbers_are_normalised(store):
    import enum

    class Decision(str, enum.Enum):
        REVIEW = "review"

    rec = make_record(8, Decision.REVIEW, score=float("nan"), detection={"score": np.float32(np.inf)})
    rid = store.record_inspection(rec, None)
    doc = store.get(rid)
    assert doc["decision"] == "review" and doc["score"] is None and doc["detection"]["score"] is None
    with store.reader.connect() as conn:
        assert conn.execute(select(Inspection.score).where(Inspection.id == rid)).scalar() is None


def test_duplicate_id_is_refused_and_leaves_no_stray_image(store, rng):
    rec = make_record(9)
    store.record_inspection(rec, random_image(rng, (32, 32)))
    img2 = random_image(rng, (32, 32))
    with pytest.raises(DuplicateInspection):
        store.record_inspection(rec, img2)
    assert store.count() == 1
    files = list(store.images.iter_files())
    assert len(files) == 1  # the second image was removed again


def test_bad_image_is_a_store_error(store):
    with pytest.raises(StoreError, match="uint8 or uint16"):
        store.record_inspection(make_record(10), np.zeros((4, 4), np.float32))
    assert store.count() == 0


def test_identical_images_are_stored_once(store):
    img = np.full((16, 16), 7, np.uint8)
    a = store.record_inspection(make_record(11), img)
    b = store.record_inspection(make_record(12), img)
    assert store.get(a)["image"]["path"] == store.get(b)["image"]["path"]
    assert len(list(store.images.iter_files())) == 1


def test_ids_are_time_sortable_and_unique():
    ids = [new_inspection_id() for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and all(len(i) == 26 for i in ids)
    assert abs(inspection_id_time(new_inspection_id()) - time.time()) < 1.0


def test_part_counter_carries_on_after_restart(tmp_path):
    with StationStore(tmp_path) as s:
        for i in (1, 2, 3):
            s.record_inspection(make_record(i, part_id=f"SIM-{i:05d}"), None)
        s.record_inspection(make_record(99, part_id="MANUAL-7"), None)
    with StationStore(tmp_path) as s:
        assert s.part_counter("SIM-") == 3
        assert s.last_part_id() == "MANUAL-7" and s.part_counter("MANUAL-") == 7
        assert s.part_counter("NONE-") == 0
        assert s.decision_counts() == {"pass": 4}


def test_timings_are_reported(store, rng):
    store.record_inspection(make_record(13), random_image(rng, (64, 64)))
    t = store.last_timings
    assert set(t) == {"image_ms", "heatmap_ms", "prepare_ms", "commit_ms", "total_ms"}
    assert 0 < t["commit_ms"] <= t["total_ms"]


def test_record_hash_in_audit_entry_matches_document(store):
    from station.store.jsonutil import canonical

    rid = store.record_inspection(make_record(14), None)
    (entry,) = store.audit_entries(subject=rid)
    assert entry["action"] == "inspection.recorded"
    assert entry["payload"]["record_sha256"] == hashlib.sha256(canonical(store.get(rid)).encode()).hexdigest()


def test_record_dataclass_defaults():
    rec = InspectionRecord(station="s", decision="pass", started_at=0.0)
    assert rec.verdict == "OK" and not rec.is_alert and len(rec.id) == 26
    assert rec.to_document()["image"] is None


def test_unserialisable_record_is_a_store_error_and_leaves_nothing(store, rng):
    with pytest.raises(StoreError, match="JSON"):
        store.record_inspection(make_record(15, meta={"obj": object()}), random_image(rng, (16, 16)))
    assert store.count() == 0 and list(store.images.iter_files()) == []
