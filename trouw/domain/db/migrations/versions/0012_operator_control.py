"""operator control: journey pauses, customer contact pauses, reconciler marks

Revision ID: 0012_operator_control
Revises: 0011
Create Date: 2026-11-30 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0012_operator_control"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table, key in (("journey_control", "journey"), ("contact_pause", "customer_id")):
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column(key, sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
            sa.Column("paused", sa.Boolean(), nullable=False),
            sa.Column("at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
            sa.Column("by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
            sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(op.f(f"ix_{table}_{key}"), table, [key], unique=False)
    op.create_table(
        "sync_mark",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("sync_mark")
    for table, key in (("contact_pause", "customer_id"), ("journey_control", "journey")):
        op.drop_index(op.f(f"ix_{table}_{key}"), table_name=table)
        op.drop_table(table)
