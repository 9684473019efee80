"""One inspection as the store receives it, and the self-describing document it becomes.

The document (``to_document``) is what is kept in ``inspections.record`` and what is
synced to ``results/.../<id>.json``: it carries everything needed to trace the verdict
back to its inputs without the station database (schema version, station, recipe,
config hash, calibration version, model identity, camera settings, spec results, the
detector result, the decision and its reason, the image's content hash).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from station.store.ids import new_inspection_id
from station.store.jsonutil import iso_utc, to_jsonable
from station.store.schema import DECISIONS

if TYPE_CHECKING:
    from station.store.images import StoredImage

RECORD_SCHEMA = "linestation.inspection"
RECORD_SCHEMA_VERSION = 1

VERDICT_OF = {"pass": "OK", "reject": "NotOK", "review": "NotDecidable", "check_capture": "NotDecidable"}
ALERT_DECISIONS = frozenset({"reject", "review", "check_capture"})
SPEC_FIELDS = ("name", "value", "low", "high", "passed", "unit", "message")


def verdict_for(decision: str) -> str:
    """OPC 40001-101 result state: pass -> OK, reject -> NotOK, otherwise NotDecidable."""
    try:
        return VERDICT_OF[decision]
    except KeyError:
        raise ValueError(f"unknown decision {decision!r}; expected one of {DECISIONS}") from None


def _as_utc(value: datetime | float | int | None, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), timezone.utc)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} is a naive datetime; pass an aware one or epoch seconds")
        return value.astimezone(timezone.utc)
    raise TypeError(f"{name} must be a datetime or epoch seconds, got {type(value).__name__}")


def _float_or_none(value: Any) -> float | None:
    v = to_jsonable(value)
    return None if v is None else float(v)


def normalise_spec_check(check: dict[str, Any]) -> dict[str, Any]:
    """A spec check with all of :data:`SPEC_FIELDS` (extra keys are kept)."""
    if "name" not in check:
        raise ValueError(f"spec check without a name: {check!r}")
    out = to_jsonable(dict(check))
    out["name"] = str(check["name"])
    for key in ("value", "low", "high"):
        out[key] = _float_or_none(check.get(key))
    out["passed"] = bool(check.get("passed", False))
    out["unit"] = str(check.get("unit") or "")
    out["message"] = str(check.get("message") or "")
    return out


@dataclass
class InspectionRecord:
    """What the cycle hands the store for one part (image and heatmap travel beside it).

    ``decision`` is ``pass`` / ``reject`` / ``review`` / ``check_capture`` (a str-enum such
    as ``station.inspect.decide.Decision`` works too); the verdict is derived from it.
    A capture fault is recorded with ``fault={"kind": ..., "message": ...}``, the decision
    ``check_capture`` and usually no image. Times are aware datetimes or epoch seconds.
    """

    station: str
    decision: str
    started_at: datetime | float
    recipe: str = ""
    part_id: str = ""
    lot: str = ""
    finished_at: datetime | float | None = None
    config_hash: str = ""
    calibration_version: str | None = None
    model_id: str | None = None
    model_version: str | None = None
    model_hash: str | None = None
    # serial, pixel_format, exposure_us, gain_db, trigger_id, trigger_mode
    camera: dict[str, Any] | None = None
    reason: str = ""
    score: float | None = None
    is_anomalous: bool | None = None
    confidence: float | None = None
    detection: dict[str, Any] | None = None  # DetectionResult.to_json(): LfV shape + extras
    fault: dict[str, Any] | None = None  # {"kind": ..., "message": ...}
    timings_ms: dict[str, float] = field(default_factory=dict)
    spec_checks: list[dict[str, Any]] = field(default_factory=list)
    bit_depth: int | None = None  # significant bits of the image (Mono12 in uint16 -> 12)
    meta: dict[str, Any] = field(default_factory=dict)  # driver facts (Frame.meta), free form
    id: str = field(default_factory=new_inspection_id)

    def __post_init__(self) -> None:
        if isinstance(self.decision, enum.Enum):
            self.decision = str(self.decision.value)
        verdict_for(self.decision)  # validates
        self.started_at = _as_utc(self.started_at, "started_at")
        self.finished_at = _as_utc(self.finished_at, "finished_at")
        if not self.station:
            raise ValueError("station must not be empty")
        if self.fault is not None and "kind" not in self.fault:
            raise ValueError(f"fault needs a 'kind': {self.fault!r}")

    @property
    def verdict(self) -> str:
        return verdict_for(self.decision)

    @property
    def is_alert(self) -> bool:
        """Decisions someone must look at (reject, review, check capture)."""
        return self.decision in ALERT_DECISIONS

    def normalised_spec_checks(self) -> list[dict[str, Any]]:
        return [normalise_spec_check(c) for c in self.spec_checks]

    def to_document(
        self,
        image: StoredImage | None = None,
        heatmap: StoredImage | None = None,
        *,
        recorded_at: datetime | None = None,
    ) -> dict[str, Any]:
        """The self-describing JSON document of this inspection (plain JSON types only)."""
        checks = self.normalised_spec_checks()
        doc = {
            "schema": RECORD_SCHEMA,
            "schema_version": RECORD_SCHEMA_VERSION,
            "id": self.id,
            "station": self.station,
            "recipe": self.recipe,
            "part_id": self.part_id,
            "lot": self.lot,
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at) if self.finished_at else None,
            "recorded_at": iso_utc(recorded_at) if recorded_at else None,
            "config_hash": self.config_hash,
            "calibration_version": self.calibration_version,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "model_hash": self.model_hash,
            "camera": self.camera,
            "spec_passed": all(c["passed"] for c in checks),
            "spec_checks": checks,
            "detection": self.detection,
            "fault": self.fault,
            "decision": self.decision,
            "verdict": self.verdict,
            "reason": self.reason,
            "score": self.score,
            "is_anomalous": None if self.is_anomalous is None else bool(self.is_anomalous),
            "confidence": self.confidence,
            "timings_ms": self.timings_ms,
            "image": image.to_json() if image else None,
            "heatmap": heatmap.to_json() if heatmap else None,
            "meta": self.meta,
        }
        return to_jsonable(doc)
