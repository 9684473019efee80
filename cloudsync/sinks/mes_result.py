"""What an MES transport receives: the result in OPC 40001-101 terms, and the transport seam.

The outbox row's payload (``station/store/outbox.py``) carries the station's own names;
OPC 40100 (machine vision) / OPC 40001-101 (machinery result) name the same facts
``ResultId``, ``PartId``, ``ResultState`` and ``ResultEvaluation`` (OK / NotOK /
NotDecidable). Both transports use :func:`opc_result` so REST and OPC UA report the same
thing.
"""
from __future__ import annotations

import abc
from datetime import datetime, timezone
from typing import Any

from cloudsync.sinks.base import Delivered, DeliveryError

# OPC 40001-101 ResultState: 1 = completed (the station only reports finished results).
RESULT_STATE_COMPLETED = 1
# OPC 40001-101 ResultEvaluationEnum, for MES nodes typed as integers.
VERDICT_CODES = {"OK": 1, "NotOK": 2, "NotDecidable": 3}


def opc_result(payload: dict[str, Any]) -> dict[str, Any]:
    """The OPC-style result fields of one MES outbox payload.

    Raises a permanent DeliveryError when the payload lacks what every MES needs (a
    retry cannot add a missing field).
    """
    missing = [k for k in ("message_id", "verdict") if not payload.get(k)]
    if missing:
        raise DeliveryError(f"MES payload lacks {', '.join(missing)}", retryable=False)
    verdict = payload["verdict"]
    if verdict not in VERDICT_CODES:
        raise DeliveryError(f"MES payload has verdict {verdict!r}; expected OK, NotOK or NotDecidable",
                            retryable=False)
    when = payload.get("finished_at") or payload.get("started_at")
    return {
        "ResultId": payload["message_id"],
        "PartId": payload.get("part_id") or "",
        "State": RESULT_STATE_COMPLETED,
        "Verdict": verdict,
        "Timestamp": _utc(when),
    }


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise DeliveryError(f"MES payload has an unreadable timestamp {value!r}", retryable=False) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise DeliveryError("MES payload has no finished_at/started_at timestamp", retryable=False)


class MesTransport(abc.ABC):
    """One way to reach the MES (REST, OPC UA). ``send`` must be safe to repeat for a key."""

    name: str

    @abc.abstractmethod
    def send(self, payload: dict[str, Any]) -> Delivered:
        """Deliver one result; ``detail["disposition"]`` is what the MES answered."""

    def probe(self) -> None:
        """Raise DeliveryError when the MES cannot be reached."""

    def close(self) -> None:
        """Release connections and threads."""
