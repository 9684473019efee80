"""The AWS Batch part of cloudsync/cloud/template.yaml (cfn-lint runs in tests/cloudsync):
Fargate resources, least-privilege job role, and agreement with what the submitter writes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from station.batch.aws_batch import out_uri
from station.batch.layout import (
    REPORTS_DIR,
    RESULTS_DIR,
    SUMMARY_DIR,
    report_key,
    results_key,
    run_listing_key,
    run_manifest_key,
    run_profile_key,
    shard_summary_key,
    summary_key,
)
from station.batch.model_uri import model_location

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cloudsync" / "cloud" / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))


def _subs(value) -> str:
    return value["Fn::Sub"] if isinstance(value, dict) else value


def test_batch_resources_exist_only_with_an_image(template):
    res = template["Resources"]
    batch = {n: r for n, r in res.items() if n.startswith("Batch")}
    assert {"BatchComputeEnvironment", "BatchJobQueue", "BatchJobDefinition", "BatchJobRole",
            "BatchExecutionRole", "BatchLogGroup"} <= set(batch)
    assert all(r.get("Condition") == "EnableBatch" for r in batch.values())
    assert template["Conditions"]["EnableBatch"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "BatchContainerImage"}, ""]}]}
    for out in ("BatchJobQueueArn", "BatchJobDefinitionArn"):
        assert template["Outputs"][out]["Condition"] == "EnableBatch"


def test_fargate_compute_queue_and_job_definition(template):
    res = template["Resources"]
    ce = res["BatchComputeEnvironment"]["Properties"]
    assert ce["Type"] == "MANAGED" and ce["ComputeResources"]["Type"] == "FARGATE"
    assert ce["ComputeResources"]["Subnets"] == {"Ref": "BatchSubnetIds"}
    queue = res["BatchJobQueue"]["Properties"]
    assert queue["ComputeEnvironmentOrder"] == [{"Order": 1, "ComputeEnvironment": {"Ref": "BatchComputeEnvironment"}}]
    jd = res["BatchJobDefinition"]["Properties"]
    assert jd["Type"] == "container" and jd["PlatformCapabilities"] == ["FARGATE"]
    c = jd["ContainerProperties"]
    assert c["Image"] == {"Ref": "BatchContainerImage"}
    assert {r["Type"] for r in c["ResourceRequirements"]} == {"VCPU", "MEMORY"}
    assert c["ExecutionRoleArn"] == {"Fn::GetAtt": ["BatchExecutionRole", "Arn"]}
    assert c["JobRoleArn"] == {"Fn::GetAtt": ["BatchJobRole", "Arn"]}
    logs = c["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs" and logs["Options"]["awslogs-group"] == {"Ref": "BatchLogGroup"}
    assert "Entrypoint" not in c  # the image's ENTRYPOINT ["linestation"] runs every command
    # the log group the submitter tells people to tail
    assert res["BatchLogGroup"]["Properties"]["LogGroupName"] == "/linestation/batch"


def test_job_role_is_least_privilege(template):
    role = template["Resources"]["BatchJobRole"]["Properties"]
    assert [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]] == [
        {"Service": "ecs-tasks.amazonaws.com"}]
    assert "ManagedPolicyArns" not in role
    grants: dict[str, list[str]] = {}
    conditions = {}
    for policy in role["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in st:  # the KMS grant, only with a customer key
                cond, st, _ = st["Fn::If"]
                assert cond == "UseKms"
            assert st["Effect"] == "Allow"
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for a in actions:
                grants.setdefault(a, []).extend(json.dumps(r, sort_keys=True) for r in resources)
                if "Condition" in st:
                    conditions[a] = st["Condition"]
    assert set(grants) == {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "kms:GenerateDataKey", "kms:Decrypt"}
    sub = lambda text: json.dumps({"Fn::Sub": text}, sort_keys=True)  # noqa: E731
    out = [f"${{BatchOutPrefix}}{d}/*" for d in (RESULTS_DIR, SUMMARY_DIR, REPORTS_DIR)]
    assert sorted(grants["s3:GetObject"]) == sorted([sub("${DataBucket.Arn}/${BatchInputPrefix}*"),
                                                     sub("${DataBucket.Arn}/models/*"),
                                                     *(sub("${DataBucket.Arn}/" + p) for p in out[:2])])
    prefixes = conditions["s3:ListBucket"]["StringLike"]["s3:prefix"]
    assert [_subs(p) for p in prefixes] == ["${BatchInputPrefix}*", *out[:2]]
    # writes: what children and batch-merge put, never what the submitter published for the run
    base = template["Parameters"]["BatchOutPrefix"]["Default"]
    may_put = [_iam_pattern(_subs(json.loads(r)).replace("${DataBucket.Arn}/", "").replace("${BatchOutPrefix}", base))
               for r in grants["s3:PutObject"]]
    allowed = lambda key: any(p.match(base + key) for p in may_put)  # noqa: E731
    written = [results_key("batch-1", 3, date="2026-11-27", station="s1", recipe="rb"),  # child: rows
               shard_summary_key("batch-1", 3), summary_key("batch-1"),  # child; batch-merge
               report_key("batch-1")]  # batch-merge
    assert all(allowed(k) for k in written), [k for k in written if not allowed(k)]
    published = [run_manifest_key("batch-1"), run_listing_key("batch-1"),
                 *(f"{run_profile_key('batch-1', 'SIM-0001', 'rb', 1)}/{n}" for n in ("profile.json", "reference.png")),
                 "reports/run=batch-1/evil.js", "results/date=2026-11-27/notes.txt"]
    assert not any(allowed(k) for k in published), [k for k in published if allowed(k)]


def _iam_pattern(resource: str) -> re.Pattern:
    """An IAM resource pattern as a regex: ``*`` matches any run of characters, ``/`` too."""
    return re.compile("^" + ".*".join(re.escape(part) for part in resource.split("*")) + "$")


def test_submitter_writes_where_the_role_allows(template):
    """Runs go into the shared layout under BatchOutPrefix and models under models/: the
    folders the IAM grants name."""
    base = template["Parameters"]["BatchOutPrefix"]["Default"]
    out = out_uri("s3://plant-data/" + base.rstrip("/"))
    assert out == f"s3://plant-data/{base}"
    for key in (results_key("batch-1", 0, date="2026-11-27", station="s1", recipe="rb"), run_manifest_key("batch-1"),
                run_listing_key("batch-1"), run_profile_key("batch-1", "SIM-0001", "rb", 1),
                shard_summary_key("batch-1", 0), summary_key("batch-1"), report_key("batch-1")):
        assert key.split("/", 1)[0] in (RESULTS_DIR, SUMMARY_DIR, REPORTS_DIR), key
    assert model_location("s3://plant-data", "m1", "3").prefix.startswith("models/")
    assert template["Parameters"]["BatchInputPrefix"]["Default"] == "raw/"  # where stations upload images
