"""What the sync service must deliver for one inspection: the outbox rows.

Rows are written in the same transaction as the inspection (transactional outbox), so a
record can never be committed without its deliveries or the other way round. Each row is
self-contained: its ``payload`` has everything its sink needs, so ``cloudsync`` never has
to interpret the inspection tables.

| sink          | kind            | priority | payload                                        |
|---------------|-----------------|----------|------------------------------------------------|
| sns           | alert           | 1        | subject, message, attributes (alerts only)     |
| s3            | result          | 2        | key, content_type, document                    |
| stepfunctions | start_execution | 2        | name (= inspection id), input, requires        |
| mes           | result          | 2        | message_id, the OPC 40001-101 style result     |
| s3            | image           | 3        | key, local_path, sha256, content_type, bytes   |

Lower priority numbers are more urgent. ``idempotency_key`` is
``"<inspection_id>:<sink>:<kind>"`` and unique: a sink uses it (or the S3 key, the
execution name) to make a repeated delivery harmless. ``requires`` lists idempotency keys
that should be delivered first (the workflow reads the image and result from S3).
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from station.store.images import StoredImage
from station.store.jsonutil import iso_utc
from station.store.record import ALERT_DECISIONS, InspectionRecord

PRIORITY_ALERT, PRIORITY_RESULT, PRIORITY_IMAGE = 1, 2, 3
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def idempotency_key(inspection_id: str, sink: str, kind: str) -> str:
    return f"{inspection_id}:{sink}:{kind}"


def _part(value: str) -> str:
    """One S3 key partition value: no '/', '=' or spaces (Athena/Hive partitions)."""
    return _UNSAFE.sub("_", value) or "_"


def s3_prefix(plant: str, line: str, station: str, when: datetime) -> str:
    return (
        f"plant={_part(plant)}/line={_part(line)}/station={_part(station)}/"
        f"date={iso_utc(when)[:10]}"
    )


def image_s3_key(record: InspectionRecord, *, plant: str, line: str, station: str) -> str:
    return f"raw/{s3_prefix(plant, line, station, record.started_at)}/{record.id}.png"


def result_s3_key(record: InspectionRecord, *, plant: str, line: str, station: str) -> str:
    return f"results/{s3_prefix(plant, line, station, record.started_at)}/{record.id}.json"


def outbox_rows_for(
    record: InspectionRecord,
    image: StoredImage | None,
    *,
    plant: str,
    line: str,
    station: str,
    document: dict[str, Any] | None = None,
    now: datetime | str | None = None,
) -> list[dict[str, Any]]:
    """The outbox rows (column dicts, ready to insert) for one inspection."""
    created = now if isinstance(now, str) else iso_utc(now)
    doc = document if document is not None else record.to_document(image)
    rid = record.id
    image_key = image_s3_key(record, plant=plant, line=line, station=station) if image else None
    result_key = result_s3_key(record, plant=plant, line=line, station=station)
    summary = {
        "inspection_id": rid,
        "plant": plant,
        "line": line,
        "station": station,
        "recipe": record.recipe,
        "part_id": record.part_id,
        "lot": record.lot,
        "decision": record.decision,
        "verdict": record.verdict,
        "reason": record.reason,
        "score": doc["score"],
        "confidence": doc["confidence"],
        "is_anomalous": doc["is_anomalous"],
        "fault": doc["fault"],
        "model_id": record.model_id,
        "model_version": record.model_version,
        "started_at": doc["started_at"],
        "finished_at": doc["finished_at"],
        "image_key": image_key,
        "result_key": result_key,
    }

    def row(sink: str, kind: str, priority: int, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "inspection_id": rid,
            "sink": sink,
            "kind": kind,
            "priority": priority,
            "payload": payload,
            "idempotency_key": idempotency_key(rid, sink, kind),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": created,
            "last_error": None,
            "created_at": created,
            "delivered_at": None,
        }

    rows: list[dict[str, Any]] = []
    if record.decision in ALERT_DECISIONS:
        what = {"reject": "DEFECT", "review": "REVIEW", "check_capture": "CHECK CAPTURE"}[record.decision]
        subject = f"[{station}] {what}: part {record.part_id or '?'}"
        rows.append(row("sns", "alert", PRIORITY_ALERT, {
            "subject": subject[:100],  # SNS limit
            "message": summary,
            "attributes": {"decision": record.decision, "station": station, "line": line, "plant": plant},
        }))
    rows.append(row("s3", "result", PRIORITY_RESULT, {
        "key": result_key, "content_type": "application/json", "document": doc,
    }))
    sfn_requires = [idempotency_key(rid, "s3", "result")]
    if image is not None:
        sfn_requires.insert(0, idempotency_key(rid, "s3", "image"))
    rows.append(row("stepfunctions", "start_execution", PRIORITY_RESULT, {
        "name": rid,  # execution name = inspection id: a second start is rejected, not run twice
        "input": summary,
        "requires": sfn_requires,
    }))
    rows.append(row("mes", "result", PRIORITY_RESULT, {
        "message_id": idempotency_key(rid, "mes", "result"),
        **summary,
    }))
    if image is not None:
        rows.append(row("s3", "image", PRIORITY_IMAGE, {
            "key": image_key,
            "local_path": image.relpath,
            "sha256": image.sha256,
            "content_type": "image/png",
            "bytes": image.nbytes,
        }))
    return rows
