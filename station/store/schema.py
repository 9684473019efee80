"""The station database's tables (SQLAlchemy 2 typed ORM).

The schema itself is created and upgraded only by the Alembic migrations in
``station/store/migrations``; these classes describe it for queries and are checked
against the migrated database by the tests (autogenerate must find no difference).

Conventions every process reading this database (``cloudsync``) relies on:

- Times are TEXT in one fixed-width UTC format, ``2026-01-31T08:15:02.123456Z``
  (:func:`station.store.jsonutil.iso_utc`), so they compare and sort as text.
- JSON columns hold compact JSON text; ``NULL`` means "absent", never the text ``null``.
- ``outbox.priority``: lower is more urgent (alerts 1, results 2, images 3). Claim with
  ``status='pending' AND next_attempt_at <= now ORDER BY priority, id``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from station.store.jsonutil import iso_utc, parse_iso_utc

DECISIONS = ("pass", "reject", "review", "check_capture")
VERDICTS = ("OK", "NotOK", "NotDecidable")
OUTBOX_STATUSES = ("pending", "in_flight", "done", "dead")


class UtcTimestamp(TypeDecorator):
    """An aware datetime stored as fixed-width UTC ISO-8601 text (sortable)."""

    impl = String(27)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return iso_utc(value)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return None if value is None else parse_iso_utc(value)


def _json() -> JSON:
    # none_as_null: Python None is SQL NULL, so "IS NULL" finds absent documents.
    return JSON(none_as_null=True)


class Base(DeclarativeBase):
    pass


class Inspection(Base):
    """One inspected (or failed-to-capture) part: the durable, self-describing record."""

    __tablename__ = "inspections"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)  # ULID, time-sortable
    station: Mapped[str] = mapped_column(String(64))
    recipe: Mapped[str] = mapped_column(String(128), default="")
    part_id: Mapped[str] = mapped_column(String(128), default="")
    lot: Mapped[str] = mapped_column(String(128), default="")
    started_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    finished_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    recorded_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    config_hash: Mapped[str] = mapped_column(String(128), default="")
    calibration_version: Mapped[str | None] = mapped_column(String(128))
    model_id: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(128))
    model_hash: Mapped[str | None] = mapped_column(String(128))
    camera: Mapped[dict | None] = mapped_column(_json())
    decision: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    score: Mapped[float | None] = mapped_column(Float)
    is_anomalous: Mapped[bool | None] = mapped_column(Boolean)
    confidence: Mapped[float | None] = mapped_column(Float)
    detection: Mapped[dict | None] = mapped_column(_json())
    fault: Mapped[dict | None] = mapped_column(_json())
    timings_ms: Mapped[dict | None] = mapped_column(_json())
    image_path: Mapped[str | None] = mapped_column(String(256))  # relative to the data dir
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    image_dtype: Mapped[str | None] = mapped_column(String(16))
    image_shape: Mapped[list | None] = mapped_column(_json())
    image_bit_depth: Mapped[int | None] = mapped_column(Integer)
    heatmap_path: Mapped[str | None] = mapped_column(String(256))
    schema_version: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict] = mapped_column(_json())

    __table_args__ = (
        CheckConstraint(f"decision IN {DECISIONS!r}", name="ck_inspections_decision"),
        CheckConstraint(f"verdict IN {VERDICTS!r}", name="ck_inspections_verdict"),
        Index("ix_inspections_started_at", "started_at"),
        Index("ix_inspections_part_id", "part_id"),
        Index("ix_inspections_image_sha256", "image_sha256"),  # lineage: dataset -> record
    )


class SpecResult(Base):
    """One capture-spec check of one inspection."""

    __tablename__ = "spec_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[str] = mapped_column(
        String(26), ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    low: Mapped[float | None] = mapped_column(Float)
    high: Mapped[float | None] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
    unit: Mapped[str] = mapped_column(String(32), default="")
    message: Mapped[str] = mapped_column(Text, default="")


class AuditEntry(Base):
    """One link of the hash-chained audit log (see :mod:`station.store.audit`)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(27))  # text, hashed exactly as stored
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128), default="")
    payload: Mapped[dict | None] = mapped_column(_json())
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_log_subject", "subject"),)


class OutboxRow(Base):
    """One message the sync service must deliver to one sink, at least once, idempotently."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    sink: Mapped[str] = mapped_column(String(32))  # s3, stepfunctions, sns, mes
    kind: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer)  # lower = more urgent
    payload: Mapped[dict] = mapped_column(_json())
    idempotency_key: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    delivery_detail: Mapped[dict | None] = mapped_column(_json())  # what the sink answered

    __table_args__ = (
        CheckConstraint(f"status IN {OUTBOX_STATUSES!r}", name="ck_outbox_status"),
        UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
        Index("ix_outbox_claim", "status", "priority", "id"),
        # The sync service's per-sink claim (migration 0003): seeks to one sink's rows.
        Index("ix_outbox_sink_claim", "sink", "status", "priority", "id"),
    )


ROLES = ("operator", "supervisor", "technician", "admin")
LABELS = ("good", "defect", "recapture")
SINK_STATES = ("online", "degraded", "offline")


class User(Base):
    """A person who signs in at the station. Only argon2 hashes are stored."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    last_login_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        CheckConstraint(f"role IN {ROLES!r}", name="ck_users_role"),
        UniqueConstraint("username", name="uq_users_username"),
    )


class Label(Base):
    """A person's (review) or a dataset's (import) word on one inspection or image."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    image_sha256: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(16))  # good / defect / recapture
    defect_class: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # confirm_defect / mark_good / recapture / import
    source: Mapped[str] = mapped_column(String(32))  # review / import
    username: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcTimestamp(), index=True)

    __table_args__ = (CheckConstraint(f"label IN {LABELS!r}", name="ck_labels_label"),)


class LineEvent(Base):
    """A recorded change on the line (new supplier, tooling, part revision)."""

    __tablename__ = "line_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    username: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcTimestamp(), index=True)


class SinkStatus(Base):
    """One sink's circuit state as the sync service last saw it."""

    __tablename__ = "sink_status"

    sink: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcTimestamp())
    updated_at: Mapped[datetime] = mapped_column(UtcTimestamp())
    detail: Mapped[dict | None] = mapped_column(_json())

    __table_args__ = (CheckConstraint(f"state IN {SINK_STATES!r}", name="ck_sink_status_state"),)


class MesDelivery(Base):
    """One MES transport's confirmation of one outbox item."""

    __tablename__ = "mes_deliveries"

    idempotency_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    transport: Mapped[str] = mapped_column(String(16), primary_key=True)  # rest / opcua
    disposition: Mapped[dict | None] = mapped_column(_json())
    delivered_at: Mapped[datetime] = mapped_column(UtcTimestamp())
