"""engagement: the ledger of deliveries, opens, clicks, bounces, complaints, unsubscribes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "engagement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", text(length=200), nullable=False),
        sa.Column("message_key", text(length=300), nullable=False),
        sa.Column("customer_id", text(length=64), nullable=False),
        sa.Column("journey", text(length=64), nullable=False),
        sa.Column("journey_version", text(length=64), nullable=True),
        sa.Column("step", text(length=64), nullable=False),
        sa.Column("channel", text(length=8), nullable=False),
        sa.Column("kind", text(length=16), nullable=False),
        sa.Column("at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", text(length=16), nullable=False),
        sa.Column("link", text(length=2000), nullable=True),
        sa.Column("session_id", text(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("engagement", schema=None) as batch_op:
        for column in ("at", "customer_id", "journey", "message_key"):
            batch_op.create_index(batch_op.f(f"ix_engagement_{column}"), [column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("engagement", schema=None) as batch_op:
        for column in ("message_key", "journey", "customer_id", "at"):
            batch_op.drop_index(batch_op.f(f"ix_engagement_{column}"))
    op.drop_table("engagement")
