"""event interest: what each journey version's runs listen to, which events match_journeys has
answered, and what each worker's relay signals

Revision ID: 0019_event_interest
Revises: 0018_insight_models
Create Date: 2026-11-30 15:10:00

journey_version is filled from here on, with each version's first run; a running run of a version
that is not in it (started before this migration) makes the relay signal every event type until
it ends (trouw.language.journey.interest). Events handed off before this migration count as
answered (matched_at = relayed_at): their runs were recorded long since, bar the few in flight.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0019_event_interest"
down_revision: str | None = "0018_insight_models"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "journey_version",
        sa.Column("version", text(length=64), nullable=False),
        sa.Column("journey", text(length=64), nullable=False),
        sa.Column("listens", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    with op.batch_alter_table("journey_run") as batch:
        batch.create_index("ix_journey_run_status_version", ["status", "version"], unique=False)
    with op.batch_alter_table("worker_presence") as batch:
        batch.add_column(sa.Column("event_types", sa.JSON(), nullable=True))
    with op.batch_alter_table("inbound_event") as batch:
        batch.add_column(
            sa.Column(
                "matched_at", trouw.domain.db.models.UTCDateTime(timezone=True), nullable=True
            )
        )
    op.execute("UPDATE inbound_event SET matched_at = relayed_at WHERE relayed_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("inbound_event") as batch:
        batch.drop_column("matched_at")
    with op.batch_alter_table("worker_presence") as batch:
        batch.drop_column("event_types")
    with op.batch_alter_table("journey_run") as batch:
        batch.drop_index("ix_journey_run_status_version")
    op.drop_table("journey_version")
