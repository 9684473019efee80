"""The one interface every sink implements, and the typed outcome of a delivery.

A sink receives one outbox row at a time (``OutboxItem``: the row's columns; the payload
is self-contained, see ``station/store/outbox.py``) and either confirms delivery or raises
a :class:`DeliveryError` saying whether a retry can help. Sinks must be idempotent: a
repeated delivery of the same ``idempotency_key`` (after a crash between "sent" and
"marked done") must not produce a second object, execution, message or MES post.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OutboxItem:
    id: int
    inspection_id: str | None
    sink: str
    kind: str
    priority: int
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int = 0


@dataclass(frozen=True)
class Delivered:
    """A confirmed delivery. ``detail`` is recorded with the row (e.g. the MES disposition,
    the S3 ETag / version id, the execution ARN); ``duplicate`` when the sink found the
    item already delivered (which counts as delivered)."""

    detail: dict[str, Any] = field(default_factory=dict)
    duplicate: bool = False


class DeliveryError(Exception):
    """Delivery failed. ``retryable``: the same call may succeed later (network, 5xx,
    throttling); otherwise the row is parked as a dead letter with this message."""

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


Outcome = Delivered | DeliveryError  # one item's result in a batch


class Sink(abc.ABC):
    """A destination for outbox rows of one ``name`` (the outbox ``sink`` column).

    ``batch_size`` > 1: the service hands the sink up to that many rows at once through
    :meth:`deliver_batch` (an API that takes several messages in one call, e.g. SNS
    ``PublishBatch``); each row still gets its own outcome.
    """

    name: str
    batch_size: int = 1

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)  # image files' ``local_path`` is relative to it

    @abc.abstractmethod
    def deliver(self, item: OutboxItem) -> Delivered:
        """Deliver one item or raise DeliveryError. Must be safe to call again for the same item."""

    def deliver_batch(self, items: list[OutboxItem]) -> list[Outcome]:
        """One outcome per item, in order. The default delivers them one by one."""
        out: list[Outcome] = []
        for item in items:
            try:
                out.append(self.deliver(item))
            except DeliveryError as exc:
                out.append(exc)
        return out

    def probe(self) -> None:
        """Cheap reachability check for the circuit state; raise DeliveryError when down."""

    def close(self) -> None:
        """Release connections."""
