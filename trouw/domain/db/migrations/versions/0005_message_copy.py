"""hosted copies of sent emails (message_copy)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_copy",
        sa.Column("message_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("html_zlib", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_key"),
    )
    with op.batch_alter_table("message_copy", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_message_copy_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_message_copy_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("message_copy", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_copy_expires_at"))
        batch_op.drop_index(batch_op.f("ix_message_copy_customer_id"))
    op.drop_table("message_copy")
