"""Delivery against real servers: S3 (SeaweedFS), Step Functions and SNS (moto), exactly once."""
from __future__ import annotations

import hashlib
import json

import numpy as np
from sync_helpers import (
    ROUTE_OF,
    assert_exactly_once,
    full_config,
    record_inspections,
    running_sync,
    sync_config,
    wait_drained,
)

from cloudsync.sinks.base import DeliveryError, OutboxItem
from cloudsync.sinks.s3 import S3Sink
from cloudsync.sinks.sns import SnsSink
from cloudsync.sinks.stepfunctions import StepFunctionsSink
from cloudsync.status import format_status, sync_status
from station.store.station_store import StationStore


def _rows(data_dir, where="1=1"):
    with StationStore(data_dir, recover=False) as store, store.reader.connect() as conn:
        return [dict(r._mapping) for r in conn.exec_driver_sql(
            f"SELECT id, inspection_id, sink, kind, status, attempts, payload, delivered_at, delivery_detail, "
            f"last_error, idempotency_key FROM outbox WHERE {where} ORDER BY id")]


def test_every_record_reaches_s3_step_functions_and_sns_once(tmp_path, s3_server, bucket, rig):
    data = tmp_path / "data"
    ids = record_inspections(data, 20)
    cfg = full_config(s3_server, bucket, rig)
    with running_sync(cfg, data):
        status = wait_drained(data)
    assert_exactly_once(data, s3_server, bucket, rig)
    assert status["sinks"]["s3"]["delivered"] == 40 and status["sinks"]["stepfunctions"]["delivered"] == 20
    assert status["sinks"]["mes"]["pending"] == 20  # not configured here: stays queued, not lost
    assert status["sinks"]["s3"]["state"] == "online"

    # The image in the bucket is the stored PNG, byte for byte, with its traceability metadata.
    s3 = s3_server.client()
    store = StationStore(data, recover=False)
    try:
        doc = store.get(ids[1])
        png = store.image_path(ids[1]).read_bytes()
    finally:
        store.close()
    img_row = next(r for r in _rows(data, f"inspection_id = '{ids[1]}' AND kind = 'image'"))
    key = json.loads(img_row["payload"])["key"]
    assert key.startswith("raw/plant=p1/line=l1/station=s1/date=") and key.endswith(f"/{ids[1]}.png")
    obj = s3.get_object(Bucket=bucket, Key=key)
    assert obj["Body"].read() == png
    meta = obj["Metadata"]
    assert meta["sha256"] == hashlib.sha256(png).hexdigest() == doc["image"]["sha256"]
    assert (meta["part"], meta["lot"], meta["station"], meta["recipe"]) == (doc["part_id"], "LOT-7", "s1", "bracket-a")
    assert (meta["calibration-version"], meta["model-version"]) == ("cal-2", "3")
    assert obj["ContentType"] == "image/png"
    detail = json.loads(img_row["delivery_detail"])
    assert detail["sha256"] == meta["sha256"] and detail["etag"]

    # The result is one JSON line: the inspection's self-describing document.
    res_key = key.replace("raw/", "results/", 1).replace(".png", ".json")
    body = s3.get_object(Bucket=bucket, Key=res_key)["Body"].read()
    assert body.endswith(b"\n") and body.count(b"\n") == 1
    assert json.loads(body) == doc

    # Workflows started after their S3 objects, named by inspection, with keys and verdict.
    rows = _rows(data)
    for rid in ids:
        mine = {r["kind"]: r for r in rows if r["inspection_id"] == rid and r["sink"] != "mes"}
        assert mine["start_execution"]["delivered_at"] >= max(mine["image"]["delivered_at"],
                                                              mine["result"]["delivered_at"])
    ex = {e["name"]: e for e in rig.executions()}
    sfn = rig.moto.client("stepfunctions")
    inp = json.loads(sfn.describe_execution(executionArn=ex[ids[1]]["executionArn"])["input"])
    assert inp["verdict"] == "NotOK" and inp["image_key"] == key and inp["result_key"] == res_key
    assert inp["bucket"] == bucket

    # Alerts: routed by decision through filter policies, with the attributes and dedupe id.
    decisions = {r["inspection_id"]: json.loads(r["payload"])["message"]["decision"]
                 for r in rows if r["sink"] == "sns"}
    for route in ("immediate", "review", "technician"):
        msgs = rig.messages(route)
        want = sorted(i for i, d in decisions.items() if ROUTE_OF[d] == route)
        assert sorted(json.loads(m["Body"])["inspection_id"] for m in msgs) == want
        for m in msgs:
            attrs = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
            assert attrs["route"] == route and attrs["station"] == "s1" and attrs["line"] == "l1"
            assert attrs["confidence_band"] == "high"  # confidence 0.93
            assert json.loads(m["Body"])["dedupe_id"].endswith(":sns:alert")
    assert "online" in format_status(status)


