"""content_bundle: journeys and templates published into the database

Revision ID: 0013_content_bundle
Revises: 0012_operator_control
Create Date: 2026-11-30 06:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0013_content_bundle"
down_revision: str | None = "0012_operator_control"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "content_bundle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", text(length=64), nullable=False),
        sa.Column("published_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_by", text(length=200), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("content_bundle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_content_bundle_digest"), ["digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("content_bundle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_content_bundle_digest"))
    op.drop_table("content_bundle")
