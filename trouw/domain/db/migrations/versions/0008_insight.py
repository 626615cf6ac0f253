"""customer insight: current insight per customer, segment history, refreshes, staging

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 04:44:51.517536
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_insight",
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("refresh_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("as_of", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("first_order_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_order_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recency_days", sa.Integer(), nullable=False),
        sa.Column("frequency", sa.Integer(), nullable=False),
        sa.Column("monetary_total", sa.Float(), nullable=False),
        sa.Column("monetary_avg", sa.Float(), nullable=False),
        sa.Column("r", sa.Integer(), nullable=False),
        sa.Column("f", sa.Integer(), nullable=False),
        sa.Column("m", sa.Integer(), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("segment_since", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("p_active", sa.Float(), nullable=False),
        sa.Column("p_order", sa.Float(), nullable=False),
        sa.Column("expected_orders", sa.Float(), nullable=False),
        sa.Column(
            "expected_next_order_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "announced_next_order_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("expected_value", sa.Float(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("season", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("sale_buyer", sa.Boolean(), nullable=False),
        sa.Column("favourite_category", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("breadth", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("recommendations", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    with op.batch_alter_table("customer_insight", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_insight_segment"), ["segment"], unique=False)

    op.create_table(
        "insight_refresh",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("as_of", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("started_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("scored_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("baseline", sa.Boolean(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.Column("popular", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "insight_segment_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("refresh_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("previous_segment", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "refresh_id"),
    )
    with op.batch_alter_table("insight_segment_change", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_insight_segment_change_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_insight_segment_change_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "insight_stage",
        sa.Column("refresh_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("refresh_id", "customer_id"),
    )


def downgrade() -> None:
    op.drop_table("insight_stage")
    with op.batch_alter_table("insight_segment_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_insight_segment_change_customer_id"))
        batch_op.drop_index(batch_op.f("ix_insight_segment_change_at"))

    op.drop_table("insight_segment_change")
    op.drop_table("insight_refresh")
    with op.batch_alter_table("customer_insight", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_insight_segment"))

    op.drop_table("customer_insight")
