"""Users and roles, review labels, line events, sync bookkeeping.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

- ``users``: station sign-in (argon2 hashes only), one role each.
- ``labels``: what a person decided about an inspection (review queue) or what an
  imported dataset says; the retraining set is built from these.
- ``line_events``: recorded line changes (new supplier, tooling, part revision) that
  can trigger retraining.
- ``outbox.delivery_detail``: what the sink answered (S3 ETag, execution ARN, MES
  disposition).
- ``sink_status``: each sink's circuit state, written by the sync service, read by the
  station screen and ``linestation sync status`` from other processes.
- ``mes_deliveries``: per-transport delivery markers of the MES write-back (REST and
  OPC UA are confirmed separately, so a retry never re-sends to one that confirmed).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.String(27)


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_login_at", TS, nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.CheckConstraint("role IN ('operator', 'supervisor', 'technician', 'admin')", name="ck_users_role"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )

    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("inspection_id", sa.String(26), sa.ForeignKey("inspections.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("defect_class", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("label IN ('good', 'defect', 'recapture')", name="ck_labels_label"),
    )
    op.create_index("ix_labels_inspection_id", "labels", ["inspection_id"])
    op.create_index("ix_labels_created_at", "labels", ["created_at"])

    op.create_table(
        "line_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_line_events_at", "line_events", ["at"])

    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("delivery_detail", _json(), nullable=True))

    op.create_table(
        "sink_status",
        sa.Column("sink", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_success_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("detail", _json(), nullable=True),
        sa.CheckConstraint("state IN ('online', 'degraded', 'offline')", name="ck_sink_status_state"),
    )

    op.create_table(
        "mes_deliveries",
        sa.Column("idempotency_key", sa.String(128), primary_key=True),
        sa.Column("transport", sa.String(16), primary_key=True),
        sa.Column("disposition", _json(), nullable=True),
        sa.Column("delivered_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mes_deliveries")
    op.drop_table("sink_status")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("delivery_detail")
    op.drop_index("ix_line_events_at", table_name="line_events")
    op.drop_table("line_events")
    op.drop_index("ix_labels_created_at", table_name="labels")
    op.drop_index("ix_labels_inspection_id", table_name="labels")
    op.drop_table("labels")
    op.drop_table("users")
