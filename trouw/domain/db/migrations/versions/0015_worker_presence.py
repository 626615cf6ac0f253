"""worker presence: each worker's identity, task queue, content digest and heartbeat

Revision ID: 0015_worker_presence
Revises: 0014_funnel
Create Date: 2026-11-30 09:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0015_worker_presence"
down_revision: str | None = "0014_funnel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "worker_presence",
        sa.Column("identity", text(length=200), nullable=False),
        sa.Column("host", text(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("task_queue", text(length=200), nullable=False),
        sa.Column("digest", text(length=64), nullable=True),
        sa.Column("started_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identity"),
    )
    with op.batch_alter_table("worker_presence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_worker_presence_seen_at"), ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("worker_presence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_worker_presence_seen_at"))
    op.drop_table("worker_presence")
