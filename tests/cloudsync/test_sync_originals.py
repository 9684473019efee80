"""X-ray originals (the detector's TIFF / DICOM, kept byte for byte by the station) reach
S3 with their record: on the real S3-compatible server (SeaweedFS) and moto, exactly once,
before the workflow that names them, and a deleted original is a dead letter with its
reason that holds up nothing else. Camera records keep exactly the rows they had."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from sync_helpers import (
    kill_after_sending,
    assert_exactly_once,
    full_config,
    record_inspections,
    running_sync,
    sync_config,
    wait_drained,
    wait_until,
    write_config,
)

from cloudsync.limits import TokenBucket
from cloudsync.outbox_queue import OutboxQueue
from cloudsync.sinks.base import Delivered, DeliveryError
from cloudsync.sinks.s3 import S3Sink
from servers import S3_INTERNAL, FaultProxy
from station.aws_client import AwsEndpoint, client
from station.capture.base import TriggerMode
from station.capture.dicom_io import write_dicom
from station.capture.sim_xray import SimXrayWriter
from station.capture.xray_camera import XrayFolderCamera
from station.store.station_store import StationStore
from store.store_helpers import make_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "capture"))
from xray_helpers import SPEC, contexts, make_cycle, xray_model  # noqa: E402

HERE = Path(__file__).resolve().parent
CLOUD = HERE.parents[1] / "cloudsync" / "cloud"
MB = 1 << 20


def _rows(data_dir: Path, where: str = "1=1") -> list[dict]:
    with StationStore(data_dir, recover=False) as store, store.reader.connect() as conn:
        cur = conn.exec_driver_sql(f"SELECT * FROM outbox WHERE {where} ORDER BY id")
        out = [dict(zip(cur.keys(), r)) for r in cur.all()]
    for r in out:
        r["payload"] = json.loads(r["payload"])
    return out


def _doc(data_dir: Path, rid: str) -> dict:
    with StationStore(data_dir, recover=False) as store:
        return store.get(rid)


def record_xray(store: StationStore, i: int, data: bytes, ext: str, fmt: str, decision: str = "reject") -> str:
    """One X-ray record the way StoreRecorder writes it: the original kept first, then the
    record naming it under ``meta.original.stored``."""
    kept = store.images.put_original(data, ext)
    meta = {"original": {"file": f"xray_{i:06d}.{ext}", "sha256": kept.sha256, "bytes": len(data),
                         "format": fmt, "ext": ext, "resumed": False, "stored": kept.relpath}}
    image = np.random.default_rng(i).integers(0, 65535, (48, 48), dtype=np.uint16)
    return store.record_inspection(make_record(i, decision, station="s1", meta=meta, bit_depth=16), image)


def dicom_bytes(side: int, seed: int = 0) -> bytes:
    return write_dicom(np.random.default_rng(seed).integers(0, 65535, (side, side), dtype=np.uint16),
                       component_name="CAST", station_name="XR")


def _b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _s3_only(s3_server, bucket: str, **s3: object):
    s3_server.client()  # exports the credentials' environment variables
    return sync_config(s3={"endpoint_url": s3_server.endpoint_url, "bucket": bucket, "workers": 4,
                           "access_key_id_env": "LS_TEST_S3_KEY", "secret_access_key_env": "LS_TEST_S3_SECRET",
                           **s3})


def test_xray_originals_reach_s3_byte_identical_before_the_workflow(tmp_path, s3_server, bucket, rig):
    """A TIFF and a DICOM part through the station's own cycle on a watched folder, plus a
    camera record in the same store; one sync run on S3 + Step Functions + SNS."""
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    written = {}
    for n, spec in ((1, SPEC), (2, dataclasses.replace(SPEC, file_format="dicom"))):
        path = SimXrayWriter(inbox, spec).write_part(n, defect="porosity")
        written[path.name] = path.read_bytes()
    cam = XrayFolderCamera(inbox, serial="XR-S3", poll_interval_s=0.005, settle_s=0.0)
    cam.open()
    cam.arm(TriggerMode.WATCHED_FOLDER)
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        cycle = make_cycle(cam, store, *xray_model())
        cycle.arm()
        xray_ids = [out.inspection_id for out in cycle.run(contexts(), count=2)]
        camera_id = store.record_inspection(make_record(9, "reject", station="s1"),
                                            np.zeros((32, 32), np.uint8))
    with running_sync(full_config(s3_server, bucket, rig), data):
        wait_drained(data)
    assert_exactly_once(data, s3_server, bucket, rig)  # originals included: each object once

    s3 = s3_server.client()
    ex = {e["name"]: e for e in rig.executions()}
    sfn = rig.moto.client("stepfunctions")
    formats = set()
    for rid in xray_ids:
        doc = _doc(data, rid)
        original = doc["meta"]["original"]
        mine = {(r["sink"], r["kind"]): r for r in _rows(data, f"inspection_id = '{rid}'")}
        row = mine["s3", "original"]
        key = row["payload"]["key"]
        ext = original["ext"]
        assert key == original["s3_key"] == (f"originals/plant=p1/line=l1/station=s1/date={doc['started_at'][:10]}/"
                                             f"{original['sha256']}.{ext}")
        obj = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        body = obj["Body"].read()
        assert body == written[original["file"]] == (data / original["stored"]).read_bytes()  # the detector's bytes
        assert hashlib.sha256(body).hexdigest() == original["sha256"] == obj["Metadata"]["sha256"]
        assert obj["ContentType"] == {"tif": "image/tiff", "dcm": "application/dicom"}[ext]
        meta = obj["Metadata"]
        assert (meta["inspection-id"], meta["part"], meta["original-file"], meta["format"]) == (
            rid, doc["part_id"], original["file"], original["format"])
        detail = json.loads(row["delivery_detail"])
        assert detail["sha256"] == original["sha256"] and detail["bytes"] == len(body)
        # The station's sha256 went as ChecksumSHA256: the server checked and stored it.
        assert detail["checksum_sha256"] == obj["ChecksumSHA256"] == _b64sha(body)
        formats.add(original["format"])

        # The result document in S3 is the stored record and names the original's key.
        res = json.loads(s3.get_object(Bucket=bucket, Key=mine["s3", "result"]["payload"]["key"])["Body"].read())
        assert res == doc
        # The workflow waited for the original and hands its key on; alerts and MES do not name it.
        workflow = mine["stepfunctions", "start_execution"]
        assert workflow["payload"]["requires"] == [f"{rid}:s3:image", f"{rid}:s3:original", f"{rid}:s3:result"]
        assert workflow["delivered_at"] >= row["delivered_at"]
        inp = json.loads(sfn.describe_execution(executionArn=ex[rid]["executionArn"])["input"])
        assert inp["original_key"] == key and inp["image_key"].endswith(f"/{rid}.png")
        assert "original_key" not in json.dumps(mine["mes", "result"]["payload"])
        if ("sns", "alert") in mine:
            alert = mine["sns", "alert"]
            assert "original" not in json.dumps(alert["payload"]) and alert["status"] == "done"
    assert formats == {"tiff", "dicom"}
    assert all("original_key" not in m["Body"] for m in rig.messages("all"))

    # The camera record: the rows and document it always had, no original anywhere.
    cam_rows = _rows(data, f"inspection_id = '{camera_id}'")
    assert sorted((r["sink"], r["kind"]) for r in cam_rows) == [
        ("mes", "result"), ("s3", "image"), ("s3", "result"), ("sns", "alert"), ("stepfunctions", "start_execution")]
    sfn_row = next(r for r in cam_rows if r["sink"] == "stepfunctions")
    assert sfn_row["payload"]["requires"] == [f"{camera_id}:s3:image", f"{camera_id}:s3:result"]
    assert "original_key" not in sfn_row["payload"]["input"]
    assert "original" not in (_doc(data, camera_id).get("meta") or {})
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sum(k.startswith("originals/") for k in listed) == 2


def test_sigkill_after_the_original_went_up_resends_nothing_and_starts_the_workflow_once(
        tmp_path, s3_server, bucket, rig):
    """The sync process uploads the originals (and the rest of S3) but is SIGKILLed before
    any of it is marked done and before any workflow started. The next process finds each
    original already there (same sha256 and size), does not write it again, and only then
    starts each workflow, once, with the original's key."""
    data = tmp_path / "data"
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        ids = [record_xray(store, i, dicom_bytes(96, i), "dcm", "dicom") for i in range(3)]
    cfg_path = write_config(_s3_only(s3_server, bucket), tmp_path / "s3-only.yaml")
    n_s3 = len(_rows(data, "sink = 's3'"))
    assert n_s3 == 9  # result, original, image for each
    kill_after_sending(cfg_path, data, n_s3)
    originals = _rows(data, "kind = 'original'")
    assert {r["status"] for r in originals} == {"in_flight"}  # sent, never marked
    s3 = s3_server.client()
    for r in originals:
        assert s3.head_object(Bucket=bucket, Key=r["payload"]["key"])["ContentLength"] == r["payload"]["bytes"]
    assert rig.executions() == []  # nothing announced the records yet

    with running_sync(full_config(s3_server, bucket, rig), data):
        wait_drained(data)
    for r in _rows(data, "kind = 'original'"):
        assert r["attempts"] == 2 and json.loads(r["delivery_detail"])["duplicate"] is True  # not re-written
    assert_exactly_once(data, s3_server, bucket, rig)
    sfn = rig.moto.client("stepfunctions")
    keys = {r["inspection_id"]: r["payload"]["key"] for r in _rows(data, "kind = 'original'")}
    for e in rig.executions():
        assert json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])["original_key"] == \
            keys[e["name"]]
    assert sorted(keys) == sorted(ids)


