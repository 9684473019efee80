"""Lambda (state ``HoldPart``): put a rejected part on hold.

Writes ``holds/plant=../line=../station=../<inspection_id>.json`` into the data bucket,
next to the part's image and result keys (and an X-ray part's original file), so quality
tooling (and Athena) can list what is held and why. The key is the inspection id, so a
retried task rewrites the same hold.
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from typing import Any

import boto3

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_s3 = None  # created on first use and reused while the Lambda container lives


class BadInput(Exception):
    """The execution input lacks what a hold needs (Step Functions sees the error name)."""


def _client():
    global _s3
    if _s3 is None:
        _s3 = boto3.client("s3")
    return _s3


def _part(value: Any) -> str:
    return _UNSAFE.sub("_", str(value or "")) or "_"


def hold_key(event: dict[str, Any]) -> str:
    rid = event.get("inspection_id")
    if not rid or not isinstance(rid, str) or _UNSAFE.search(rid):
        raise BadInput(f"inspection_id missing or not a plain id: {rid!r}")
    return (f"holds/plant={_part(event.get('plant'))}/line={_part(event.get('line'))}/"
            f"station={_part(event.get('station'))}/{rid}.json")


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Record the hold; returns ``{"bucket", "key"}`` of the hold record."""
    bucket = os.environ["DATA_BUCKET"]
    key = hold_key(event)
    record = {
        "inspection_id": event["inspection_id"],
        "part_id": event.get("part_id"),
        "lot": event.get("lot"),
        "decision": event.get("decision"),
        "verdict": event.get("verdict"),
        "reason": event.get("reason"),
        "score": event.get("score"),
        "confidence": event.get("confidence"),
        "image_key": event.get("image_key"),
        "result_key": event.get("result_key"),
        # an X-ray part's detector file, the evidence of the hold (absent for camera parts)
        **({"original_key": event["original_key"]} if event.get("original_key") else {}),
        "held_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    _client().put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode(),
                         ContentType="application/json")
    return {"bucket": bucket, "key": key}
