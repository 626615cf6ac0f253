"""split_assignment: the arm of a split or hold-out each run took

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "split_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("journey", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("step", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("arm", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("holdout", sa.Boolean(), nullable=False),
        sa.Column("at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id", "step"),
    )
    with op.batch_alter_table("split_assignment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_split_assignment_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_split_assignment_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_split_assignment_journey"), ["journey"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("split_assignment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_split_assignment_journey"))
        batch_op.drop_index(batch_op.f("ix_split_assignment_customer_id"))
        batch_op.drop_index(batch_op.f("ix_split_assignment_at"))
    op.drop_table("split_assignment")
