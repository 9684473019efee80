"""Helpers of the sync tests: rigs on the moto server, configs, records, drain and count."""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/servers.py, tests/store helpers

from servers import MotoServer, S3Server, wait_for  # noqa: E402
from store.store_helpers import make_record  # noqa: E402

from cloudsync.service import open_service  # noqa: E402
from cloudsync.status import sync_status  # noqa: E402
from station.config import LineStationConfig, parse_config  # noqa: E402
from station.store.station_store import StationStore  # noqa: E402

os.environ.setdefault("LS_TEST_MOTO_KEY", "testing")
os.environ.setdefault("LS_TEST_MOTO_SECRET", "testing")
os.environ.setdefault("LS_TEST_BAD_SECRET", "not-the-secret")
_names = itertools.count(1)
ROUTE_OF = {"reject": "immediate", "review": "review", "check_capture": "technician"}






@dataclass
class AwsRig:
    """One test's topic (with a queue per route and one for everything) and state machine."""

    moto: MotoServer
    topic_arn: str
    queues: dict[str, str]  # route or "all" -> queue URL
    state_machine_arn: str

    def messages(self, queue: str = "all") -> list[dict[str, Any]]:
        """Every message on the queue (received once, kept invisible)."""
        sqs = self.moto.client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            r = sqs.receive_message(QueueUrl=self.queues[queue], MaxNumberOfMessages=10, VisibilityTimeout=600,
                                    MessageAttributeNames=["All"], WaitTimeSeconds=0)
            got = r.get("Messages", [])
            if not got:
                return out
            out += got

    def executions(self) -> list[dict[str, Any]]:
        sfn = self.moto.client("stepfunctions")
        out: list[dict[str, Any]] = []
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=self.state_machine_arn):
            out += page["executions"]
        return out


def make_rig(moto: MotoServer) -> AwsRig:
    n = next(_names)
    sns, sqs, sfn = moto.client("sns"), moto.client("sqs"), moto.client("stepfunctions")
    topic = sns.create_topic(Name=f"alerts-{n}")["TopicArn"]
    queues = {}
    for route in ("immediate", "review", "technician", "all"):
        url = sqs.create_queue(QueueName=f"q{n}-{route}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attrs = {"RawMessageDelivery": "true"}
        if route != "all":
            attrs["FilterPolicy"] = json.dumps({"route": [route]})
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attrs)
        queues[route] = url
    definition = {"StartAt": "Route", "States": {"Route": {"Type": "Pass", "End": True}}}
    sm = sfn.create_state_machine(name=f"inspection-{n}", definition=json.dumps(definition),
                                  roleArn="arn:aws:iam::123456789012:role/linestation-sfn")["stateMachineArn"]
    return AwsRig(moto, topic, queues, sm)






def sync_config(*, s3: dict | None = None, sns: dict | None = None, stepfunctions: dict | None = None,
                camera: dict | None = None, **sync: Any) -> LineStationConfig:
    data = {"schema_version": 1, "station": {"plant": "p1", "line": "l1", "station": "s1", "lot": "LOT-T"},
            "camera": {"type": "sim", "width": 640, "height": 512, "seed": 11, "defect_rate": 0.0,
                       "timeout_s": 0.5},
            "detector": {"type": "variation", "train_images": 30}, "recipe": {"name": "t"},
            "calibration": {"calibration_images": 16},
            "sync": {"backoff_base_s": 0.05, "backoff_max_s": 0.5, "poll_interval_s": 0.05,
                     "probe_interval_s": 0.2, **sync}}
    data["camera"].update(camera or {})
    for name, section in (("s3", s3), ("sns", sns), ("stepfunctions", stepfunctions)):
        if section is not None:
            data["sync"][name] = {"enabled": True, "connect_timeout_s": 1.0, "read_timeout_s": 10.0, **section}
    return parse_config(yaml.safe_dump(data), "sync-test.yaml")


def full_config(s3: S3Server, bucket: str, rig: AwsRig, *, s3_url: str | None = None,
                moto_url: str | None = None, sns_url: str | None = None, secret_env: str = "LS_TEST_S3_SECRET",
                **sync: Any) -> LineStationConfig:
    s3.client()  # exports the S3 credentials' environment variables
    moto = {"endpoint_url": moto_url or rig.moto.endpoint_url, "access_key_id_env": "LS_TEST_MOTO_KEY",
            "secret_access_key_env": "LS_TEST_MOTO_SECRET"}
    return sync_config(
        s3={"endpoint_url": s3_url or s3.endpoint_url, "bucket": bucket, "access_key_id_env": "LS_TEST_S3_KEY",
            "secret_access_key_env": secret_env, "workers": 4},
        sns={**moto, "topic_arn": rig.topic_arn, **({"endpoint_url": sns_url} if sns_url else {})},
        stepfunctions={**moto, "state_machine_arn": rig.state_machine_arn},
        **sync)


