"""tracked_link: the links of each message behind the click redirect

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "tracked_link",
        sa.Column("code", text(length=32), nullable=False),
        sa.Column("message_key", text(length=300), nullable=False),
        sa.Column("url", text(length=2000), nullable=False),
        sa.Column("created_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    with op.batch_alter_table("tracked_link", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tracked_link_message_key"), ["message_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tracked_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracked_link_message_key"))
    op.drop_table("tracked_link")
