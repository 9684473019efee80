"""The cloud side running for real in moto server on 127.0.0.1: the ASL routes results by
decision, the alert filter policies deliver each decision to its queue, and the Lambda
handlers do their work (S3, Secrets Manager in moto; the MES is a local HTTP server).

moto runs Step Functions executions (``execute_state_machine``) including the SNS, SQS and
DynamoDB service integrations, but it cannot run a Lambda without Docker. The definition
under test is therefore generated from the real ``statemachine.asl.json``: every
``lambda:invoke`` Task becomes a Pass state with the same ResultPath and transitions
(see :func:`without_lambda_tasks`); the handlers themselves are exercised below.
"""
from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest
import requests
import yaml
from mes_servers import TOKEN, MesHttpServer
from moto.server import ThreadedMotoServer

from cloudsync.cloud.lambdas import hold_part, mes_writeback
from station.aws_client import AwsEndpoint, client

CLOUD = Path(__file__).resolve().parents[2] / "cloudsync" / "cloud"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url():
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    requests.post(f"{url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}},
                  timeout=5).raise_for_status()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_ENDPOINT_URL", url)  # the Lambda handlers' plain boto3 clients
        env.setenv("MOTO_PORT", str(port))  # where moto's Step Functions tasks call SNS/SQS/DynamoDB
        yield url
    # moto keeps its config in a process-wide dict: leave it as other tests expect it
    requests.post(f"{url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": False}}, timeout=5)
    server.stop()


def aws(service: str, moto_url: str):
    return client(service, AwsEndpoint(region=REGION, endpoint_url=moto_url))


def without_lambda_tasks(definition: dict) -> dict:
    """The definition with each ``lambda:invoke`` Task replaced by an equivalent Pass state."""
    out = json.loads(json.dumps(definition))
    for name, state in out["States"].items():
        if state.get("Type") == "Task" and state.get("Resource", "").startswith("arn:aws:states:::lambda:"):
            passed = {"Type": "Pass", "Result": {"lambda_task": name}, "ResultPath": state.get("ResultPath", "$")}
            passed.update({k: state[k] for k in ("Next", "End") if k in state})
            out["States"][name] = passed
    return out


def substitute(text: str, values: dict[str, str]) -> str:
    missing = set(re.findall(r"\$\{(\w+)\}", text)) - set(values)
    assert not missing, f"no value for {missing}"
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