def test_a_deleted_original_is_a_dead_letter_with_its_reason_and_blocks_nothing_else(
        tmp_path, s3_server, bucket, rig):
    data = tmp_path / "data"
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        lost, fine = (record_xray(store, i, dicom_bytes(64, i), "dcm", "dicom") for i in range(2))
    cameras = record_inspections(data, 2, start=10)  # camera records alongside
    lost_row = _rows(data, f"inspection_id = '{lost}' AND kind = 'original'")[0]
    kept = data / lost_row["payload"]["local_path"]
    saved = kept.read_bytes()
    kept.unlink()  # deleted by hand

    def settled() -> bool:  # all done but the lost original (dead) and the workflow that needs it
        rows = {(r["inspection_id"], r["kind"]): r["status"] for r in _rows(data, "sink IN ('s3', 'stepfunctions')")}
        waiting = {(lost, "original"), (lost, "start_execution")}
        return rows[lost, "original"] == "dead" and all(v == "done" for k, v in rows.items() if k not in waiting)

    with running_sync(full_config(s3_server, bucket, rig), data):
        wait_until(settled, 60, "every other record delivered and the lost original dead")
        mine = {(r["sink"], r["kind"]): r for r in _rows(data, f"inspection_id = '{lost}'")}
    dead = mine["s3", "original"]
    assert dead["status"] == "dead" and dead["attempts"] == 1  # permanent at once: no retry loop
    assert lost_row["payload"]["local_path"] in dead["last_error"] and "missing" in dead["last_error"]
    assert "retry-dead" in dead["last_error"]  # and it says what to do
    # The record's own image and result went up; its workflow waits for the evidence.
    assert mine["s3", "image"]["status"] == mine["s3", "result"]["status"] == "done"
    workflow = mine["stepfunctions", "start_execution"]
    assert workflow["status"] == "pending" and workflow["attempts"] == 0
    assert lost not in {e["name"] for e in rig.executions()}
    assert {fine, *cameras} <= {e["name"] for e in rig.executions()}

    # Put it back and retry the dead letter: the original goes up, then the workflow starts.
    kept.write_bytes(saved)
    assert OutboxQueue(data).retry_dead("s3") == 1
    with running_sync(full_config(s3_server, bucket, rig), data):
        wait_drained(data)
    assert_exactly_once(data, s3_server, bucket, rig)
    got = s3_server.client().get_object(Bucket=bucket, Key=dead["payload"]["key"])["Body"].read()
    assert got == saved


