"""What the throughput work batches must keep exact: outcomes marked done in batches (a
crash between "sent" and "marked" re-sends, and the re-send is recognised), alerts to a
FIFO topic sent ten to a ``PublishBatch`` (each entry still has its own outcome)."""
from __future__ import annotations

import json
from pathlib import Path

from sync_helpers import (
    kill_after_sending,
    AwsRig,
    assert_exactly_once,
    full_config,
    next_name,
    record_inspections,
    running_sync,
    sync_config,
    wait_drained,
    write_config,
)

from cloudsync.sinks.base import Delivered, DeliveryError, OutboxItem
from cloudsync.sinks.sns import SnsSink
from servers import SNS_THROTTLED, FaultProxy
from station.store.station_store import StationStore



def _rows(data_dir: Path, sink: str) -> list[dict]:
    with StationStore(data_dir, recover=False) as store, store.reader.connect() as conn:
        cur = conn.exec_driver_sql("SELECT * FROM outbox WHERE sink = ? ORDER BY id", (sink,))
        return [dict(zip(cur.keys(), r)) for r in cur.all()]


def test_sigkill_after_send_before_the_batched_mark_resends_idempotently(tmp_path, s3_server, bucket, rig):
    """Every S3 object is sent, none is marked done (the outcome batch is never written),
    the process is SIGKILLed; the next service re-sends them, S3 answers "already there"
    (same sha256 and size), and every count is exact."""
    data = tmp_path / "data"
    record_inspections(data, 12)
    s3_only = sync_config(s3={"endpoint_url": s3_server.endpoint_url, "bucket": bucket, "workers": 4,
                              "access_key_id_env": "LS_TEST_S3_KEY", "secret_access_key_env": "LS_TEST_S3_SECRET"})
    s3_server.client()  # exports the credentials' variables for the child
    cfg_path = write_config(s3_only, tmp_path / "s3-only.yaml")
    n_s3 = len(_rows(data, "s3"))
    lines = kill_after_sending(cfg_path, data, n_s3)
    assert f"buffered {n_s3}" in lines[-1]  # all sent, none marked: the kill hit the window
    assert {r["status"] for r in _rows(data, "s3")} == {"in_flight"}
    assert len(s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])) == n_s3  # they got there

    with running_sync(full_config(s3_server, bucket, rig), data):
        wait_drained(data)
    s3_rows = _rows(data, "s3")
    assert all(r["attempts"] == 2 for r in s3_rows)
    assert all(json.loads(r["delivery_detail"]).get("duplicate") for r in s3_rows)  # recognised, not re-written
    assert_exactly_once(data, s3_server, bucket, rig)


def _alerts(n: int, start: int = 0) -> list[OutboxItem]:
    return [OutboxItem(start + i, f"I{start + i}", "sns", "alert", 1, {
        "subject": f"DEFECT {i}", "message": {"decision": "reject", "confidence": 0.95, "part_id": f"P{i}"},
        "attributes": {"decision": "reject", "station": "s1"}}, f"I{start + i}:sns:alert") for i in range(n)]


def test_ten_alerts_are_one_publish_batch_each_with_its_own_outcome(tmp_path, rig):
    proxy = FaultProxy(rig.moto.port).start()
    try:
        sns = SnsSink(tmp_path, topic_arn=rig.topic_arn, client=_client_via(proxy))
        outcomes = sns.deliver_batch(_alerts(10))
        assert proxy.forwarded == 1  # one request for ten alerts
        assert all(isinstance(o, Delivered) and o.detail["route"] == "immediate" for o in outcomes)
        assert len({o.detail["message_id"] for o in outcomes}) == 10
        got = sorted(json.loads(m["Body"])["dedupe_id"] for m in rig.messages("immediate"))
        assert got == sorted(f"I{i}:sns:alert" for i in range(10))

        # Throttled as a whole (the SDK's one retry too): every entry retryable, none lost or dead.
        proxy.plan(2, SNS_THROTTLED)
        outcomes = sns.deliver_batch(_alerts(10, start=100))
        assert all(isinstance(o, DeliveryError) and o.retryable for o in outcomes), outcomes

        # One bad entry among good ones: a dead letter for it alone, the rest delivered.
        items = _alerts(4, start=200)
        items[2] = OutboxItem(items[2].id, items[2].inspection_id, "sns", "label", 1, items[2].payload,
                              items[2].idempotency_key)
        outcomes = sns.deliver_batch(items)
        assert [type(o).__name__ for o in outcomes] == ["Delivered", "Delivered", "DeliveryError", "Delivered"]
        assert not outcomes[2].retryable and "unknown kind" in str(outcomes[2])
    finally:
        proxy.stop()


def _client_via(proxy: FaultProxy):
    from station.aws_client import AwsEndpoint, client

    return client("sns", AwsEndpoint(endpoint_url=proxy.endpoint_url, access_key_env="LS_TEST_MOTO_KEY",
                                     secret_key_env="LS_TEST_MOTO_SECRET", max_attempts=1))


class FifoRig(AwsRig):
    def messages(self, queue: str = "all") -> list[dict]:
        """Every message, each deleted once read: a FIFO queue hands out no more of a
        message group while one of it is in flight."""
        sqs = self.moto.client("sqs")
        out: list[dict] = []
        while True:
            got = sqs.receive_message(QueueUrl=self.queues[queue], MaxNumberOfMessages=10,
                                      WaitTimeSeconds=0).get("Messages", [])
            if not got:
                return out
            out += got
            sqs.delete_message_batch(QueueUrl=self.queues[queue], Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])


def _fifo_rig(rig: AwsRig) -> AwsRig:
    """The rig's state machine with a FIFO topic and a FIFO queue for every alert."""
    sns, sqs = rig.moto.client("sns"), rig.moto.client("sqs")
    n = next_name()
    topic = sns.create_topic(Name=f"alerts-{n}.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    url = sqs.create_queue(QueueName=f"q{n}-all.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return FifoRig(rig.moto, topic, {"all": url}, rig.state_machine_arn)


def test_alerts_to_a_fifo_topic_drain_in_batches_once_each(tmp_path, s3_server, bucket, rig):
    """Through the engine: 24 alerts (of 40 inspections) to a FIFO topic go out in
    PublishBatch requests, fewer requests than alerts, each alert exactly once, each row
    done with its message id. (A standard topic gets one alert a request, see SnsSink.)"""
    data = tmp_path / "data"
    record_inspections(data, 40)
    fifo = _fifo_rig(rig)
    proxy = FaultProxy(rig.moto.port).start()
    try:
        with running_sync(full_config(s3_server, bucket, fifo, sns_url=proxy.endpoint_url), data):
            wait_drained(data)
    finally:
        proxy.stop()
    alerts = _rows(data, "sns")
    assert len(alerts) == 24
    assert all(json.loads(r["delivery_detail"])["message_id"] for r in alerts)
    assert proxy.forwarded < len(alerts)
    assert_exactly_once(data, s3_server, bucket, fifo)
