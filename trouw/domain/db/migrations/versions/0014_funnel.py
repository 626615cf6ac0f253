"""funnel: the click session on orders, and goal conversions with their time and value

Revision ID: 0014_funnel
Revises: 0013_content_bundle
Create Date: 2026-11-30 08:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0014_funnel"
down_revision: str | None = "0013_content_bundle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    with op.batch_alter_table("purchase_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_id", text(length=100), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_purchase_order_session_id"), ["session_id"], unique=False
        )
    op.create_table(
        "goal_conversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", text(length=300), nullable=False),
        sa.Column("customer_id", text(length=64), nullable=False),
        sa.Column("journey", text(length=64), nullable=False),
        sa.Column("version", text(length=64), nullable=False),
        sa.Column("goal", text(length=64), nullable=False),
        sa.Column("event_type", text(length=64), nullable=True),
        sa.Column("event_id", text(length=200), nullable=True),
        sa.Column("order_id", text(length=64), nullable=True),
        sa.Column("at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id"),
    )
    with op.batch_alter_table("goal_conversion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_goal_conversion_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_goal_conversion_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_goal_conversion_journey"), ["journey"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("goal_conversion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_goal_conversion_journey"))
        batch_op.drop_index(batch_op.f("ix_goal_conversion_customer_id"))
        batch_op.drop_index(batch_op.f("ix_goal_conversion_at"))
    op.drop_table("goal_conversion")
    with op.batch_alter_table("purchase_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purchase_order_session_id"))
        batch_op.drop_column("session_id")
