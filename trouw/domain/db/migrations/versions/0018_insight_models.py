"""insight_models: which model answered each forecast figure of a refresh, and its backtest

Revision ID: 0018_insight_models
Revises: 0017_multiday_span
Create Date: 2026-11-30 12:05:00

insight_refresh.models holds trouw.domain.insight.choice.ModelChoice.as_dict() of the refresh; rows of
earlier refreshes get an empty object (the report then says the choice was not recorded).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_insight_models"
down_revision: str | None = "0017_multiday_span"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("insight_refresh") as batch:
        batch.add_column(sa.Column("models", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("insight_refresh") as batch:
        batch.drop_column("models")
