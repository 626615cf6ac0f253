"""relay retries and parked events on inbound_event

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("relay_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("relay_next_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("relay_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )
        batch_op.add_column(
            sa.Column("parked_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_inbound_event_parked_at"), ["parked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbound_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_event_parked_at"))
        batch_op.drop_column("parked_at")
        batch_op.drop_column("relay_error")
        batch_op.drop_column("relay_next_at")
        batch_op.drop_column("relay_attempts")
