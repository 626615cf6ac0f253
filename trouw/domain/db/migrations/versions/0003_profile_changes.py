"""profile changes ledger and preferred channel

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "profile_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_profile_change_customer_id"), "profile_change", ["customer_id"], unique=False
    )
    with op.batch_alter_table("customer") as batch:
        batch.add_column(
            sa.Column(
                "preferred_channel", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("customer") as batch:
        batch.drop_column("preferred_channel")
    op.drop_index(op.f("ix_profile_change_customer_id"), table_name="profile_change")
    op.drop_table("profile_change")
