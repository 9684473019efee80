"""S3 uploads that fail during a run, through a FaultProxy in front of SeaweedFS (127.0.0.1).

A failed periodic upload is logged and retried at the next interval (the rows are on disk);
a failed final upload stops the run with a clear error and the rows staged, and the same
command with --resume uploads them."""
from __future__ import annotations

import io
import json

import pytest
from conftest import copy_images
from servers import S3_INTERNAL, FaultProxy, start_s3

from station.aws_client import AwsEndpoint
from station.batch.models import resolve_model
from station.batch.run import BatchError, BatchOptions, run_batch


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_s3(tmp_path_factory.mktemp("weed"), bucket="ls-batch-upload")
    yield server
    server.stop()


@pytest.fixture
def link(s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    proxy = FaultProxy(s3.s3_port).start()
    yield proxy
    proxy.stop()


class ArmOnStart(io.StringIO):
    """stderr of the run: when the run announces its images (the last line before the first
    inspection), the proxy starts failing the next ``n`` requests."""

    def __init__(self, proxy: FaultProxy, n: int) -> None:
        super().__init__()
        self.proxy, self.n, self.armed = proxy, n, False

    def write(self, text: str) -> int:
        if not self.armed and "already done" in text:
            self.proxy.plan(self.n, S3_INTERNAL)
            self.armed = True
        return super().write(text)


def _opts(tmp_path, station_data, proxy, bucket: str, run_id: str, **kw) -> BatchOptions:
    """A run of tmp_path/in with its own data dir (the station's model by directory), S3 via the proxy."""
    ref = resolve_model("active", station_data)
    return BatchOptions(inputs=[str(tmp_path / "in")], model=str(ref.root / ref.name), data_dir=tmp_path / "data",
                        out=f"s3://{bucket}/out", run_id=run_id, recipe="rb", station="s1", no_spec=True,
                        report=False, s3=AwsEndpoint(endpoint_url=proxy.endpoint_url, max_attempts=0), **kw)


def _rows(s3, run_id: str) -> list[dict]:
    rows = []
    for key in s3.keys("out/results/"):
        if run_id in key:
            body = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read().decode()
            rows += [json.loads(line) for line in body.splitlines() if line.strip()]
    return rows


def test_failed_periodic_uploads_are_retried_and_the_run_completes(tmp_path, station_data, recorded_images, s3, link):
    images = copy_images(recorded_images[:6], tmp_path / "in")
    err = ArmOnStart(link, 3)  # the first three periodic uploads fail (one PUT each, no SDK retry)
    result = run_batch(_opts(tmp_path, station_data, link, s3.bucket, "periodic", upload_every_s=0.0, stderr=err))
    assert result.exit_code == 0 and result.summary["complete"]
    assert link.faulted == 3
    assert err.getvalue().count("upload failed, retrying") == 3
    assert sorted(r["image"] for r in _rows(s3, "periodic")) == sorted(str(p) for p in images)


def test_failed_final_upload_is_an_error_and_resume_uploads(tmp_path, station_data, recorded_images, s3, link):
    images = copy_images(recorded_images[:3], tmp_path / "in")
    err = ArmOnStart(link, 1000)  # S3 down from the first inspection on (no periodic upload due)
    with pytest.raises(BatchError, match=r"results are written in .* upload to s3://.* failed .*--resume"):
        run_batch(_opts(tmp_path, station_data, link, s3.bucket, "final", stderr=err))
    assert _rows(s3, "final") == []
    link.clear()
    result = run_batch(_opts(tmp_path, station_data, link, s3.bucket, "final", resume=True, stderr=io.StringIO()))
    assert result.exit_code == 0 and result.summary["inspected_this_session"] == 0
    assert sorted(r["image"] for r in _rows(s3, "final")) == sorted(str(p) for p in images)

