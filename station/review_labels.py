"""A supervisor's word on one inspection: label row + audit entry + outbox row, in one commit.

The review tab calls :func:`record_review_label` when a supervisor confirms a defect, marks
a part good or sends it to recapture. One ``BEGIN IMMEDIATE`` transaction on the store's
writer engine inserts

1. the ``labels`` row (source ``review``) - what retraining reads;
2. the hash-chained audit entry ``review.label`` (actor = the supervisor);
3. an ``outbox`` row (sink ``s3``, kind ``label``, priority 2) so the correction reaches the
   cloud next to the result it corrects, under
   ``labels/plant=/line=/station=/date=/<inspection>.json`` with the idempotency key
   ``<inspection>:s3:label:<label id>``.

Either all three commit or none does. Bad input (unknown inspection, unknown action or
defect class, an inspection that already has a review label) raises :class:`LabelError`
before anything is written. Qt-free: the UI runs it on its task runner.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError

from station.store import audit as audit_log
from station.store.errors import StoreError
from station.store.jsonutil import iso_utc
from station.store.outbox import PRIORITY_RESULT, s3_prefix
from station.store.schema import Inspection, Label, OutboxRow
from station.store.station_store import StationStore

DEFAULT_DEFECT_CLASSES = ("scratch", "spot", "missing_feature", "contamination", "other")
AUDIT_ACTION = "review.label"


class ReviewAction(str, enum.Enum):
    """What a supervisor can decide about a queued inspection, and the label it stores."""

    CONFIRM_DEFECT = "confirm_defect"
    MARK_GOOD = "mark_good"
    RECAPTURE = "recapture"

    @property
    def label(self) -> str:
        return {"confirm_defect": "defect", "mark_good": "good", "recapture": "recapture"}[self.value]


class LabelError(StoreError):
    """The label cannot be recorded as asked; nothing was written."""


class AlreadyLabelled(LabelError):
    """Someone reviewed this inspection already (two supervisors, one part)."""


@dataclass(frozen=True)
class RecordedLabel:
    """What :func:`record_review_label` committed."""

    label_id: int
    inspection_id: str
    label: str
    defect_class: str | None
    action: str
    username: str
    created_at: str
    audit_seq: int
    outbox_key: str
    s3_key: str


def label_s3_key(store: StationStore, inspection_id: str, started_at: datetime) -> str:
    """Where the label document lands: partitioned like the result it corrects."""
    return f"labels/{s3_prefix(store.plant, store.line, store.station, started_at)}/{inspection_id}.json"


def label_idempotency_key(inspection_id: str, label_id: int) -> str:
    return f"{inspection_id}:s3:label:{label_id}"


def _validated(action: ReviewAction | str, defect_class: str | None, username: str,
               allowed_classes: tuple[str, ...] | list[str]) -> tuple[ReviewAction, str | None]:
    try:
        act = ReviewAction(action)
    except ValueError:
        known = ", ".join(a.value for a in ReviewAction)
        raise LabelError(f"unknown review action {action!r} (expected one of: {known})") from None
    if not username or not username.strip():
        raise LabelError("a review label needs the signed-in user's name")
    if act is ReviewAction.CONFIRM_DEFECT:
        if not defect_class:
            raise LabelError("confirming a defect needs a defect class")
        if defect_class not in allowed_classes:
            raise LabelError(f"unknown defect class {defect_class!r} for this recipe "
                             f"(expected one of: {', '.join(allowed_classes)})")
        return act, defect_class
    if defect_class:
        raise LabelError(f"{act.value} takes no defect class (got {defect_class!r})")
    return act, None


def record_review_label(
    store: StationStore,
    inspection_id: str,
    action: ReviewAction | str,
    *,
    username: str,
    defect_class: str | None = None,
    note: str = "",
    allowed_classes: tuple[str, ...] | list[str] = DEFAULT_DEFECT_CLASSES,
    now: datetime | None = None,
) -> RecordedLabel:
    """Record a supervisor's review decision (label + audit + outbox, one transaction).

    Raises :class:`LabelError` (nothing written) for bad input, :class:`AlreadyLabelled`
    when the inspection carries a review label already, :class:`StoreError` when the
    database refuses the write.
    """
    act, cls = _validated(action, defect_class, username, tuple(allowed_classes))
    created = iso_utc(now or datetime.now(timezone.utc))
    what = f"review label for inspection {inspection_id}"
    try:
        with store.engine.begin() as conn:  # BEGIN IMMEDIATE: the check and the insert see one state
            row = conn.execute(
                select(Inspection.id, Inspection.image_sha256, Inspection.started_at, Inspection.decision,
                       Inspection.part_id, Inspection.score, Inspection.model_id, Inspection.model_version,
                       Inspection.recipe)
                .where(Inspection.id == inspection_id)
            ).first()
            if row is None:
                raise LabelError(f"no inspection {inspection_id!r} in {store.db_path}")
            previous = conn.execute(
                select(Label.label, Label.username, Label.created_at)
                .where(Label.inspection_id == inspection_id, Label.source == "review").limit(1)
            ).first()
            if previous is not None:
                raise AlreadyLabelled(
                    f"inspection {inspection_id} was already labelled {previous.label!r} by "
                    f"{previous.username} at {iso_utc(previous.created_at)}")
            label_id = conn.execute(insert(Label.__table__).values(
                inspection_id=inspection_id, image_sha256=row.image_sha256, label=act.label,
                defect_class=cls, action=act.value, source="review", username=username,
                note=note, created_at=created,
            )).inserted_primary_key[0]
            payload = {
                "label_id": label_id, "label": act.label, "defect_class": cls, "action": act.value,
                "part_id": row.part_id, "decision": row.decision, "image_sha256": row.image_sha256,
                "note": note,
            }
            seq, _ = audit_log.append(conn, actor=username, action=AUDIT_ACTION, subject=inspection_id,
                                      payload=payload, at=created)
            key = label_s3_key(store, inspection_id, row.started_at)
            document: dict[str, Any] = {
                "schema": "linestation.label", "schema_version": 1,
                "label_id": label_id, "inspection_id": inspection_id,
                "plant": store.plant, "line": store.line, "station": store.station,
                "recipe": row.recipe, "part_id": row.part_id,
                "image_sha256": row.image_sha256, "label": act.label, "defect_class": cls,
                "action": act.value, "source": "review", "username": username, "note": note,
                "created_at": created, "decision": row.decision, "score": row.score,
                "model_id": row.model_id, "model_version": row.model_version, "audit_seq": seq,
            }
            idem = label_idempotency_key(inspection_id, label_id)
            conn.execute(insert(OutboxRow.__table__), [{
                "inspection_id": inspection_id, "sink": "s3", "kind": "label",
                "priority": PRIORITY_RESULT,
                "payload": {"key": key, "content_type": "application/json", "document": document},
                "idempotency_key": idem, "status": "pending", "attempts": 0,
                "next_attempt_at": created, "last_error": None, "created_at": created,
                "delivered_at": None,
            }])
    except LabelError:
        raise
    except SQLAlchemyError as exc:
        raise StoreError(f"database error, {what} not recorded: {getattr(exc, 'orig', exc)}") from exc
    return RecordedLabel(label_id=int(label_id), inspection_id=inspection_id, label=act.label,
                         defect_class=cls, action=act.value, username=username, created_at=created,
                         audit_seq=seq, outbox_key=idem, s3_key=key)


def labels_of(store: StationStore, inspection_id: str) -> list[dict[str, Any]]:
    """Every label of one inspection, oldest first (review history, tests)."""
    q = select(*Label.__table__.c).where(Label.inspection_id == inspection_id).order_by(Label.id)
    with store.reader.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
