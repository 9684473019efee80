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
| s3            | original        | 3        | key, local_path, sha256, content_type, bytes,  |
|               |                 |          | file, format (X-ray records only)              |
| s3            | image           | 3        | key, local_path, sha256, content_type, bytes   |

Lower priority numbers are more urgent. ``idempotency_key`` is
``"<inspection_id>:<sink>:<kind>"`` and unique: a sink uses it (or the S3 key, the
execution name) to make a repeated delivery harmless. ``requires`` lists idempotency keys
that should be delivered first (the workflow reads the image and result from S3).

An X-ray record's original detector file (``meta.original.stored``, kept byte for byte by
the store) goes up as its own ``original`` row, content-addressed under
``originals/plant=/line=/station=/date=/<sha256>.<ext>``: a sibling of ``raw/``, not inside
it, because ``linestation batch s3://BUCKET/raw/...`` inspects every TIFF it lists there
and would inspect each X-ray part twice. The document names that key
(``meta.original.s3_key``, set by :func:`with_original_key` before the record is committed,
so the local record and the uploaded one stay identical) and so does the workflow input
(``original_key``); the workflow ``requires`` the original, so it never starts before the
evidence is in S3. SNS alerts and MES posts do not name it: they do not wait for S3
(an alert is urgent, an MES-only station has no S3), so they could point at an object
that is not there yet. A camera record has no original: its rows are unchanged.
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


def original_s3_key(record: InspectionRecord, sha256: str, ext: str, *, plant: str, line: str,
                    station: str) -> str:
    return f"originals/{s3_prefix(plant, line, station, record.started_at)}/{sha256}.{_part(ext.lower())}"


# Content-Type of an original by its stored extension (``xray_camera.FILE_EXT``).
ORIGINAL_CONTENT_TYPES = {"tif": "image/tiff", "tiff": "image/tiff", "dcm": "application/dicom",
                          "dicom": "application/dicom", "dic": "application/dicom", "png": "image/png"}


def kept_original(document: dict[str, Any]) -> dict[str, Any] | None:
    """The document's kept original file (``meta.original`` with ``stored``), else None."""
    original = (document.get("meta") or {}).get("original")
    if isinstance(original, dict) and original.get("stored") and original.get("sha256"):
        return original
    return None


def _original_ext(original: dict[str, Any]) -> str:
    return str(original.get("ext") or original["stored"].rsplit(".", 1)[-1])


def with_original_key(document: dict[str, Any], record: InspectionRecord, *, plant: str, line: str,
                      station: str) -> dict[str, Any]:
    """``document`` with ``meta.original.s3_key`` (a new dict) when it names a kept original.

    Downstream finds the evidence from the record itself; set before the commit, so the
    record stored, audited and uploaded is one and the same document."""
    original = kept_original(document)
    if original is None:
        return document
    key = original_s3_key(record, original["sha256"], _original_ext(original), plant=plant, line=line,
                          station=station)
    return {**document, "meta": {**document["meta"], "original": {**original, "s3_key": key}}}


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
    original = kept_original(doc)
    original_key = (original.get("s3_key") or original_s3_key(  # the key the record names, if it does
        record, original["sha256"], _original_ext(original), plant=plant, line=line, station=station)
    ) if original else None
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
    if original_key:
        sfn_requires.insert(0, idempotency_key(rid, "s3", "original"))
    if image is not None:
        sfn_requires.insert(0, idempotency_key(rid, "s3", "image"))
    rows.append(row("stepfunctions", "start_execution", PRIORITY_RESULT, {
        "name": rid,  # execution name = inspection id: a second start is rejected, not run twice
        "input": {**summary, "original_key": original_key} if original_key else summary,
        "requires": sfn_requires,
    }))
    rows.append(row("mes", "result", PRIORITY_RESULT, {
        "message_id": idempotency_key(rid, "mes", "result"),
        **summary,
    }))
    if original_key:  # before the image: same priority, claimed in id order
        ext = _original_ext(original)
        rows.append(row("s3", "original", PRIORITY_IMAGE, {
            "key": original_key,
            "local_path": original["stored"],
            "sha256": original["sha256"],
            "content_type": ORIGINAL_CONTENT_TYPES.get(ext.lower(), "application/octet-stream"),
            "bytes": original.get("bytes"),
            "file": original.get("file"),
            "format": original.get("format") or ext,
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