def test_a_big_dicom_goes_up_in_parts_through_the_cap_and_survives_a_failed_part(tmp_path, s3_server, bucket):
    """A 6.8 MB DICOM above a 1 MB threshold: multipart (5 MB parts), every byte through the
    bandwidth cap; a 500 on a part aborts the upload (no parts left behind) and is retried;
    the next attempt completes it, and one more finds it there."""
    data = tmp_path / "data"
    big = dicom_bytes(1850)
    assert len(big) > 6 * MB
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        rid = record_xray(store, 1, big, "dcm", "dicom", decision="pass")
    queue = OutboxQueue(data)
    try:
        (item,) = [i for i in queue.claim("s3", 10, 60) if i.kind == "original"] or [None]
    finally:
        queue.close()
    assert item is not None and item.payload["metadata"]["part_id"] == "P000001"  # identity looked up
    proxy = FaultProxy(s3_server.s3_port).start()
    taken = []

    class CountingBucket(TokenBucket):
        def take(self, nbytes: int, stop: threading.Event | None = None) -> bool:
            taken.append(nbytes)
            return super().take(nbytes, stop)

    try:
        s3_server.client()
        c = client("s3", AwsEndpoint(endpoint_url=proxy.endpoint_url, access_key_env="LS_TEST_S3_KEY",
                                     secret_key_env="LS_TEST_S3_SECRET", max_attempts=0))  # no SDK retry
        sink = S3Sink(data, bucket=bucket, client=c, sse="none", multipart_threshold=1 * MB,
                      multipart_chunk=5 * MB, limiter=CountingBucket(1e12))
        proxy.plan(1, S3_INTERNAL)  # the CreateMultipartUpload fails first ...
        with pytest.raises(DeliveryError) as err:
            sink.deliver(item)
        assert err.value.retryable
        # ... then the next try's third request: HEAD (not there), create, part 1 fails.
        proxy.fail_every(proxy.forwarded + proxy.faulted + 3, S3_INTERNAL)
        with pytest.raises(DeliveryError) as err:
            sink.deliver(dataclasses.replace(item, attempts=2))
        assert err.value.retryable and proxy.faulted == 2
        proxy.clear()
        assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted
        done = sink.deliver(dataclasses.replace(item, attempts=3))
        assert isinstance(done, Delivered) and done.detail["parts"] == 2 and not done.duplicate
        # Asked again (straight, not through the proxy, which cannot pass a HEAD's length on):
        direct = S3Sink(data, bucket=bucket, client=s3_server.client(), multipart_threshold=1 * MB)
        again = direct.deliver(dataclasses.replace(item, attempts=4))
        assert again.duplicate  # already there: not uploaded a second time
    finally:
        proxy.stop()
    obj = s3_server.client().get_object(Bucket=bucket, Key=item.payload["key"])
    assert obj["Body"].read() == big and obj["ContentType"] == "application/dicom"
    assert obj["Metadata"]["inspection-id"] == rid
    assert sum(taken[-2:]) == len(big)  # the completed upload's two parts both passed the cap


