"""Initial station schema: inspections, spec results, audit log, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Written out explicitly (not ``metadata.create_all``): a migration is frozen history and
must not change when ``schema.py`` does. The tests check it matches ``schema.py``.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.String(27)  # fixed-width UTC ISO-8601 text


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("recipe", sa.String(128), nullable=False),
        sa.Column("part_id", sa.String(128), nullable=False),
        sa.Column("lot", sa.String(128), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("config_hash", sa.String(128), nullable=False),
        sa.Column("calibration_version", sa.String(128), nullable=True),
        sa.Column("model_id", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("model_hash", sa.String(128), nullable=True),
        sa.Column("camera", _json(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("is_anomalous", sa.Boolean(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("detection", _json(), nullable=True),
        sa.Column("fault", _json(), nullable=True),
        sa.Column("timings_ms", _json(), nullable=True),
        sa.Column("image_path", sa.String(256), nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("image_dtype", sa.String(16), nullable=True),
        sa.Column("image_shape", _json(), nullable=True),
        sa.Column("image_bit_depth", sa.Integer(), nullable=True),
        sa.Column("heatmap_path", sa.String(256), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("record", _json(), nullable=False),
        sa.CheckConstraint(
            "decision IN ('pass', 'reject', 'review', 'check_capture')",
            name="ck_inspections_decision",
        ),
        sa.CheckConstraint("verdict IN ('OK', 'NotOK', 'NotDecidable')", name="ck_inspections_verdict"),
    )
    op.create_index("ix_inspections_started_at", "inspections", ["started_at"])
    op.create_index("ix_inspections_part_id", "inspections", ["part_id"])
    op.create_index("ix_inspections_image_sha256", "inspections", ["image_sha256"])

    op.create_table(
        "spec_results",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "inspection_id",
            sa.String(26),
            sa.ForeignKey("inspections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_spec_results_inspection_id", "spec_results", ["inspection_id"])

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(27), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("payload", _json(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "inspection_id",
            sa.String(26),
            sa.ForeignKey("inspections.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("sink", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'in_flight', 'done', 'dead')", name="ck_outbox_status"
        ),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
    )
    op.create_index("ix_outbox_claim", "outbox", ["status", "priority", "id"])
    op.create_index("ix_outbox_inspection_id", "outbox", ["inspection_id"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("audit_log")
    op.drop_table("spec_results")
    op.drop_table("inspections")
