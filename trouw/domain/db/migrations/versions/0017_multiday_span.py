"""multiday_span: report_engagement_multiday keeps each message's first and last engaged day

Revision ID: 0017_multiday_span
Revises: 0016_report_rollup
Create Date: 2026-11-30 11:45:00

A report over whole days corrects the day sums for messages engaged on several days by reading
their engagement; with the days each spans, it reads only those whose span meets its period
(the table only grows). The table is rebuilt from the ledger, and the engagement triggers that
list a message (0016) now also widen its span: insert and update on SQLite, the statement
function on PostgreSQL. The triggers' other statements are 0016's, taken from that file (a
migration does not change once shipped, so reading it is reading what ran).
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017_multiday_span"
down_revision: str | None = "0016_report_rollup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "report_engagement_multiday"


def _rollup() -> ModuleType:
    """Migration 0016, which wrote the roll-up triggers."""
    path = Path(__file__).with_name("0016_report_rollup.py")
    spec = importlib.util.spec_from_file_location("trouw_migration_0016", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _old_marks(v16: ModuleType, dialect: str) -> str:
    """0016's statement listing a message engaged on another day (as it wrote it)."""
    if dialect == "sqlite":
        return (
            f"INSERT INTO {_TABLE} (message_key, kind) "
            f"SELECT NEW.message_key, NEW.kind WHERE EXISTS ({v16._other_day('sqlite', 'NEW')}) "
            "ON CONFLICT DO NOTHING"
        )
    return (
        f" INSERT INTO {_TABLE} (message_key, kind) "
        "SELECT DISTINCT r.message_key, r.kind FROM new_rows r WHERE EXISTS "
        "(SELECT 1 FROM engagement e WHERE e.message_key = r.message_key "
        f"AND e.kind || '' = r.kind AND {v16._day('pg', 'e.at')} <> {v16._day('pg', 'r.at')}) "
        "ON CONFLICT DO NOTHING;"
    )


def _marks(v16: ModuleType, dialect: str) -> str:
    """The same, with the message's first and last day: from all its rows of that kind, and
    never narrowed (a span wider than the rows only costs a read; a deleted row leaves it)."""
    day = v16._day(dialect, "e.at")
    least, greatest = ("min", "max") if dialect == "sqlite" else ("LEAST", "GREATEST")
    widen = (
        "ON CONFLICT (message_key, kind) DO UPDATE SET "
        f"first_day = {least}({_TABLE}.first_day, excluded.first_day), "
        f"last_day = {greatest}({_TABLE}.last_day, excluded.last_day)"
    )
    if dialect == "sqlite":
        return (
            f"INSERT INTO {_TABLE} (message_key, kind, first_day, last_day) "
            f"SELECT NEW.message_key, NEW.kind, MIN({day}), MAX({day}) FROM engagement e "
            "WHERE e.message_key = NEW.message_key AND +e.kind = NEW.kind "
            f"GROUP BY e.message_key HAVING MIN({day}) <> MAX({day}) {widen}"
        )
    return (
        f" INSERT INTO {_TABLE} (message_key, kind, first_day, last_day) "
        f"SELECT e.message_key, e.kind, MIN({day}), MAX({day}) "
        "FROM (SELECT DISTINCT n.message_key, n.kind FROM new_rows n) r "
        "JOIN engagement e ON e.message_key = r.message_key AND e.kind || '' = r.kind "
        f"GROUP BY e.message_key, e.kind HAVING MIN({day}) <> MAX({day}) {widen};"
    )


def _engagement_triggers(v16: ModuleType, dialect: str, *, span: bool) -> list[str]:
    """0016's engagement triggers (SQLite: insert and update; PostgreSQL: the function), with
    the span kept (`span`) or as 0016 wrote them."""
    if dialect == "sqlite":
        found = [
            s
            for s in v16._sqlite_triggers()
            if s.startswith(
                (
                    "CREATE TRIGGER report_engagement_insert ",
                    "CREATE TRIGGER report_engagement_update ",
                )
            )
        ]
    else:
        found = [
            s.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
            for s in v16._postgres_triggers()
            if s.startswith("CREATE FUNCTION report_engagement_change()")
        ]
    if not span:
        return found
    old, new = _old_marks(v16, dialect), _marks(v16, dialect)
    assert all(old in s for s in found), "0016's triggers are not what this migration expects"
    return [s.replace(old, new) for s in found]


def _rebuild(v16: ModuleType, dialect: str, *, span: bool) -> None:
    """The table anew (with or without the span), filled from the ledger."""
    if dialect == "sqlite":  # its triggers write the table: gone while it is rebuilt
        for what in ("insert", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS report_engagement_{what}")
    op.drop_table(_TABLE)
    text = sqlmodel.sql.sqltypes.AutoString
    columns = [
        sa.Column("message_key", text(length=300), nullable=False),
        sa.Column("kind", text(length=16), nullable=False),
    ]
    if span:
        columns += [
            sa.Column("first_day", sa.Date(), nullable=False),
            sa.Column("last_day", sa.Date(), nullable=False),
        ]
    op.create_table(_TABLE, *columns, sa.PrimaryKeyConstraint("message_key", "kind"))
    day = v16._day(dialect, "x.at")
    if span:
        op.create_index(f"ix_{_TABLE}_last_day", _TABLE, ["last_day"])
        op.execute(
            f"INSERT INTO {_TABLE} (message_key, kind, first_day, last_day) "
            f"SELECT x.message_key, x.kind, MIN({day}), MAX({day}) FROM engagement x "
            f"GROUP BY x.message_key, x.kind HAVING MIN({day}) <> MAX({day})"
        )
    else:
        op.execute(
            f"INSERT INTO {_TABLE} (message_key, kind) "
            "SELECT x.message_key, x.kind FROM engagement x GROUP BY x.message_key, x.kind "
            f"HAVING COUNT(DISTINCT {day}) > 1"
        )
    for statement in _engagement_triggers(v16, dialect, span=span):
        op.execute(statement)


def upgrade() -> None:
    _rebuild(_rollup(), op.get_bind().dialect.name, span=True)


def downgrade() -> None:
    _rebuild(_rollup(), op.get_bind().dialect.name, span=False)