def test_priority_alerts_then_results_then_images(tmp_path, s3_server, bucket, rig):
    data = tmp_path / "data"
    record_inspections(data, 10)
    cfg = full_config(s3_server, bucket, rig)
    # One worker per sink: the claim order is the delivery order.
    cfg = cfg.model_copy(update={"sync": cfg.sync.model_copy(update={
        "s3": cfg.sync.s3.model_copy(update={"workers": 1})})})
    with running_sync(cfg, data):
        wait_drained(data)
    s3_rows = sorted((r for r in _rows(data) if r["sink"] == "s3"), key=lambda r: r["delivered_at"])
    kinds = [r["kind"] for r in s3_rows]
    assert kinds == ["result"] * 10 + ["image"] * 10


def test_a_repeated_delivery_is_recognised_not_repeated(tmp_path, s3_server, bucket, rig):
    data = tmp_path / "data"
    record_inspections(data, 5)
    with running_sync(full_config(s3_server, bucket, rig), data):
        wait_drained(data)
    rows = _rows(data)
    s3c = s3_server.client()
    s3 = S3Sink(data, bucket=bucket, client=s3c)
    sfn = StepFunctionsSink(data, state_machine_arn=rig.state_machine_arn, client=rig.moto.client("stepfunctions"),
                            bucket=bucket)
    for r in rows:
        if r["sink"] not in ("s3", "stepfunctions"):
            continue
        # attempts=2: "the previous attempt may have reached the far side"
        item = OutboxItem(r["id"], r["inspection_id"], r["sink"], r["kind"], 2, json.loads(r["payload"]),
                          r["idempotency_key"], attempts=2)
        if r["kind"] == "image":
            meta_row = _rows(data, f"id = {r['id']}")[0]
            item = OutboxItem(item.id, item.inspection_id, "s3", "image", 3,
                              {**json.loads(meta_row["payload"]), "metadata": {}}, item.idempotency_key, 2)
        out = (s3 if r["sink"] == "s3" else sfn).deliver(item)
        assert out.duplicate, r["idempotency_key"]
    versions = s3c.list_objects_v2(Bucket=bucket)["KeyCount"]
    assert versions == 10
    assert len(rig.executions()) == 5

    # Same execution name, different input: someone else used the name -> permanent.
    sfn_row = next(r for r in rows if r["sink"] == "stepfunctions")
    p = json.loads(sfn_row["payload"])
    p["input"] = {**p["input"], "verdict": "OK?"}
    try:
        sfn.deliver(OutboxItem(1, sfn_row["inspection_id"], "stepfunctions", "start_execution", 2, p, "k", 2))
    except DeliveryError as exc:
        assert not exc.retryable and "different input" in str(exc)
    else:
        raise AssertionError("a different input under the same name was accepted")


