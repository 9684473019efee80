"""The Step Functions sink: one workflow execution per inspection.

The execution name is the inspection id, so a retry can never start a second workflow:
Step Functions answers a repeated ``StartExecution`` with the same name and input either
with the same execution (still running) or ``ExecutionAlreadyExists``; the sink then
reads that execution back and counts it as delivered when its input is ours. An
execution of that name with a *different* input is a permanent error (dead letter):
something else used the name and a person must look.

The input is the outbox payload's summary (verdict, decision, confidence, part, S3 keys)
plus the bucket, serialised with sorted keys so every attempt sends identical bytes.
The outbox row ``requires`` the S3 rows of the inspection: the workflow reads them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudsync.registry import SinkContext, register_sink
from cloudsync.sinks.aws_common import delivery_error, error_code, make_client
from cloudsync.sinks.base import Delivered, DeliveryError, OutboxItem, Sink


def execution_input(payload: dict[str, Any], bucket: str | None) -> str:
    data = dict(payload.get("input") or {})
    if bucket and "bucket" not in data:
        data["bucket"] = bucket
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def execution_arn(state_machine_arn: str, name: str) -> str:
    # arn:aws:states:<region>:<account>:stateMachine:<sm> -> ...:execution:<sm>:<name>
    head, _, sm = state_machine_arn.rpartition(":stateMachine:")
    return f"{head}:execution:{sm}:{name}"


class StepFunctionsSink(Sink):
    name = "stepfunctions"

    def __init__(self, data_dir: Path, *, state_machine_arn: str, client: Any, bucket: str | None = None,
                 workers: int = 2) -> None:
        super().__init__(data_dir)
        self.arn, self.client, self.bucket, self.workers = state_machine_arn, client, bucket, workers

    def deliver(self, item: OutboxItem) -> Delivered:
        if item.kind != "start_execution":
            raise DeliveryError(f"{item.idempotency_key}: unknown kind {item.kind!r}", retryable=False)
        name = str(item.payload.get("name") or item.inspection_id or "")
        if not name:
            raise DeliveryError(f"{item.idempotency_key}: no execution name", retryable=False)
        body = execution_input(item.payload, self.bucket)
        if item.attempts > 1:  # an earlier attempt may have started it: look before starting
            try:
                return self._already_started(name, body)
            except DeliveryError as exc:
                if "ExecutionDoesNotExist" not in str(exc):
                    raise
        try:
            resp = self.client.start_execution(stateMachineArn=self.arn, name=name, input=body)
        except Exception as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                return self._already_started(name, body)
            raise delivery_error(exc, f"StartExecution {name}") from exc
        return Delivered({"execution_arn": resp["executionArn"], "started_at": str(resp.get("startDate", ""))})

    def _already_started(self, name: str, body: str) -> Delivered:
        arn = execution_arn(self.arn, name)
        try:
            desc = self.client.describe_execution(executionArn=arn)
        except Exception as exc:
            raise delivery_error(exc, f"DescribeExecution {name}") from exc
        try:
            same = json.loads(desc.get("input") or "null") == json.loads(body)
        except ValueError:
            same = False
        if not same:
            raise DeliveryError(f"execution {name} already exists with a different input", retryable=False)
        return Delivered({"execution_arn": arn, "status": desc.get("status")}, duplicate=True)

    def probe(self) -> None:
        try:
            self.client.describe_state_machine(stateMachineArn=self.arn)
        except Exception as exc:
            raise delivery_error(exc, "DescribeStateMachine") from exc

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close:
            close()


@register_sink("stepfunctions")
def build(cfg: Any, data_dir: Path, ctx: SinkContext) -> StepFunctionsSink | None:
    s = cfg.sync.stepfunctions
    if not s.enabled:
        return None
    bucket = cfg.sync.s3.bucket or None
    return StepFunctionsSink(data_dir, state_machine_arn=s.state_machine_arn, bucket=bucket,
                             client=make_client("stepfunctions", s, s.workers), workers=s.workers)
