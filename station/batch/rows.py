"""The result row: one JSON object per image, flat columns first, nested detail after.

The flat columns are what Athena / QuickSight query (see docs/batch.md for the table);
``detection`` is the station's detector result (Lookout for Vision's
``DetectAnomalyResult`` plus score, threshold and model identity), ``spec_checks`` the
capture-spec results, ``timings_ms`` the stage timings, ``image_info`` what was read.
A row is built from the same :class:`~station.inspect.cycle.InspectionOutcome` the line
records, so batch and line results compare field by field.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

# Order matters only for people reading the files; JSON SerDes match by name.
FLAT_COLUMNS = (
    "run_id", "shard", "image_id", "image", "part_id", "lot", "recipe", "station",
    "decision", "verdict", "is_anomalous", "confidence", "score", "threshold",
    "model_id", "model_version", "error", "reason", "spec_checked", "spec_passed",
    "calibration_version", "inspection_id", "line_decision", "decision_changed", "inspected_at",
)
NESTED_COLUMNS = ("detection", "spec_checks", "timings_ms", "image_info")
ROW_COLUMNS = FLAT_COLUMNS + NESTED_COLUMNS
DECISIONS = ("pass", "reject", "review", "check_capture")


def yield_fraction(counts: dict[str, int]) -> float | None:
    """pass / (pass + reject): review and check_capture are not decided yet; None without any."""
    decided = counts.get("pass", 0) + counts.get("reject", 0)
    return counts.get("pass", 0) / decided if decided else None


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def base_row(item: Any, *, run_id: str, shard: int) -> dict[str, Any]:
    """Every column, empty, with the image's identity and line context filled in."""
    row: dict[str, Any] = dict.fromkeys(ROW_COLUMNS)
    row.update(run_id=run_id, shard=shard, image_id=item.image_id, image=item.uri,
               part_id=item.part_id, lot=item.lot, recipe=item.recipe, station=item.station,
               inspection_id=item.inspection_id, line_decision=item.line_decision,
               spec_checks=[], timings_ms={}, inspected_at=utc_now_iso())
    return row


def row_from_outcome(item: Any, outcome: Any, *, run_id: str, shard: int, spec_checked: bool,
                     image_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The row of one inspected image (``outcome`` is the cycle's InspectionOutcome)."""
    row = base_row(item, run_id=run_id, shard=shard)
    doc = outcome.to_json()
    det = outcome.detection
    row.update(
        decision=doc["decision"], verdict=doc["verdict"], reason=doc["reason"],
        spec_checked=spec_checked, spec_passed=bool(doc["spec_passed"]) if spec_checked else None,
        calibration_version=doc["calibration_version"] if spec_checked else None,
        spec_checks=doc["spec_checks"], timings_ms=doc["timings_ms"], image_info=image_info,
        detection=doc["detection"],
    )
    if det is not None:
        row.update(is_anomalous=bool(det.is_anomalous), confidence=round(float(det.confidence), 6),
                   score=float(det.score), threshold=float(det.threshold),
                   model_id=det.model_id, model_version=det.model_version)
    if outcome.fault is not None:  # unreadable / wrong-depth image: a capture fault at the line too
        row["error"] = f"{outcome.fault['kind']}: {outcome.fault['message']}"
    if row["line_decision"] is not None:
        row["decision_changed"] = row["line_decision"] != row["decision"]
    return row


def error_row(item: Any, message: str, *, run_id: str, shard: int, model_id: str | None = None,
              model_version: str | None = None) -> dict[str, Any]:
    """The row of an image that could not be inspected at all (never fatal to the run)."""
    row = base_row(item, run_id=run_id, shard=shard)
    row.update(decision="check_capture", verdict="NotDecidable", error=message, reason=message,
               model_id=model_id, model_version=model_version, spec_checked=False)
    if row["line_decision"] is not None:
        row["decision_changed"] = row["line_decision"] != row["decision"]
    return row
