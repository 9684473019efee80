"""AWS Batch scale-out against moto server (Batch API) and SeaweedFS (S3), both on 127.0.0.1.

moto runs its *simple* Batch backend (``POST /moto-api/config {"batch": {"use_docker":
false}}``): jobs are recorded and marked SUCCEEDED without starting containers. The test
then plays the containers itself: it reads each job's command back with describe_jobs and
runs it in-process with ``AWS_BATCH_JOB_ARRAY_INDEX`` set and a data dir of its own, as
Fargate would, and finally runs the merge job's command.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import copy_images
from servers import start_moto, start_s3

from station.batch.aws_batch import BatchTarget, SubmitError, plan_submission, publish_run, submit
from station.batch.model_uri import ModelUriError, resolve_model_uri, upload_model
from station.batch.models import resolve_model
from station.batch.layout import parse_results_key
from station.batch.s3io import S3Access
from station.batch.settings import Requested
from station.aws_client import AwsEndpoint
from station.cli import main
from station.detect.registry import ModelRegistry

QUEUE, JOBDEF = "linestation-batch", "linestation-batch-job"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_s3(tmp_path_factory.mktemp("weed"), bucket="ls-aws-batch")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = start_moto(tmp_path_factory.mktemp("moto"))
    server.set_config({"batch": {"use_docker": False}})  # record jobs, never start containers
    ec2, iam, batch = server.client("ec2"), server.client("iam"), server.client("batch")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]}
    role = iam.create_role(RoleName="linestation-batch-job", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    service = iam.create_role(RoleName="linestation-batch-service", AssumeRolePolicyDocument=json.dumps(
        {**trust, "Statement": [{**trust["Statement"][0], "Principal": {"Service": "batch.amazonaws.com"}}]}))
    env = batch.create_compute_environment(
        computeEnvironmentName="linestation-fargate", type="MANAGED", state="ENABLED",
        computeResources={"type": "FARGATE", "maxvCpus": 16, "subnets": subnets, "securityGroupIds": [group]},
        serviceRole=service["Role"]["Arn"])  # moto wants one; in AWS the service-linked role is used
    batch.create_job_queue(jobQueueName=QUEUE, state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}])
    batch.register_job_definition(
        jobDefinitionName=JOBDEF, type="container", platformCapabilities=["FARGATE"],
        containerProperties={"image": "linestation-batch:0.1.0", "command": ["--help"], "jobRoleArn": role,
                             "executionRoleArn": role, "resourceRequirements": [
                                 {"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"}]})
    yield server
    server.stop()


@pytest.fixture
def creds(s3, monkeypatch):
    """Both servers take the S3 server's keys (moto accepts any)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX", raising=False)
    return S3Access(AwsEndpoint(endpoint_url=s3.endpoint_url))


def _upload_images(s3, paths: list[Path], prefix: str) -> list[str]:
    c = s3.client()
    for p in paths:
        c.put_object(Bucket=s3.bucket, Key=f"{prefix}/{p.name}", Body=p.read_bytes())
    return [f"s3://{s3.bucket}/{prefix}/{p.name}" for p in paths]


def _jobs(moto, *ids: str) -> dict[str, dict]:
    return {j["jobId"]: j for j in moto.client("batch").describe_jobs(jobs=list(ids))["jobs"]}


def _summary(s3, key: str) -> dict:
    return json.loads(s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read())