def write_config(cfg: LineStationConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
    return path


DECISIONS = ("pass", "reject", "review", "check_capture", "pass")


def record_inspections(data_dir: Path, n: int, *, start: int = 0, size: int = 64) -> list[str]:
    """``n`` inspections (decisions cycling through all four) with small random images."""
    rng = np.random.default_rng(start)
    ids = []
    with StationStore(data_dir, plant="p1", line="l1", station="s1") as store:
        for i in range(start, start + n):
            rec = make_record(i, DECISIONS[i % len(DECISIONS)], station="s1")
            ids.append(store.record_inspection(rec, rng.integers(0, 255, (size, size), dtype=np.uint8)))
    return ids


def expected_counts(data_dir: Path) -> dict[str, int]:
    """Outbox rows per sink (what must be delivered)."""
    with StationStore(data_dir, recover=False) as store, store.reader.connect() as conn:
        return {s: int(n) for s, n in conn.exec_driver_sql("SELECT sink, COUNT(*) FROM outbox GROUP BY sink")}


@contextmanager
def running_sync(cfg: LineStationConfig, data_dir: Path):
    svc = open_service(cfg, data_dir)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop(30)


def wait_drained(data_dir: Path, sinks=("s3", "sns", "stepfunctions"), timeout_s: float = 60.0) -> dict:
    """Wait until the given sinks have nothing pending or in flight; return the status."""
    last: dict = {}

    def drained() -> bool:
        nonlocal last
        last = sync_status(data_dir)
        return all(last["sinks"].get(s, {}).get("pending", 0) == 0 and last["sinks"].get(s, {}).get("in_flight", 0) == 0
                   for s in sinks)

    try:
        wait_for(drained, timeout_s, "the outbox to drain", 0.1)
    except TimeoutError:
        raise AssertionError(f"not drained: {json.dumps(last['sinks'], indent=1)[:3000]}") from None
    return last


def assert_exactly_once(data_dir: Path, s3: S3Server, bucket: str, rig: AwsRig, *, sns_slack: int = 0) -> None:
    """Every outbox row of S3, SNS and Step Functions is done, and the far sides hold each once."""
    with StationStore(data_dir, recover=False) as store, store.reader.connect() as conn:
        rows = conn.exec_driver_sql("SELECT sink, kind, status, payload, idempotency_key FROM outbox "
                                    "WHERE sink IN ('s3','sns','stepfunctions')").all()
    assert {r[2] for r in rows} == {"done"}, {r[2] for r in rows}
    s3_keys = sorted(json.loads(r[3])["key"] for r in rows if r[0] == "s3")
    c = s3.client()
    listed = sorted(o["Key"] for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                    for o in page.get("Contents", []))
    assert listed == s3_keys
    names = sorted(json.loads(r[3])["name"] for r in rows if r[0] == "stepfunctions")
    assert sorted(e["name"] for e in rig.executions()) == names
    alerts = sorted(r[4] for r in rows if r[0] == "sns")
    got = [json.loads(m["Body"])["dedupe_id"] for m in rig.messages("all")]
    assert sorted(set(got)) == alerts  # nothing lost
    assert len(got) - len(alerts) <= sns_slack, f"{len(got) - len(alerts)} alerts published twice"


def kill_after_sending(cfg_path: Path, data_dir: Path, n: int) -> list[str]:
    """Run tests/cloudsync/unflushed_sync.py (a sync that sends but never marks done) and
    SIGKILL it once it has sent ``n`` items: the kill lands between send and mark-done.
    Returns the lines it printed."""
    here = Path(__file__).resolve().parent
    child = subprocess.Popen([sys.executable, str(here / "unflushed_sync.py"), str(cfg_path), str(data_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=here)
    lines: list[str] = []
    try:
        for line in child.stdout:  # bounded: the child prints every 50 ms
            lines.append(line)
            if line.startswith(f"sent {n} "):
                break
            assert len(lines) < 1200, "".join(lines[-20:])  # ~60 s
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    return lines


def wait_until(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    wait_for(predicate, timeout_s, what, 0.05)


def now() -> float:
    return time.monotonic()


def next_name() -> int:
    return next(_names)
