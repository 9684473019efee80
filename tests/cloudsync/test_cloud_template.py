"""The CloudFormation template: cfn-lint clean, least-privilege IAM, wired to the ASL file."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from cfnlint.api import lint, lint_file

CLOUD = Path(__file__).resolve().parents[2] / "cloudsync" / "cloud"
TEMPLATE = CLOUD / "template.yaml"
ASL = CLOUD / "statemachine.asl.json"


@pytest.fixture(scope="module")
def template() -> dict:
    # long-form intrinsics ("Fn::Sub", "Ref") keep the template plain YAML
    return yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))


def _errors(matches) -> list[str]:
    return [f"{m.rule.id} {m.linenumber}: {m.message}" for m in matches if m.rule.severity == "error"]


def test_cfn_lint_finds_no_errors():
    matches = lint_file(TEMPLATE)
    assert _errors(matches) == []
    assert [f"{m.rule.id}: {m.message}" for m in matches] == []  # no warnings either


def test_cfn_lint_would_catch_a_broken_template():
    broken = TEMPLATE.read_text(encoding="utf-8").replace("Runtime: python3.12", "Runtime: python2.1", 1)
    assert any(e.startswith("E3030") for e in _errors(lint(broken)))


def _statements(node, where=""):
    """Every IAM statement anywhere in the template (roles, managed and resource policies)."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield where, node
        for k, v in node.items():
            yield from _statements(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _statements(v, f"{where}/{i}")


def test_allow_statements_are_least_privilege(template):
    allows = [(w, s) for w, s in _statements(template["Resources"]) if s["Effect"] == "Allow"]
    assert len(allows) >= 15
    for where, stmt in allows:
        assert "NotAction" not in stmt and "NotResource" not in stmt, where
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        assert all("*" not in a for a in actions), f"{where}: wildcard action {actions}"
        if actions == ["sts:AssumeRole"]:
            continue  # trust policies name a service principal, not a resource
        resources = stmt.get("Resource")
        assert resources not in (None, "*"), f"{where}: unscoped resource"
        if isinstance(resources, list):
            assert "*" not in resources, where


def test_workflow_substitutions_match_the_asl_placeholders(template):
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL.read_text(encoding="utf-8")))
    subs = template["Resources"]["ResultWorkflow"]["Properties"]["DefinitionSubstitutions"]
    assert placeholders == set(subs)
    json.loads(ASL.read_text(encoding="utf-8"))  # the file itself is valid JSON


def test_alert_subscriptions_route_by_decision(template):
    res = template["Resources"]
    routes = {}
    for name, r in res.items():
        if r["Type"] == "AWS::SNS::Subscription" and r["Properties"]["Protocol"] == "sqs":
            p = r["Properties"]
            assert p["TopicArn"] == {"Ref": "AlertTopic"} and p["FilterPolicyScope"] == "MessageAttributes"
            routes[tuple(p["FilterPolicy"]["decision"])] = p["Endpoint"]["Fn::GetAtt"][0]
    assert routes == {("reject",): "ImmediateAlertQueue", ("review",): "ReviewAlertQueue",
                      ("check_capture",): "TechnicianAlertQueue"}


def test_bucket_is_private_versioned_encrypted_with_optional_audit_lock(template):
    props = template["Resources"]["DataBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == {"Fn::If": ["UseKms", "aws:kms", "AES256"]}
    assert props["ObjectLockEnabled"]["Fn::If"][0] == "LockAudit"
    rules = {r["Id"] for r in props["LifecycleConfiguration"]["Rules"]}
    assert {"raw-images-tiering", "abort-incomplete-multipart"} <= rules
    lock_stmt = template["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][1]
    assert lock_stmt["Fn::If"][1]["Resource"] == {"Fn::Sub": "${DataBucket.Arn}/audit/*"}
