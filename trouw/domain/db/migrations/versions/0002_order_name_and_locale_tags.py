"""order name beside our id; locale columns wide enough for BCP 47 tags

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 01:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot alter a column in place; it copies the table.
    with op.batch_alter_table("purchase_order") as batch:
        batch.add_column(
            sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
    with op.batch_alter_table("customer") as batch:
        batch.alter_column(
            "locale",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=8),
            type_=sqlmodel.sql.sqltypes.AutoString(length=35),
            existing_nullable=False,
        )
    with op.batch_alter_table("message") as batch:
        batch.alter_column(
            "locale",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=8),
            type_=sqlmodel.sql.sqltypes.AutoString(length=35),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.alter_column(
            "locale",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=35),
            type_=sqlmodel.sql.sqltypes.AutoString(length=8),
            existing_nullable=True,
        )
    with op.batch_alter_table("customer") as batch:
        batch.alter_column(
            "locale",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=35),
            type_=sqlmodel.sql.sqltypes.AutoString(length=8),
            existing_nullable=False,
        )
    with op.batch_alter_table("purchase_order") as batch:
        batch.drop_column("name")