def test_the_station_sync_policy_may_write_every_prefix_the_outbox_uses(tmp_path):
    """The CloudFormation policy a station's sync identity gets covers every S3 key prefix
    the outbox writes (an original under originals/ would otherwise be AccessDenied)."""
    data = tmp_path / "data"
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        record_xray(store, 1, b"II*\x00" + bytes(64), "tif", "tiff")
    prefixes = {r["payload"]["key"].split("/", 1)[0] for r in _rows(data, "sink = 's3'")}
    assert prefixes == {"raw", "originals", "results"}

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((CLOUD / "template.yaml").read_text(encoding="utf-8"), Loader=Loader)
    stmt = next(s for s in template["Resources"]["StationSyncPolicy"]["Properties"]["PolicyDocument"]["Statement"]
                if s["Sid"] == "UploadRecords")
    allowed = {r["Fn::Sub"].split("/", 1)[1] for r in stmt["Resource"]}
    assert {f"{p}/*" for p in prefixes | {"labels"}} <= allowed
    rules = {r["Id"]: r for r in template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["originals-tiering"]["Prefix"] == "originals/"


def test_a_hold_record_names_the_xray_original(moto_server, monkeypatch):
    """The workflow's HoldPart Lambda keeps the original's key with the hold (moto's S3)."""
    from cloudsync.cloud.lambdas import hold_part

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", moto_server.endpoint_url),
                        ("DATA_BUCKET", "holds-originals")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(hold_part, "_s3", None)
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="holds-originals")
    event = {"inspection_id": "01XRAY", "plant": "p1", "line": "l1", "station": "s1", "decision": "reject",
             "verdict": "NotOK", "original_key": "originals/plant=p1/line=l1/station=s1/date=2026-11-27/ab.dcm"}
    out = hold_part.handler(event)
    held = json.loads(s3.get_object(Bucket="holds-originals", Key=out["key"])["Body"].read())
    assert held["original_key"] == event["original_key"]
    camera = hold_part.handler({**event, "inspection_id": "01CAMERA", "original_key": None})
    assert "original_key" not in json.loads(s3.get_object(Bucket="holds-originals", Key=camera["key"])["Body"].read())