def test_damaged_or_missing_image_is_a_dead_letter_not_an_upload(tmp_path, s3_server, bucket, rig):
    data = tmp_path / "data"
    ids = record_inspections(data, 2)
    store = StationStore(data, recover=False)
    try:
        bad = store.image_path(ids[0])
        gone = store.image_path(ids[1])
    finally:
        store.close()
    raw = bytearray(bad.read_bytes())
    raw[-20] ^= 0xFF
    bad.write_bytes(bytes(raw))
    gone.unlink()
    cfg = full_config(s3_server, bucket, rig)
    with running_sync(cfg, data):
        wait_drained(data, sinks=("s3", "sns"))
        status = sync_status(data)
    s3 = status["sinks"]["s3"]
    assert s3["dead"] == 2 and s3["delivered"] == 2
    reasons = " ".join(d["reason"] for d in s3["dead_letters"])
    assert "does not match its sha256" in reasons and "is missing" in reasons
    listed = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not any(k.startswith("raw/") for k in listed)  # never published damaged bytes
    # The workflows wait for their images: nothing started for a record whose image is dead.
    assert status["sinks"]["stepfunctions"]["pending"] == 2 and rig.executions() == []


def test_multipart_upload_above_the_threshold(tmp_path, s3_server, bucket):
    data = tmp_path / "data"
    rng = np.random.default_rng(3)
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        from store.store_helpers import make_record
        rid = store.record_inspection(make_record(1, "pass", station="s1"),
                                      rng.integers(0, 255, (1400, 1400), dtype=np.uint8))  # ~2 MB PNG
    cfg = sync_config(s3={"endpoint_url": s3_server.endpoint_url, "bucket": bucket,
                          "access_key_id_env": "LS_TEST_S3_KEY", "secret_access_key_env": "LS_TEST_S3_SECRET",
                          "multipart_threshold_mb": 1})
    s3_server.client()
    with running_sync(cfg, data):
        wait_drained(data, sinks=("s3",))
    row = next(r for r in _rows(data) if r["kind"] == "image")
    detail = json.loads(row["delivery_detail"])
    assert detail["parts"] == 1 and detail["etag"].strip('"').endswith("-1")
    store = StationStore(data, recover=False)
    try:
        png = store.image_path(rid).read_bytes()
    finally:
        store.close()
    got = s3_server.client().get_object(Bucket=bucket, Key=json.loads(row["payload"])["key"])
    assert got["Body"].read() == png and got["Metadata"]["sha256"] == hashlib.sha256(png).hexdigest()


def test_sns_fifo_topic_gets_a_deduplication_id(tmp_path, moto_server):
    sns = moto_server.client("sns")
    topic = sns.create_topic(Name="alerts-dedupe.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    sink = SnsSink(tmp_path, topic_arn=topic, client=sns)
    payload = {"subject": "x", "message": {"decision": "reject", "confidence": 0.7},
               "attributes": {"decision": "reject", "station": "s1"}}
    out = sink.deliver(OutboxItem(1, "I1", "sns", "alert", 1, payload, "I1:sns:alert"))
    assert out.detail["route"] == "immediate" and out.detail["message_id"]


def test_review_labels_sync_to_s3_as_corrections(tmp_path, s3_server, bucket, rig):
    """A supervisor's review decision reaches the bucket as one JSON line under labels/."""
    from station.review_labels import record_review_label

    data = tmp_path / "data"
    ids = record_inspections(data, 4)  # decisions cycle pass, reject, review, check_capture
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        label = record_review_label(store, ids[2], "confirm_defect", username="sup1", defect_class="scratch")
    with running_sync(full_config(s3_server, bucket, rig), data):
        wait_drained(data)
    row = next(r for r in _rows(data) if r["kind"] == "label")
    assert row["status"] == "done", row["last_error"]
    key = json.loads(row["payload"])["key"]
    assert key.startswith("labels/plant=p1/line=l1/station=s1/date=")
    body = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    doc = json.loads(body)
    assert (doc["inspection_id"], doc["label"], doc["defect_class"], doc["username"]) == (
        ids[2], "defect", "scratch", "sup1")
    assert doc["label_id"] == label.label_id
