"""Claiming an S3 run's manifest on a real S3-compatible server (SeaweedFS on 127.0.0.1):
only "no such key" means "no run yet"; S3 decides who creates ``run.json`` (a put only if
the key is new, HTTP 412 otherwise), and whoever loses reads the winner's."""
from __future__ import annotations

import json
import threading

import pytest
from conftest import copy_images
from servers import S3Server

from station.aws_client import AwsEndpoint
from station.batch.layout import OutLocation, run_manifest_key
from station.batch.output import RunOutput
from station.batch.s3io import S3Access, S3AccessError
from station.cli import main

WRITER = {"name": "writer", "credentials": [{"accessKey": "AKIDWRITEONLY", "secretKey": "write-only-secret"}],
          "actions": ["Write", "List"]}  # may put, may not get: every read fails with 403


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("weed"), bucket="ls-claim", extra_identities=[WRITER]).start()
    yield server
    server.stop()


def _access(s3, monkeypatch, key="LS_CLAIM_KEY", secret="LS_CLAIM_SECRET", who=None):
    ident = who or {"accessKey": s3.access_key, "secretKey": s3.secret_key}
    monkeypatch.setenv(key, ident["accessKey"])
    monkeypatch.setenv(secret, ident["secretKey"])
    return S3Access(AwsEndpoint(endpoint_url=s3.endpoint_url, access_key_env=key, secret_key_env=secret,
                                max_attempts=1))


def _output(s3, access, data_dir, run_id, prefix="claims"):
    out = RunOutput(OutLocation.parse(f"s3://{s3.bucket}/{prefix}"), data_dir, access)
    out.bind(run_id)
    return out


def _manifest(s3, key):
    return json.loads(s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read())


def test_unreadable_manifest_is_an_error_not_a_new_run(tmp_path, s3, station_data, recorded_images, monkeypatch):
    submitted = {"run_id": "denied", "shards": 1, "note": "the submitter's"}
    key = f"audits/{run_manifest_key('denied')}"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=json.dumps(submitted).encode())
    copy_images(recorded_images[:2], tmp_path / "in")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", WRITER["credentials"][0]["accessKey"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WRITER["credentials"][0]["secretKey"])
    code = main(["--data-dir", str(station_data), "batch", str(tmp_path / "in"), "--model", "active", "--out", f"s3://{s3.bucket}/audits", "--s3-endpoint",
                 s3.endpoint_url, "--run-id", "denied", "--no-report"])
    assert code == 1
    assert _manifest(s3, key) == submitted  # before: the 403 read was "no run", and the PUT replaced it
    assert not [k for k in s3.keys("audits/results/")]


def test_unreadable_manifest_raises_naming_the_answer(tmp_path, s3, monkeypatch):
    key = f"claims/{run_manifest_key('denied2')}"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b'{"run_id": "denied2"}')
    writer = _access(s3, monkeypatch, who=WRITER["credentials"][0])
    with pytest.raises(S3AccessError, match="AccessDenied"):
        _output(s3, writer, tmp_path / "a", "denied2").claim_manifest("denied2", {"run_id": "denied2", "mine": 1})
    assert _manifest(s3, key) == {"run_id": "denied2"}


def test_conditional_put_loser_takes_the_winners_manifest(tmp_path, s3, monkeypatch):
    access = _access(s3, monkeypatch)
    a, b = _output(s3, access, tmp_path / "a", "won"), _output(s3, access, tmp_path / "b", "won")
    assert a.claim_manifest("won", {"run_id": "won", "by": "a"}) == {"run_id": "won", "by": "a"}
    # b read "no manifest" before a's put landed: its own create is refused with 412
    assert b._claim_on_s3("won", {"run_id": "won", "by": "b"}) == {"run_id": "won", "by": "a"}
    assert _manifest(s3, f"claims/{run_manifest_key('won')}") == {"run_id": "won", "by": "a"}
    assert json.loads((b.root / run_manifest_key("won")).read_text()) == {"run_id": "won", "by": "a"}


def test_machines_racing_to_claim_agree_on_one_manifest(tmp_path, s3, monkeypatch):
    access = [_access(s3, monkeypatch) for _ in range(4)]  # one client per "machine"
    outs = [_output(s3, access[i], tmp_path / f"m{i}", "race") for i in range(4)]
    start, got = threading.Barrier(4), [None] * 4

    def claim(i):
        start.wait(10)
        got[i] = outs[i].claim_manifest("race", {"run_id": "race", "by": i})

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winner = _manifest(s3, f"claims/{run_manifest_key('race')}")
    assert got == [winner] * 4
