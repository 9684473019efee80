"""An index for the sync service's per-sink claim.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

``ix_outbox_sink_claim (sink, status, priority, id)``: every sink's dispatcher looks for
its own pending rows, most urgent first, after a cursor. On the older
``(status, priority, id)`` index it had to read past the other sinks' rows of the same
priority (results, workflow starts and MES posts all share priority 2), which on a
100,000-inspection backlog is most of the index; with the sink first it seeks straight
to its own rows. The status page's per-sink counts read this index too.
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_sink_claim", "outbox", ["sink", "status", "priority", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_sink_claim", table_name="outbox")
