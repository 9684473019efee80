"""S3 prefix input and S3 output on a real S3-compatible server (SeaweedFS on 127.0.0.1)."""
from __future__ import annotations

import json
import shutil

import pytest
from conftest import copy_images
from servers import start_s3

from station.batch.layout import parse_results_key
from station.cli import main


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_s3(tmp_path_factory.mktemp("weed"), bucket="ls-batch")
    yield server
    server.stop()


def test_s3_prefix_in_and_results_out(tmp_path, station_data, recorded_images, s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    c = s3.client()
    local = copy_images(recorded_images[:6], tmp_path / "in")
    for p in local:
        c.put_object(Bucket=s3.bucket, Key=f"raw/line1/{p.name}", Body=p.read_bytes())
    c.put_object(Bucket=s3.bucket, Key="raw/line1/broken.png", Body=local[0].read_bytes()[:500])
    c.put_object(Bucket=s3.bucket, Key="raw/line1-other/not-mine.png", Body=local[0].read_bytes())  # outside
    c.put_object(Bucket=s3.bucket, Key="raw/line1/notes.txt", Body=b"not an image")

    code = main(["--data-dir", str(station_data), "batch", f"s3://{s3.bucket}/raw/line1", "--model", "active",
                 "--out", f"s3://{s3.bucket}/audits", "--s3-endpoint", s3.endpoint_url, "--recipe", "rb",
                 "--station", "s1", "--run-id", "s3run", "--workers", "2"])
    assert code == 0
    keys = s3.keys("audits/")
    results = [k for k in keys if k.startswith("audits/results/")]
    assert len(results) == 1
    parsed = parse_results_key(results[0])
    assert (parsed.station, parsed.recipe, parsed.run_id, parsed.shard) == ("s1", "rb", "s3run", 0)
    body = c.get_object(Bucket=s3.bucket, Key=results[0])["Body"].read().decode()
    rows = [json.loads(line) for line in body.splitlines()]
    assert sorted(r["image"] for r in rows) == sorted(
        [f"s3://{s3.bucket}/raw/line1/{p.name}" for p in local] + [f"s3://{s3.bucket}/raw/line1/broken.png"])
    broken = [r for r in rows if r["part_id"] == "broken"]
    assert broken[0]["error"].startswith("bad_image")
    assert all(r["error"] is None for r in rows if r["part_id"] != "broken")
    summary = json.loads(c.get_object(Bucket=s3.bucket, Key="audits/summary/run=s3run/summary.json")["Body"].read())
    assert summary["images"] == 7 and summary["errors"] == 1 and summary["complete"]
    for key in ("audits/summary/run=s3run/shard=0.json", "audits/summary/run=s3run/run.json",
                "audits/reports/run=s3run/report.html"):
        assert key in keys
    # the report's worst items show the S3 input images themselves
    report = c.get_object(Bucket=s3.bucket, Key="audits/reports/run=s3run/report.html")["Body"].read().decode()
    assert "data:image/png;base64," in report and "image not available" not in report

    # a resumed run on a machine without the staging dir fetches the shard's results first
    # and inspects nothing again
    staged = station_data / "batch" / "s3run"
    shutil.rmtree(staged)
    code = main(["--data-dir", str(station_data), "batch", f"s3://{s3.bucket}/raw/line1", "--model", "active",
                 "--out", f"s3://{s3.bucket}/audits", "--s3-endpoint", s3.endpoint_url, "--recipe", "rb",
                 "--station", "s1", "--run-id", "s3run", "--resume", "--no-report"])
    assert code == 0
    body2 = c.get_object(Bucket=s3.bucket, Key=results[0])["Body"].read().decode()
    assert body2 == body
    shard = json.loads(c.get_object(Bucket=s3.bucket, Key="audits/summary/run=s3run/shard=0.json")["Body"].read())
    assert shard["inspected_this_session"] == 0 and shard["resumed_from"] == 7