def test_submit_array_and_merge_jobs_then_run_them_like_fargate(
        tmp_path, station_data, recorded_images, s3, moto, creds, capsys):
    uris = _upload_images(s3, copy_images(recorded_images[:7], tmp_path / "in"), "raw/lot-7")
    argv = ["--data-dir", str(station_data), "batch", f"s3://{s3.bucket}/raw/lot-7/", "--model", "active",
            "--executor", "aws-batch", "--out", f"s3://{s3.bucket}/batch", "--shards", "3",
            "--job-queue", QUEUE, "--job-definition", JOBDEF, "--batch-endpoint", moto.endpoint_url,
            "--s3-endpoint", s3.endpoint_url, "--recipe", "rb", "--station", "s1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    array_id = re.search(r"inspect job: (\S+)", printed).group(1)
    merge_id = re.search(r"merge job:\s+(\S+)", printed).group(1)
    run_id = re.search(r"^run (\S+):", printed, re.M).group(1)
    assert f"aws batch describe-jobs --jobs {array_id} {merge_id}" in printed
    assert f"linestation batch-merge s3://{s3.bucket}/batch/ --run-id {run_id}" in printed

    # the model went up once, as the registry wrote it
    ref = resolve_model("active", station_data)
    model_prefix = f"models/{ref.model_id}/{ref.model_version}/"
    local_meta = (ref.root / ref.name / "model.json").read_bytes()
    remote_meta = s3.client().get_object(Bucket=s3.bucket, Key=model_prefix + "model.json")["Body"].read()
    assert hashlib.sha256(remote_meta).digest() == hashlib.sha256(local_meta).digest()
    model_uri = f"s3://{s3.bucket}/{model_prefix}"
    out_uri = f"s3://{s3.bucket}/batch/"  # the shared layout, as a local run

    jobs = _jobs(moto, array_id, merge_id)
    array, merge = jobs[array_id], jobs[merge_id]
    assert array["arrayProperties"]["size"] == 3
    assert array["jobQueue"].endswith(QUEUE) and JOBDEF in array["jobDefinition"]
    cmd = array["container"]["command"]
    assert cmd[:2] == ["batch", f"s3://{s3.bucket}/raw/lot-7/"]
    opts = dict(zip(cmd[2::2], cmd[3::2]))
    assert opts["--model"] == model_uri and opts["--out"] == out_uri
    assert opts["--shards"] == "3" and opts["--run-id"] == run_id and "--shard" not in opts
    env = {e["name"]: e["value"] for e in array["container"]["environment"]}
    assert env["LINESTATION_RUN_ID"] == run_id and env["LINESTATION_BATCH_OUT"] == out_uri
    assert merge["dependsOn"] == [{"jobId": array_id}]  # a plain job waits for every child
    assert "arrayProperties" not in merge or not merge["arrayProperties"].get("size")
    assert merge["container"]["command"][:4] == ["batch-merge", out_uri, "--run-id", run_id]

    # play Fargate: each child in a fresh data dir with its array index; merge after two
    # of three shards reports the gap, after all three it is complete
    def child(i: int, monkeypatch=pytest.MonkeyPatch()) -> int:
        with monkeypatch.context() as m:
            m.setenv("AWS_BATCH_JOB_ARRAY_INDEX", str(i))
            return main(["--data-dir", str(tmp_path / f"container-{i}"), *cmd])

    def run_merge() -> int:
        return main(["--data-dir", str(tmp_path / "container-merge"), *merge["container"]["command"]])

    assert child(0) == 0 and child(2) == 0
    assert run_merge() == 1
    partial = _summary(s3, f"batch/summary/run={run_id}/summary.json")
    assert partial["complete"] is False and partial["missing_shards"] == [1]
    assert child(1) == 0
    assert run_merge() == 0
    summary = _summary(s3, f"batch/summary/run={run_id}/summary.json")
    assert summary["complete"] and summary["shards_present"] == [0, 1, 2]
    assert summary["images"] == summary["rows_read"] == len(uris)

    keys = [k for k in s3.keys("batch/results/") if parse_results_key(k).run_id == run_id]
    # the partitions of every local run: one Athena table over batch/results/ covers AWS runs too
    assert {k.rsplit("/", 1)[0] for k in keys} == {f"batch/results/date={opts['--date']}/station=s1/recipe=rb"}
    rows = []
    for k in keys:
        body = s3.client().get_object(Bucket=s3.bucket, Key=k)["Body"].read().decode()
        rows += [json.loads(line) for line in body.splitlines() if line.strip()]
    assert sorted(r["image"] for r in rows) == sorted(uris)  # every image exactly once
    assert {r["shard"] for r in rows} == {0, 1, 2}
    html = s3.client().get_object(Bucket=s3.bucket, Key=f"batch/reports/run={run_id}/report.html")[
        "Body"].read().decode()
    HTMLParser().feed(html)
    assert f"<b>{len(uris)}</b>" in html and "heatmap (recomputed)" in html


def test_bad_submissions_are_refused_before_any_job(tmp_path, station_data, recorded_images, s3, moto, creds):
    batch = moto.client("batch")
    before = {j["jobId"] for s in ("SUCCEEDED", "SUBMITTED", "RUNNABLE")
              for j in batch.list_jobs(jobQueue=QUEUE, jobStatus=s)["jobSummaryList"]}
    base = dict(out_base=f"s3://{s3.bucket}/batch", data_dir=station_data, s3=creds)
    with pytest.raises(SubmitError, match="from S3 only"):
        plan_submission([str(tmp_path)], "active", **base)
    with pytest.raises(SubmitError, match="no images under"):
        plan_submission([f"s3://{s3.bucket}/raw/nothing-here/"], "active", **base)
    _upload_images(s3, copy_images(recorded_images[:2], tmp_path / "in"), "raw/two")
    with pytest.raises(SubmitError, match="more than the 2 image"):
        plan_submission([f"s3://{s3.bucket}/raw/two/"], "active", shards=3, **base)
    with pytest.raises(SubmitError, match="--out"):
        plan_submission([f"s3://{s3.bucket}/raw/two/"], "active", **{**base, "out_base": str(tmp_path)})
    plan = plan_submission([f"s3://{s3.bucket}/raw/two/"], "active", **base)
    assert plan.shards == 1 and plan.images == 2
    with pytest.raises(SubmitError, match="no-such-queue"):
        submit(plan, BatchTarget("no-such-queue", JOBDEF, AwsEndpoint(endpoint_url=moto.endpoint_url)))
    code = main(["--data-dir", str(station_data), "batch", f"s3://{s3.bucket}/raw/two/", "--model", "active",
                 "--executor", "aws-batch", "--out", f"s3://{s3.bucket}/batch", "--s3-endpoint", s3.endpoint_url,
                 "--batch-endpoint", moto.endpoint_url])  # no queue, no definition
    assert code != 0
    after = {j["jobId"] for s in ("SUCCEEDED", "SUBMITTED", "RUNNABLE")
             for j in batch.list_jobs(jobQueue=QUEUE, jobStatus=s)["jobSummaryList"]}
    assert after == before


def test_single_shard_is_a_plain_job(tmp_path, station_data, recorded_images, s3, moto, creds):
    _upload_images(s3, copy_images(recorded_images[:2], tmp_path / "in"), "raw/single")
    plan = plan_submission([f"s3://{s3.bucket}/raw/single/"], "active", out_base=f"s3://{s3.bucket}/batch",
                           data_dir=station_data, s3=creds)
    done = submit(plan, BatchTarget(QUEUE, JOBDEF, AwsEndpoint(endpoint_url=moto.endpoint_url)))
    jobs = _jobs(moto, done.array_job_id, done.merge_job_id)
    assert not (jobs[done.array_job_id].get("arrayProperties") or {}).get("size")
    assert jobs[done.merge_job_id]["dependsOn"] == [{"jobId": done.array_job_id}]
    assert not plan.model_uploaded  # the first test (or an earlier run) put this model there


def test_model_upload_is_idempotent_and_downloads_are_verified(tmp_path, station_data, s3, creds):
    ref = resolve_model("active", station_data)
    base = f"s3://{s3.bucket}/verify"
    loc, uploaded = upload_model(ref.root / ref.name, base, creds)
    assert uploaded and loc.uri == f"{base}/models/{ref.model_id}/{ref.model_version}/"
    assert upload_model(ref.root / ref.name, base, creds) == (loc, False)

    cached = resolve_model_uri(loc.uri, tmp_path / "cache", creds)
    original, copy = ModelRegistry(ref.root).load(ref.name), ModelRegistry(cached.parent).load(cached.name)
    assert copy.model_hash == original.model_hash and copy.model_id == original.model_id

    # a corrupted object on S3 is refused and leaves nothing in the cache
    c = s3.client()
    npz = c.get_object(Bucket=s3.bucket, Key=loc.key("model.npz"))["Body"].read()
    c.put_object(Bucket=s3.bucket, Key=loc.key("model.npz"), Body=npz[:-10] + b"0123456789")
    with pytest.raises(ModelUriError, match="content hash mismatch"):
        resolve_model_uri(loc.uri, tmp_path / "cache2", creds)
    assert not [p for p in (tmp_path / "cache2").rglob("*") if p.is_file()]
    # a different model.json at the same id/version is never overwritten
    c.put_object(Bucket=s3.bucket, Key=loc.key("model.json"), Body=b'{"files": {"model.npz": {"sha256": "00"}}}')
    with pytest.raises(ModelUriError, match="different model.json"):
        upload_model(ref.root / ref.name, base, creds)
    with pytest.raises(ModelUriError, match="a model URI is"):
        resolve_model_uri(f"s3://{s3.bucket}/verify/not-a-model/", tmp_path / "cache3", creds)
    with pytest.raises(ModelUriError, match="no model.json"):
        resolve_model_uri(f"s3://{s3.bucket}/verify/models/missing/1/", tmp_path / "cache3", creds)


def test_retried_child_resumes_and_a_fresh_rerun_is_refused(tmp_path, station_data, recorded_images, s3, creds,
                                                            capsys):
    """AWS Batch retries a failed child in a fresh container (empty staging): it must carry
    on from the shard's uploaded results, not inspect again and overwrite them; a re-run
    without --resume on another machine is refused because the S3 results are seen."""
    _upload_images(s3, copy_images(recorded_images[:4], tmp_path / "in"), "raw/retry")
    plan = plan_submission([f"s3://{s3.bucket}/raw/retry/"], "active", out_base=f"s3://{s3.bucket}/batch",
                           data_dir=station_data, s3=creds, s3_endpoint=s3.endpoint_url,
                           requested=Requested(recipe="rb", station="s1"))
    publish_run(plan)  # what submit() writes before submitting: run.json, listing, profiles
    assert "--resume" in plan.child_command
    first = tmp_path / "attempt-1"
    assert main(["--data-dir", str(first), *plan.child_command]) == 0
    results_prefix = f"batch/results/date={plan.date}/station=s1/recipe=rb/{plan.run_id}-"
    keys = s3.keys(results_prefix)
    bodies = {k: s3.client().get_object(Bucket=s3.bucket, Key=k)["Body"].read() for k in keys}
    assert sum(len(b.splitlines()) for b in bodies.values()) == 4
    shard_key = f"batch/summary/run={plan.run_id}/shard=0.json"

    shutil.rmtree(first)  # the retry: the same command in a fresh container
    assert main(["--data-dir", str(tmp_path / "attempt-2"), *plan.child_command]) == 0
    assert s3.keys(results_prefix) == keys
    assert {k: s3.client().get_object(Bucket=s3.bucket, Key=k)["Body"].read() for k in keys} == bodies
    shard = _summary(s3, shard_key)
    assert shard["inspected_this_session"] == 0 and shard["resumed_from"] == 4 and shard["complete"]

    capsys.readouterr()
    no_resume = [a for a in plan.child_command if a != "--resume"]
    assert main(["--data-dir", str(tmp_path / "other-machine"), *no_resume]) == 1
    err = capsys.readouterr().err
    assert "already has 4 result(s)" in err and "pass --resume" in err
    assert {k: s3.client().get_object(Bucket=s3.bucket, Key=k)["Body"].read() for k in keys} == bodies