@pytest.fixture(scope="module")
def workflow(moto_url):
    """The cloud resources the workflow touches, created in moto, and the state machine."""
    sns, sqs, ddb, sfn = (aws(s, moto_url) for s in ("sns", "sqs", "dynamodb", "stepfunctions"))
    holds_topic = sns.create_topic(Name="holds")["TopicArn"]
    holds_seen = sqs.create_queue(QueueName="holds-seen")["QueueUrl"]  # counts hold notices
    seen_arn = sqs.get_queue_attributes(QueueUrl=holds_seen, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=holds_topic, Protocol="sqs", Endpoint=seen_arn, Attributes={"RawMessageDelivery": "true"})
    review_queue = sqs.create_queue(QueueName="review-work")["QueueUrl"]
    ddb.create_table(TableName="results", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "inspection_id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "inspection_id", "KeyType": "HASH"}])
    values = {"HoldsTopicArn": holds_topic, "ReviewQueueUrl": review_queue, "ResultsTableName": "results",
              "HoldPartFunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:hold-part",
              "MesWritebackFunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:mes-writeback"}
    definition = without_lambda_tasks(json.loads(substitute((CLOUD / "statemachine.asl.json").read_text(), values)))
    arn = sfn.create_state_machine(name="result-workflow", definition=json.dumps(definition),
                                   roleArn="arn:aws:iam::123456789012:role/result-workflow")["stateMachineArn"]
    return {"arn": arn, "sfn": sfn, "sqs": sqs, "ddb": ddb, "holds_seen": holds_seen, "review_queue": review_queue}


def result_input(decision: str, n: int) -> dict:
    verdict = {"pass": "OK", "reject": "NotOK", "review": "NotDecidable", "check_capture": "NotDecidable"}
    rid = f"01JWORKFLOW{decision[:6].upper()}{n:04d}"
    return {"inspection_id": rid, "plant": "p1", "line": "l1", "station": "st1", "recipe": "demo",
            "part_id": f"P-{n}", "lot": "LOT-1", "decision": decision, "verdict": verdict.get(decision, "OK"),
            "score": 0.8, "confidence": 0.9, "finished_at": "2026-11-26T10:00:00.000000Z",
            "result_key": f"results/plant=p1/line=l1/station=st1/date=2026-11-26/{rid}.json",
            "image_key": None, "bucket": "data"}


def run(wf: dict, payload: dict, timeout_s: float = 20) -> tuple[dict, list[str]]:
    sfn = wf["sfn"]
    arn = sfn.start_execution(stateMachineArn=wf["arn"], name=payload["inspection_id"],
                              input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + timeout_s
    while (desc := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not finish"
        time.sleep(0.1)
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    return desc, entered


def drain(sqs, url: str) -> list[dict]:
    out = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                      MessageAttributeNames=["All"]).get("Messages", []):
        out += msgs
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


def test_reject_notifies_holds_records_and_writes_back(workflow):
    payload = result_input("reject", 1)
    desc, entered = run(workflow, payload)
    assert desc["status"] == "SUCCEEDED", desc
    assert entered == ["RouteByDecision", "NotifyHold", "HoldPart", "RecordResult", "MesWriteBack", "Done"]
    notices = drain(workflow["sqs"], workflow["holds_seen"])
    assert [json.loads(m["Body"])["inspection_id"] for m in notices] == [payload["inspection_id"]]
    item = workflow["ddb"].get_item(TableName="results", Key={"inspection_id": {"S": payload["inspection_id"]}})
    assert item["Item"]["decision"] == {"S": "reject"} and item["Item"]["verdict"] == {"S": "NotOK"}
    output = json.loads(desc["output"])
    assert output["notified"]["message_id"] and output["mes"] == {"lambda_task": "MesWriteBack"}


def test_review_goes_to_the_review_queue(workflow):
    payload = result_input("review", 2)
    desc, entered = run(workflow, payload)
    assert desc["status"] == "SUCCEEDED", desc
    assert entered == ["RouteByDecision", "QueueForReview", "RecordResult", "MesWriteBack", "Done"]
    queued = drain(workflow["sqs"], workflow["review_queue"])
    assert [json.loads(m["Body"])["inspection_id"] for m in queued] == [payload["inspection_id"]]
    assert queued[0]["MessageAttributes"]["inspection_id"]["StringValue"] == payload["inspection_id"]
    assert drain(workflow["sqs"], workflow["holds_seen"]) == []


@pytest.mark.parametrize("decision", ["pass", "check_capture"])
def test_pass_and_capture_fault_are_recorded_only(workflow, decision):
    payload = result_input(decision, 3)
    desc, entered = run(workflow, payload)
    assert desc["status"] == "SUCCEEDED", desc
    assert entered == ["RouteByDecision", "RecordResult", "MesWriteBack", "Done"]
    assert drain(workflow["sqs"], workflow["review_queue"]) == []
    assert drain(workflow["sqs"], workflow["holds_seen"]) == []
    item = workflow["ddb"].get_item(TableName="results", Key={"inspection_id": {"S": payload["inspection_id"]}})
    assert item["Item"]["decision"] == {"S": decision}


def test_unknown_decision_fails_the_execution(workflow):
    desc, entered = run(workflow, result_input("maybe", 4))
    assert desc["status"] == "FAILED" and entered == ["RouteByDecision", "UnknownDecision"]


def test_same_execution_name_does_not_run_twice(workflow):
    payload = result_input("review", 5)
    run(workflow, payload)
    with pytest.raises(Exception) as err:
        workflow["sfn"].start_execution(stateMachineArn=workflow["arn"], name=payload["inspection_id"],
                                        input=json.dumps({**payload, "decision": "reject"}))
    assert "ExecutionAlreadyExists" in str(err.value)
    assert len(drain(workflow["sqs"], workflow["review_queue"])) == 1


def test_alert_filter_policies_deliver_each_decision_to_its_queue(moto_url):
    """The template's own subscriptions and filter policies, applied in moto."""
    template = yaml.safe_load((CLOUD / "template.yaml").read_text())
    sns, sqs = aws("sns", moto_url), aws("sqs", moto_url)
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queues = {}
    for name, res in template["Resources"].items():
        if res["Type"] == "AWS::SNS::Subscription" and res["Properties"]["Protocol"] == "sqs":
            p = res["Properties"]
            qname = p["Endpoint"]["Fn::GetAtt"][0]
            url = sqs.create_queue(QueueName=qname)["QueueUrl"]
            qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn, ReturnSubscriptionArn=True,
                          Attributes={"RawMessageDelivery": "true", "FilterPolicyScope": p["FilterPolicyScope"],
                                      "FilterPolicy": json.dumps(p["FilterPolicy"])})
            queues[qname] = url
    routes = {"reject": "immediate", "review": "review", "check_capture": "technician"}
    for decision, route in [*routes.items(), ("reject", "immediate")]:
        # the attributes the station's SNS sink publishes
        attrs = {"decision": decision, "route": route, "station": "st1", "line": "l1", "plant": "p1",
                 "confidence_band": "high"}
        sns.publish(TopicArn=topic, Message=json.dumps({"decision": decision}),
                    MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()})
    got = {q: [json.loads(m["Body"])["decision"] for m in drain(sqs, url)] for q, url in queues.items()}
    assert got == {"ImmediateAlertQueue": ["reject", "reject"], "ReviewAlertQueue": ["review"],
                   "TechnicianAlertQueue": ["check_capture"]}


