"""What AWS Batch children take from the run the submitter wrote: calibration profiles
(shipped, hash-checked), the inspection settings of ``--config`` and the image listing.

Same servers as test_aws_batch.py (moto server's simple Batch backend, SeaweedFS, both on
127.0.0.1); each child runs in-process in a data dir of its own - no calibration store, no
record - with ``AWS_BATCH_JOB_ARRAY_INDEX`` set, as Fargate would run it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import STATION, copy_images, result_rows
from test_aws_batch import JOBDEF, QUEUE, _jobs, _upload_images, creds, moto, s3  # noqa: F401 (fixtures)

from station.aws_client import AwsEndpoint
from station.batch.aws_batch import BatchTarget, plan_submission, submit
from station.batch.layout import parse_results_key
from station.batch.models import latest_profile
from station.batch.settings import Requested
from station.cli import main
from station.inspect.decide import DecisionPolicy

# a review band far wider than the default (0.75 / 0.6): most parts go to review
POLICY = {"reject_min_confidence": 0.99, "pass_min_confidence": 0.99}


def _config(tmp_path: Path) -> Path:
    doc = {**STATION, "recipe": {"name": "rb", "decision": POLICY}}
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _s3_rows(s3, prefix: str, run_id: str) -> list[dict]:
    rows = []
    for key in s3.keys(prefix + "results/"):
        if parse_results_key(key).run_id == run_id:
            body = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read().decode()
            rows += [json.loads(line) for line in body.splitlines() if line.strip()]
    return rows


def _child(tmp_path: Path, cmd: list[str], index: int, name: str, *extra: str) -> int:
    with pytest.MonkeyPatch.context() as m:
        m.setenv("AWS_BATCH_JOB_ARRAY_INDEX", str(index))
        return main(["--data-dir", str(tmp_path / name), *cmd, *extra])


def _decide(row: dict, policy: DecisionPolicy) -> str:
    class R:  # the two fields DecisionPolicy.decide reads
        is_anomalous, confidence = row["is_anomalous"], row["confidence"]
    return policy.decide(bool(row["spec_passed"]), R)[0].value


def test_children_check_specs_and_decide_with_the_submitters_config(
        tmp_path, station_data, recorded_images, s3, moto, creds, capsys):
    images = copy_images(recorded_images[:6], tmp_path / "in")
    _upload_images(s3, images, "raw/cfg")
    cfg = _config(tmp_path)
    argv = ["--data-dir", str(station_data), "batch", f"s3://{s3.bucket}/raw/cfg/", "--model", "active",
            "--executor", "aws-batch", "--out", f"s3://{s3.bucket}/batch", "--shards", "2", "--config", str(cfg),
            "--job-queue", QUEUE, "--job-definition", JOBDEF, "--batch-endpoint", moto.endpoint_url,
            "--s3-endpoint", s3.endpoint_url]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    run_id = re.search(r"^run (\S+):", printed, re.M).group(1)
    array_id = re.search(r"inspect job: (\S+)", printed).group(1)
    cmd = _jobs(moto, array_id)[array_id]["container"]["command"]
    assert not {"--recipe", "--station", "--lot", "--profile", "--config", "--no-spec"} & set(cmd)

    run_prefix = "batch/"
    manifest = json.loads(s3.client().get_object(
        Bucket=s3.bucket, Key=f"{run_prefix}summary/run={run_id}/run.json")["Body"].read())
    profile = latest_profile(station_data, "rb")
    assert manifest["settings"]["policy"] == POLICY and manifest["settings"]["station"] == "s1"
    shipped = manifest["settings"]["profiles"]["rb"]
    assert shipped["identity"] == profile.identity and "root" not in shipped  # no path of this machine
    assert s3.keys(f"{run_prefix}{shipped['key']}/") == [f"{run_prefix}{shipped['key']}/{n}"
                                                         for n in ("profile.json", "reference.png")]

    # a child that is told something else than the manifest is refused, writing nothing
    capsys.readouterr()
    assert _child(tmp_path, cmd, 0, "c-conflict", "--no-spec", "--recipe", "other") == 1
    err = capsys.readouterr().err
    assert "other inspection settings" in err and "--recipe 'other'" in err and "--no-spec" in err
    assert not _s3_rows(s3, run_prefix, run_id)

    assert _child(tmp_path, cmd, 0, "c0") == 0 and _child(tmp_path, cmd, 1, "c1") == 0
    rows = _s3_rows(s3, run_prefix, run_id)
    assert sorted(r["part_id"] for r in rows) == sorted(p.stem for p in images)
    submitter, default = DecisionPolicy(**POLICY), DecisionPolicy()
    assert all(r["spec_checked"] and r["calibration_version"] == profile.load().label for r in rows)
    assert all(r["decision"] == _decide(r, submitter) for r in rows)
    assert any(_decide(r, default) != r["decision"] for r in rows)  # the config's policy made a difference
    assert {r["station"] for r in rows} == {"s1"} and {r["recipe"] for r in rows} == {"rb"}

    # the same images and config run locally give the same rows
    assert main(["--data-dir", str(station_data), "batch", str(tmp_path / "in"), "--model", "active",
                 "--config", str(cfg), "--out", str(tmp_path / "local"), "--no-report"]) == 0
    local = {r["part_id"]: r for r in result_rows(tmp_path / "local")}
    for r in rows:
        want = local[r["part_id"]]
        assert (r["decision"], r["reason"], r["spec_passed"], r["calibration_version"]) == (
            want["decision"], want["reason"], want["spec_passed"], want["calibration_version"])
        assert r["score"] == pytest.approx(want["score"])

    # the merge takes the settings from the manifest too
    merge = ["batch-merge", f"s3://{s3.bucket}/{run_prefix}", "--run-id", run_id, "--s3-endpoint", s3.endpoint_url]
    assert main(["--data-dir", str(tmp_path / "merge"), *merge]) == 0
    summary = json.loads(s3.client().get_object(
        Bucket=s3.bucket, Key=f"{run_prefix}summary/run={run_id}/summary.json")["Body"].read())
    assert summary["settings"]["policy"] == POLICY and summary["spec_checked"] == len(images)

    # a shipped profile altered on S3 is refused by a fresh container, before any image
    ref_key = f"{run_prefix}{shipped['key']}/reference.png"
    png = s3.client().get_object(Bucket=s3.bucket, Key=ref_key)["Body"].read()
    s3.client().put_object(Bucket=s3.bucket, Key=ref_key, Body=png[:-8] + b"\0" * 8)
    capsys.readouterr()
    assert _child(tmp_path, cmd, 1, "c1-retry") == 1
    assert "does not match the run manifest" in capsys.readouterr().err


def test_a_recipe_without_profile_is_said_at_submit_and_skipped_by_children(
        tmp_path, station_data, recorded_images, s3, moto, creds):
    _upload_images(s3, copy_images(recorded_images[:2], tmp_path / "in"), "raw/noprof")
    plan = plan_submission([f"s3://{s3.bucket}/raw/noprof/"], "active", out_base=f"s3://{s3.bucket}/batch",
                           data_dir=station_data, s3=creds, s3_endpoint=s3.endpoint_url,
                           requested=Requested(recipe="uncalibrated", station="s1"))
    assert any("spec checks skipped for recipe 'uncalibrated'" in n for n in plan.notes)
    assert plan.manifest["settings"]["profiles"] == {"uncalibrated": None}
    submit(plan, BatchTarget(QUEUE, JOBDEF, AwsEndpoint(endpoint_url=moto.endpoint_url)))
    assert main(["--data-dir", str(tmp_path / "c0"), *plan.child_command]) == 0
    rows = _s3_rows(s3, "batch/", plan.run_id)
    assert len(rows) == 2 and all(r["spec_checked"] is False and r["recipe"] == "uncalibrated" for r in rows)


def test_children_inspect_the_submitters_listing_not_the_prefix_now(
        tmp_path, station_data, recorded_images, s3, moto, creds, capsys):
    images = copy_images(recorded_images[:5], tmp_path / "in")
    uris = _upload_images(s3, images, "raw/grow")
    plan = plan_submission([f"s3://{s3.bucket}/raw/grow/"], "active", out_base=f"s3://{s3.bucket}/batch",
                           data_dir=station_data, s3=creds, s3_endpoint=s3.endpoint_url, shards=2,
                           requested=Requested(recipe="rb", station="s1"))
    submit(plan, BatchTarget(QUEUE, JOBDEF, AwsEndpoint(endpoint_url=moto.endpoint_url)))
    late = copy_images(recorded_images[5:6], tmp_path / "late")[0].rename(tmp_path / "late" / "zz-late.png")
    _upload_images(s3, [late], "raw/grow")  # lands after the submit, before any child lists

    for i in range(2):
        assert _child(tmp_path, plan.child_command, i, f"c{i}") == 0
    rows = _s3_rows(s3, "batch/", plan.run_id)
    assert sorted(r["image"] for r in rows) == sorted(uris)  # every listed image once, the late one by nobody

    # a listing altered after the submit is refused, not trusted
    key = f"batch/summary/run={plan.run_id}/listing.jsonl"
    body = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=body + b'{"uri":"s3://x/y.png","size":1,"etag":"e"}\n')
    capsys.readouterr()
    assert _child(tmp_path, plan.child_command, 0, "c0-again") == 1
    assert "does not match the run manifest" in capsys.readouterr().err
