"""The SNS sink: alerts routed by decision and confidence through message attributes.

Each alert is published with String message attributes that subscription filter
policies match: ``decision``, ``station``, ``line``, ``plant``, ``confidence_band``
(high / medium / low / none) and ``route``:

| decision      | route      | who                       |
|---------------|------------|---------------------------|
| reject        | immediate  | line lead, reject handling |
| review        | review     | the supervisor review queue |
| check_capture | technician | the station technician     |

The message (JSON) carries ``dedupe_id`` (the outbox idempotency key) so subscribers can
drop a repeat. On a FIFO topic (``.fifo``) the same id is the ``MessageDeduplicationId``
and SNS itself drops repeats within its 5-minute window.

On a FIFO topic alerts go out up to ten at a time (``PublishBatch``: one request instead of
ten, each entry answered on its own, repeats dropped by SNS); on a standard topic one at a
time, which keeps the republish window below at one alert per worker.

Exactly-once, honestly: a standard topic cannot deduplicate. The engine records the
confirmed publish (row ``done``) in its own commit right after SNS answers
(``confirm_immediately``), and a done row is never claimed again. What remains is the
window between SNS's answer and that commit (milliseconds): a crash exactly there
publishes the alert once more on restart, with the same ``dedupe_id``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cloudsync.registry import SinkContext, register_sink
from cloudsync.sinks.aws_common import delivery_error, make_client
from cloudsync.sinks.base import Delivered, DeliveryError, OutboxItem, Outcome, Sink

ROUTES = {"reject": "immediate", "review": "review", "check_capture": "technician"}


def confidence_band(confidence: Any) -> str:
    if confidence is None:
        return "none"
    c = float(confidence)
    return "high" if c >= 0.9 else "medium" if c >= 0.6 else "low"


def alert_attributes(payload: dict[str, Any]) -> dict[str, dict[str, str]]:
    """SNS MessageAttributes for one alert payload (String values, never empty)."""
    message = payload.get("message") or {}
    attrs = dict(payload.get("attributes") or {})
    decision = str(attrs.get("decision") or message.get("decision") or "unknown")
    attrs["decision"] = decision
    attrs["route"] = ROUTES.get(decision, "review")
    attrs["confidence_band"] = confidence_band(message.get("confidence"))
    return {k: {"DataType": "String", "StringValue": str(v)} for k, v in sorted(attrs.items())
            if v not in (None, "")}


BATCH_MAX_BYTES = 200_000  # PublishBatch takes 256 KiB in all; leave room for attributes


class SnsSink(Sink):
    name = "sns"
    confirm_immediately = True  # see the module docstring: shrink the republish window
    batch_size = 1  # a FIFO topic: 10 (see __init__)

    def __init__(self, data_dir: Path, *, topic_arn: str, client: Any, workers: int = 2) -> None:
        super().__init__(data_dir)
        self.topic_arn, self.client, self.workers = topic_arn, client, workers
        self.fifo = topic_arn.endswith(".fifo")
        # PublishBatch (ten alerts a request) only where SNS drops repeats itself: a kill
        # between SNS's answer and our commit re-sends every alert of the requests in
        # flight, which on a standard topic would be up to ten repeats per worker instead
        # of one (the bound the module docstring promises).
        self.batch_size = 10 if self.fifo else 1

    def _message(self, item: OutboxItem) -> dict[str, Any]:
        """The publish arguments of one alert (without TopicArn)."""
        if item.kind != "alert":
            raise DeliveryError(f"{item.idempotency_key}: unknown kind {item.kind!r}", retryable=False)
        p = item.payload
        message = {"dedupe_id": item.idempotency_key, **(p.get("message") or {})}
        try:
            body = json.dumps(message, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DeliveryError(f"{item.idempotency_key}: alert is not JSON: {exc}", retryable=False) from exc
        args: dict[str, Any] = {"Message": body, "MessageAttributes": alert_attributes(p)}
        if p.get("subject"):
            args["Subject"] = str(p["subject"])[:100]
        if self.fifo:
            args["MessageGroupId"] = args["MessageAttributes"].get("station", {}).get("StringValue", "station")
            args["MessageDeduplicationId"] = hashlib.sha256(item.idempotency_key.encode()).hexdigest()
        return args

    def _delivered(self, item: OutboxItem, args: dict[str, Any], message_id: str | None) -> Delivered:
        return Delivered({"message_id": message_id, "route": args["MessageAttributes"]["route"]["StringValue"],
                          "dedupe_id": item.idempotency_key})

    def deliver(self, item: OutboxItem) -> Delivered:
        args = self._message(item)
        try:
            resp = self.client.publish(TopicArn=self.topic_arn, **args)
        except Exception as exc:
            raise delivery_error(exc, f"Publish {item.idempotency_key}") from exc
        return self._delivered(item, args, resp.get("MessageId"))

    def deliver_batch(self, items: list[OutboxItem]) -> list[Outcome]:
        """Up to ten alerts in one ``PublishBatch``; SNS answers per entry (a sender fault
        is a dead letter, anything else is retried). One alert goes through ``Publish``."""
        out: dict[int, Outcome] = {}
        entries: list[tuple[OutboxItem, dict[str, Any]]] = []
        for item in items:
            try:
                entries.append((item, self._message(item)))
            except DeliveryError as exc:
                out[item.id] = exc
        size = 0
        chunk: list[tuple[OutboxItem, dict[str, Any]]] = []
        for entry in entries:
            n = len(entry[1]["Message"]) + len(entry[1].get("Subject", "")) + 1024
            if chunk and (len(chunk) == 10 or size + n > BATCH_MAX_BYTES):
                out.update(self._publish_batch(chunk))
                chunk, size = [], 0
            chunk.append(entry)
            size += n
        if chunk:
            out.update(self._publish_batch(chunk))
        return [out[item.id] for item in items]

    def _publish_batch(self, chunk: list[tuple[OutboxItem, dict[str, Any]]]) -> dict[int, Outcome]:
        if len(chunk) == 1:
            item = chunk[0][0]
            try:
                return {item.id: self.deliver(item)}
            except DeliveryError as exc:
                return {item.id: exc}
        by_id = {str(item.id): (item, args) for item, args in chunk}
        try:
            resp = self.client.publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=[
                {"Id": key, **args} for key, (_item, args) in by_id.items()])
        except Exception as exc:
            err = delivery_error(exc, f"PublishBatch of {len(chunk)} alerts")
            return {item.id: err for item, _args in chunk}
        out: dict[int, Outcome] = {}
        for ok in resp.get("Successful", []):
            item, args = by_id[ok["Id"]]
            out[item.id] = self._delivered(item, args, ok.get("MessageId"))
        for bad in resp.get("Failed", []):
            item, _args = by_id[bad["Id"]]
            out[item.id] = DeliveryError(f"Publish {item.idempotency_key}: {bad.get('Code')}: {bad.get('Message', '')}",
                                         retryable=not bad.get("SenderFault", False))
        for item, _args in chunk:  # an entry SNS did not answer for: not confirmed, so retried
            out.setdefault(item.id, DeliveryError(f"Publish {item.idempotency_key}: no answer in the batch",
                                                  retryable=True))
        return out

    def probe(self) -> None:
        try:
            self.client.get_topic_attributes(TopicArn=self.topic_arn)
        except Exception as exc:
            raise delivery_error(exc, "GetTopicAttributes") from exc

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close:
            close()


@register_sink("sns")
def build(cfg: Any, data_dir: Path, ctx: SinkContext) -> SnsSink | None:
    s = cfg.sync.sns
    if not s.enabled:
        return None
    return SnsSink(data_dir, topic_arn=s.topic_arn, client=make_client("sns", s, s.workers), workers=s.workers)