def test_hold_part_lambda_writes_the_hold_record(moto_url, monkeypatch):
    s3 = aws("s3", moto_url)
    s3.create_bucket(Bucket="data-holds")
    monkeypatch.setenv("DATA_BUCKET", "data-holds")
    monkeypatch.setattr(hold_part, "_s3", None)
    payload = result_input("reject", 6)
    out = hold_part.handler(payload)
    assert out == {"bucket": "data-holds", "key": f"holds/plant=p1/line=l1/station=st1/{payload['inspection_id']}.json"}
    body = json.loads(s3.get_object(Bucket="data-holds", Key=out["key"])["Body"].read())
    assert body["inspection_id"] == payload["inspection_id"] and body["verdict"] == "NotOK"
    with pytest.raises(hold_part.BadInput):
        hold_part.handler({**payload, "inspection_id": "../../etc"})


def test_mes_writeback_lambda_against_a_local_mes(moto_url, monkeypatch):
    secret_arn = aws("secretsmanager", moto_url).create_secret(Name="mes-token", SecretString=TOKEN)["ARN"]
    mes = MesHttpServer()
    try:
        monkeypatch.setenv("MES_URL", mes.url)
        monkeypatch.setenv("MES_AUTH_HEADER", "X-Api-Key")
        monkeypatch.setenv("MES_SECRET_ARN", secret_arn)
        monkeypatch.setenv("MES_TIMEOUT_S", "2")
        monkeypatch.setattr(mes_writeback, "_secret", None)
        payload = result_input("reject", 7)
        out = mes_writeback.handler(payload)
        assert out["status"] == 201 and out["duplicate"] is False and out["disposition"]["action"] == "scrap"
        assert mes.posts[0]["message_id"] == f"{payload['inspection_id']}:mes:result"
        again = mes_writeback.handler(payload)  # Step Functions retried the task
        assert again["duplicate"] is True and len(mes.posts) == 1
        mes.fail_next = [(503, {})]
        with pytest.raises(mes_writeback.MesUnavailable):
            mes_writeback.handler(result_input("pass", 8))
        mes.token = "Bearer rotated"
        with pytest.raises(mes_writeback.MesRejected, match="401"):
            mes_writeback.handler(result_input("pass", 8))
    finally:
        mes.stop()
    with pytest.raises(mes_writeback.MesUnavailable):
        mes_writeback.handler(result_input("pass", 9))  # the MES is gone: retryable
    monkeypatch.setenv("MES_URL", "")  # no cloud-side MES configured: the task is a no-op
    assert mes_writeback.handler(result_input("pass", 10))["skipped"] == "MES_URL is not set"
