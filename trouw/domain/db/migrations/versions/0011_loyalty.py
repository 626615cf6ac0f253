"""loyalty: points ledger, loyalty accounts, vouchers redeemed across channels

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 05:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import trouw.domain.db.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString
_WHEN = trouw.domain.db.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "points_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", _TEXT(length=300), nullable=False),
        sa.Column("customer_id", _TEXT(length=64), nullable=False),
        sa.Column("at", _WHEN(timezone=True), nullable=False),
        sa.Column("kind", _TEXT(length=8), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("expires_at", _WHEN(timezone=True), nullable=True),
        sa.Column("lot", _TEXT(length=300), nullable=True),
        sa.Column("order_id", _TEXT(length=64), nullable=True),
        sa.Column("line_no", sa.Integer(), nullable=True),
        sa.Column("qty", sa.Integer(), nullable=True),
        sa.Column("reason", _TEXT(length=500), nullable=True),
        sa.Column("source", _TEXT(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("points_entry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_points_entry_key"), ["key"], unique=True)
        batch_op.create_index(batch_op.f("ix_points_entry_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_points_entry_lot"), ["lot"], unique=False)
        batch_op.create_index("ix_points_entry_customer_at", ["customer_id", "at"], unique=False)
    op.create_table(
        "loyalty_account",
        sa.Column("customer_id", _TEXT(length=64), nullable=False),
        sa.Column("joined_at", _WHEN(timezone=True), nullable=False),
        sa.Column("referral_code", _TEXT(length=32), nullable=False),
        sa.Column("referred_by", _TEXT(length=64), nullable=True),
        sa.Column("referral_converted_at", _WHEN(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    with op.batch_alter_table("loyalty_account", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_loyalty_account_referral_code"), ["referral_code"], unique=True
        )
        batch_op.create_index(
            batch_op.f("ix_loyalty_account_referred_by"), ["referred_by"], unique=False
        )
    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workflow_id", _TEXT(length=300), nullable=True))
        batch_op.add_column(sa.Column("issued_key", _TEXT(length=300), nullable=True))
        batch_op.add_column(
            sa.Column("issued_by", _TEXT(length=16), nullable=False, server_default="journey")
        )
        batch_op.add_column(sa.Column("reason", _TEXT(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("min_order_total", sa.Numeric(precision=10, scale=2), nullable=True)
        )
        batch_op.add_column(sa.Column("voided_at", _WHEN(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("redeemed_receipt", _TEXT(length=200), nullable=True))
        batch_op.add_column(sa.Column("redeemed_order_id", _TEXT(length=64), nullable=True))
        batch_op.add_column(sa.Column("redeemed_channel", _TEXT(length=8), nullable=True))
        batch_op.add_column(sa.Column("redeemed_store", _TEXT(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("redeemed_recorded_at", _WHEN(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_voucher_workflow_id"), ["workflow_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_voucher_issued_key"), ["issued_key"], unique=True)
        batch_op.create_index(
            batch_op.f("ix_voucher_redeemed_order_id"), ["redeemed_order_id"], unique=False
        )
    # The till finds a member by the card it scans: the card number is the declared customer
    # attribute `loyalty_card`, so it is indexed where it lives (an expression index).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_customer_loyalty_card ON customer ((attributes->>'loyalty_card'))"
        )
    else:
        op.execute(
            "CREATE INDEX ix_customer_loyalty_card ON customer "
            "(json_extract(attributes, '$.loyalty_card'))"
        )


def downgrade() -> None:
    op.execute("DROP INDEX ix_customer_loyalty_card")
    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voucher_redeemed_order_id"))
        batch_op.drop_index(batch_op.f("ix_voucher_issued_key"))
        batch_op.drop_index(batch_op.f("ix_voucher_workflow_id"))
        for name in (
            "redeemed_recorded_at",
            "redeemed_store",
            "redeemed_channel",
            "redeemed_order_id",
            "redeemed_receipt",
            "voided_at",
            "min_order_total",
            "reason",
            "issued_by",
            "issued_key",
            "workflow_id",
        ):
            batch_op.drop_column(name)
    op.drop_table("loyalty_account")
    op.drop_table("points_entry")
