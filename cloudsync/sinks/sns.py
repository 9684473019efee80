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
from cloudsync.sinks.base import Delivered, DeliveryError, OutboxItem, Sink

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


class SnsSink(Sink):
    name = "sns"
    confirm_immediately = True  # see the module docstring: shrink the republish window

    def __init__(self, data_dir: Path, *, topic_arn: str, client: Any, workers: int = 2) -> None:
        super().__init__(data_dir)
        self.topic_arn, self.client, self.workers = topic_arn, client, workers
        self.fifo = topic_arn.endswith(".fifo")

    def deliver(self, item: OutboxItem) -> Delivered:
        if item.kind != "alert":
            raise DeliveryError(f"{item.idempotency_key}: unknown kind {item.kind!r}", retryable=False)
        p = item.payload
        message = {"dedupe_id": item.idempotency_key, **(p.get("message") or {})}
        attrs = alert_attributes(p)
        args: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            "Message": json.dumps(message, sort_keys=True, separators=(",", ":"), allow_nan=False),
            "MessageAttributes": attrs,
        }
        if p.get("subject"):
            args["Subject"] = str(p["subject"])[:100]
        if self.fifo:
            args["MessageGroupId"] = attrs.get("station", {}).get("StringValue", "station")
            args["MessageDeduplicationId"] = hashlib.sha256(item.idempotency_key.encode()).hexdigest()
        try:
            resp = self.client.publish(**args)
        except Exception as exc:
            raise delivery_error(exc, f"Publish {item.idempotency_key}") from exc
        return Delivered({"message_id": resp.get("MessageId"), "route": attrs["route"]["StringValue"],
                          "dedupe_id": item.idempotency_key})

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
