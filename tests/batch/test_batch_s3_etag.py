"""An S3 image replaced after the run listed it is not inspected under the listed image's
id: reads ask for the listed ETag (GetObject IfMatch) and a 412 becomes a read_error row
(SeaweedFS on 127.0.0.1). The object is replaced at the point a slow run would meet it:
after the listing, before the workers read (the run's manifest claim)."""
from __future__ import annotations

import pytest
from conftest import copy_images, result_rows
from servers import start_s3

from station.batch.output import RunOutput
from station.cli import main


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_s3(tmp_path_factory.mktemp("weed"), bucket="ls-etag")
    yield server
    server.stop()


def test_object_replaced_after_listing_is_a_read_error(tmp_path, station_data, recorded_images, s3, monkeypatch,
                                                       capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    c = s3.client()
    images = copy_images(recorded_images[:3], tmp_path / "in")
    for p in images:
        c.put_object(Bucket=s3.bucket, Key=f"raw/etag/{p.name}", Body=p.read_bytes())
    replaced = f"raw/etag/{images[1].name}"
    real = RunOutput.claim_manifest

    def claim_after_replacing(self, run_id, proposed):
        c.put_object(Bucket=s3.bucket, Key=replaced, Body=recorded_images[5].read_bytes())  # another part
        return real(self, run_id, proposed)

    monkeypatch.setattr(RunOutput, "claim_manifest", claim_after_replacing)
    out = tmp_path / "out"
    assert main(["--data-dir", str(station_data), "batch", f"s3://{s3.bucket}/raw/etag", "--model", "active",
                 "--out", str(out), "--s3-endpoint", s3.endpoint_url, "--recipe", "rb", "--station", "s1",
                 "--run-id", "etag", "--no-report"]) == 0
    rows = {r["image"]: r for r in result_rows(out)}
    assert len(rows) == 3
    bad = rows[f"s3://{s3.bucket}/{replaced}"]
    assert bad["error"].startswith("read_error") and "changed since listing" in bad["error"]
    assert bad["decision"] not in ("pass", "reject")
    assert all(r["error"] is None for uri, r in rows.items() if uri != f"s3://{s3.bucket}/{replaced}")
