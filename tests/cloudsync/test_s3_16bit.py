"""A 16-bit X-ray inspection reaches S3 losslessly: the object downloaded from the real
S3-compatible server (SeaweedFS on 127.0.0.1) decodes to the detector's pixels exactly."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
from sync_helpers import running_sync, sync_config, wait_drained

from station.capture.base import TriggerMode
from station.capture.sim_xray import SimXrayWriter, XrayPartRenderer
from station.capture.xray_camera import XrayFolderCamera
from station.store.station_store import StationStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "capture"))
from xray_helpers import SPEC, contexts, make_cycle, xray_model  # noqa: E402


def test_16_bit_radiograph_is_uploaded_pixel_exact(tmp_path, s3_server, bucket):
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    SimXrayWriter(inbox, SPEC).write_part(5, defect="porosity")
    expected = XrayPartRenderer(SPEC).render(5, defect="porosity")[0]
    assert int(expected.max()) > 255  # really 16-bit content
    cam = XrayFolderCamera(inbox, serial="XR-S3", poll_interval_s=0.005, settle_s=0.0)
    cam.open()
    cam.arm(TriggerMode.WATCHED_FOLDER)
    with StationStore(data, plant="p1", line="l1", station="s1") as store:
        cycle = make_cycle(cam, store, *xray_model())
        cycle.arm()
        (out,) = list(cycle.run(contexts(), count=1))
    cfg = sync_config(s3={"endpoint_url": s3_server.endpoint_url, "bucket": bucket,
                          "access_key_id_env": "LS_TEST_S3_KEY", "secret_access_key_env": "LS_TEST_S3_SECRET"})
    s3_server.client()  # exports the credentials' environment variables
    with running_sync(cfg, data):
        wait_drained(data, sinks=("s3",))
    with StationStore(data, recover=False) as store, store.reader.connect() as conn:
        payloads = [json.loads(p) for (p,) in conn.exec_driver_sql(
            "SELECT payload FROM outbox WHERE sink = 's3' AND kind = 'image' AND status = 'done'")]
    (payload,) = [p for p in payloads if p["key"].startswith("raw/")]
    body = s3_server.client().get_object(Bucket=bucket, Key=payload["key"])["Body"].read()
    got = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert got.dtype == np.uint16 and np.array_equal(got, expected)
    assert payload["key"].endswith(f"{out.inspection_id}.png")
