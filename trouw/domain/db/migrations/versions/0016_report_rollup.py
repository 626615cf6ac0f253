"""report_rollup: per-day report counts kept by triggers on journey_run, message, engagement

Revision ID: 0016_report_rollup
Revises: 0015_worker_presence
Create Date: 2026-11-30 08:10:00

The triggers append +1/-1 rows to report_*_delta (an append waits on no other writer);
trouw.domain.measure.rollup.fold adds them into report_*_day. Existing rows are counted straight into
report_*_day here. Written out in this file (not imported) so that the migration stays what it
was when later code changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016_report_rollup"
down_revision: str | None = "0015_worker_presence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Both dialects: LIKE over the JSON text, as trouw.domain.measure.report reads "deferred" directly.
_DEFERRED = '(CAST({row}.status_history AS TEXT) LIKE \'%"status": "defer"%\')'
_TABLES = ("run", "message", "engagement")


def _day(dialect: str, expr: str) -> str:
    """The UTC day of a time column: SQLite stores UTC text, PostgreSQL timestamptz."""
    if dialect == "sqlite":
        return f"substr({expr}, 1, 10)"
    return f"(({expr}) AT TIME ZONE 'UTC')::date"


def _keys(dialect: str, table: str, row: str) -> list[tuple[str, str]]:
    """(roll-up column, expression over the ledger row `row`) for each key of `table`."""
    if table == "run":
        return [
            ("day", _day(dialect, f"{row}.started_at")),
            ("journey", f"{row}.journey"),
            ("version", f"{row}.version"),
            ("status", f"{row}.status"),
        ]
    if table == "message":
        return [
            ("day", _day(dialect, f"{row}.created_at")),
            ("journey", f"{row}.journey"),
            ("journey_version", f"COALESCE({row}.journey_version, '')"),
            ("step", f"{row}.step"),
            ("channel", f"{row}.channel"),
            ("state", f"{row}.state"),
            ("decision", f"{row}.decision"),
            ("reason", f"COALESCE({row}.reason, '')"),
            ("deferred", _DEFERRED.format(row=row)),
        ]
    return [
        ("day", _day(dialect, f"{row}.at")),
        ("journey", f"{row}.journey"),
        ("journey_version", f"COALESCE({row}.journey_version, '')"),
        ("step", f"{row}.step"),
        ("channel", f"{row}.channel"),
        ("kind", f"{row}.kind"),
    ]


_SOURCE = {"run": "journey_run", "message": "message", "engagement": "engagement"}
_COUNT = {"run": "runs", "message": "messages", "engagement": "messages"}


def _delta(dialect: str, table: str, row: str, n: int) -> str:
    keys = _keys(dialect, table, row)
    columns = ", ".join(c for c, _ in keys)
    values = ", ".join(e for _, e in keys)
    return f"INSERT INTO report_{table}_delta ({columns}, n) VALUES ({values}, {n})"


def _plus(dialect: str) -> str:
    """SQLite has no statistics: with "kind = ?" or "journey = ?" beside "message_key = ?" it
    may take the kind or journey index and scan a third of the table on every insert (a
    1,000,000-row load did not finish in 30 minutes). A unary "+" keeps an index off a column."""
    return "+" if dialect == "sqlite" else ""


def _same_message_day(dialect: str, row: str, *, other: bool) -> str:
    """Another engagement row of `row`'s message, kind and key columns on its UTC day."""
    version = (
        f"e.journey_version IS {row}.journey_version"
        if dialect == "sqlite"
        else f"e.journey_version IS NOT DISTINCT FROM {row}.journey_version"
    )
    plus = _plus(dialect)
    condition = (
        f"SELECT 1 FROM engagement e WHERE e.message_key = {row}.message_key "
        f"AND {plus}e.kind = {row}.kind AND {plus}e.journey = {row}.journey AND {version} "
        f"AND e.step = {row}.step AND e.channel = {row}.channel "
        f"AND {_day(dialect, 'e.at')} = {_day(dialect, f'{row}.at')}"
    )
    return condition + (f" AND e.id <> {row}.id" if other else "")


def _other_day(dialect: str, row: str) -> str:
    return (
        f"SELECT 1 FROM engagement e WHERE e.message_key = {row}.message_key "
        f"AND {_plus(dialect)}e.kind = {row}.kind "
        f"AND {_day(dialect, 'e.at')} <> {_day(dialect, f'{row}.at')}"
    )


def _multiday(row: str) -> str:
    return (
        "INSERT INTO report_engagement_multiday (message_key, kind) "
        f"VALUES ({row}.message_key, {row}.kind) ON CONFLICT DO NOTHING"
    )


def _changed(dialect: str, table: str) -> str:
    """The update condition: some key of the row changed."""
    exprs = [e for _, e in _keys(dialect, table, "{row}")]
    if table == "engagement":
        exprs.append("{row}.message_key")
    if dialect == "sqlite":
        return " OR ".join(f"({e.format(row='OLD')}) IS NOT ({e.format(row='NEW')})" for e in exprs)
    old = ", ".join(e.format(row="OLD") for e in exprs)
    new = ", ".join(e.format(row="NEW") for e in exprs)
    return f"ROW({old}) IS DISTINCT FROM ROW({new})"


def _sqlite_triggers() -> list[str]:
    out = []
    for table in ("run", "message"):
        source = _SOURCE[table]
        insert = _delta("sqlite", table, "NEW", 1)
        delete = _delta("sqlite", table, "OLD", -1)
        out += [
            f"CREATE TRIGGER report_{table}_insert AFTER INSERT ON {source} BEGIN {insert}; END",
            f"CREATE TRIGGER report_{table}_delete AFTER DELETE ON {source} BEGIN {delete}; END",
            f"CREATE TRIGGER report_{table}_update AFTER UPDATE ON {source} "
            f"WHEN {_changed('sqlite', table)} BEGIN {delete}; {insert}; END",
        ]
    # Engagement: a message counts once per kind and day, so only the day's first row adds 1
    # and only its last row's removal takes 1 away.
    add = (
        _delta("sqlite", "engagement", "NEW", 1).replace(" VALUES (", " SELECT ", 1)[:-1]
        + f" WHERE NOT EXISTS ({_same_message_day('sqlite', 'NEW', other=True)})"
    )
    remove = (
        _delta("sqlite", "engagement", "OLD", -1).replace(" VALUES (", " SELECT ", 1)[:-1]
        + f" WHERE NOT EXISTS ({_same_message_day('sqlite', 'OLD', other=False)})"
    )
    mark = (
        "INSERT INTO report_engagement_multiday (message_key, kind) "
        f"SELECT NEW.message_key, NEW.kind WHERE EXISTS ({_other_day('sqlite', 'NEW')}) "
        "ON CONFLICT DO NOTHING"
    )
    out += [
        f"CREATE TRIGGER report_engagement_insert AFTER INSERT ON engagement "
        f"BEGIN {add}; {mark}; END",
        f"CREATE TRIGGER report_engagement_delete AFTER DELETE ON engagement BEGIN {remove}; END",
        f"CREATE TRIGGER report_engagement_update AFTER UPDATE ON engagement "
        f"WHEN {_changed('sqlite', 'engagement')} BEGIN {remove}; {add}; {mark}; END",
    ]
    return out


def _pg_changes(table: str, op_name: str) -> str:
    """The statement's rows as (keys..., sign): +1 for each new row, -1 for each old one."""
    keys = ", ".join(f"{e} AS {c}" for c, e in _keys("pg", table, "r"))
    extra = ", r.message_key, r.journey_version AS raw_version" if table == "engagement" else ""
    parts = []
    if op_name != "INSERT":
        parts.append(f"SELECT {keys}{extra}, -1 AS sign FROM old_rows r")
    if op_name != "DELETE":
        parts.append(f"SELECT {keys}{extra}, 1 AS sign FROM new_rows r")
    return " UNION ALL ".join(parts)


def _pg_statements(table: str, op_name: str) -> str:
    """What a statement on the ledger adds to report_<table>_delta (PostgreSQL)."""
    columns = [c for c, _ in _keys("pg", table, "r")]
    names = ", ".join(columns)
    if table != "engagement":
        return (
            f"INSERT INTO report_{table}_delta ({names}, n) SELECT {names}, SUM(sign) "
            f"FROM ({_pg_changes(table, op_name)}) c GROUP BY {names} HAVING SUM(sign) <> 0;"
        )
    # Engagement: per message, kind and day, whether it had rows before the statement and has
    # rows after it (rows now, less the statement's net change); only that flip counts.
    # Statement level (transition tables): a row trigger would see the whole statement's
    # changes from each row and count an UPDATE that moves several rows wrong.
    sources = [*(f"n.{c}" for c in columns), "n.message_key", "n.raw_version"]
    group = ", ".join(sources)
    # The message rows are the lock (row locks: no limit on how many one statement takes).
    locks = (
        "PERFORM 1 FROM message WHERE message_key IN (SELECT x.message_key "
        f"FROM ({_pg_changes(table, op_name)}) x) ORDER BY message_key FOR NO KEY UPDATE;"
    )
    # "|| ''" keeps the kind and journey indexes out of the plan, as "+" does on SQLite.
    now = (
        "(SELECT COUNT(*) FROM engagement e WHERE e.message_key = n.message_key "
        "AND e.kind || '' = n.kind AND e.journey || '' = n.journey "
        "AND e.journey_version IS NOT DISTINCT FROM n.raw_version "
        "AND e.step = n.step AND e.channel = n.channel "
        f"AND {_day('pg', 'e.at')} = n.day)"
    )
    flips = (
        f"SELECT {names}, (CASE WHEN now > 0 THEN 1 ELSE 0 END) "
        "- (CASE WHEN now - net > 0 THEN 1 ELSE 0 END) AS flip "
        f"FROM (SELECT {group}, SUM(n.sign) AS net, {now} AS now "
        f"FROM ({_pg_changes(table, op_name)}) n GROUP BY {group}) g"
    )
    out = (
        f"{locks} "
        f"INSERT INTO report_engagement_delta ({names}, n) SELECT {names}, SUM(flip) "
        f"FROM ({flips}) f GROUP BY {names} HAVING SUM(flip) <> 0;"
    )
    if op_name != "DELETE":
        out += (
            " INSERT INTO report_engagement_multiday (message_key, kind) "
            "SELECT DISTINCT r.message_key, r.kind FROM new_rows r WHERE EXISTS "
            "(SELECT 1 FROM engagement e WHERE e.message_key = r.message_key "
            f"AND e.kind || '' = r.kind AND {_day('pg', 'e.at')} <> {_day('pg', 'r.at')}) "
            "ON CONFLICT DO NOTHING;"
        )
    return out


def _postgres_triggers() -> list[str]:
    """Statement-level triggers over transition tables: one INSERT ... SELECT per statement
    (a bulk load of a million rows costs a GROUP BY per batch, not a function call per row)."""
    out = []
    for table in _TABLES:
        source = _SOURCE[table]
        body = " ".join(
            f"{'IF' if n == 0 else 'ELSIF'} TG_OP = '{op_name}' THEN "
            f"{_pg_statements(table, op_name)}"
            for n, op_name in enumerate(("INSERT", "UPDATE", "DELETE"))
        )
        # The engagement trigger looks each message's rows up by message key. A table filled in
        # one long transaction has no statistics yet, and the planner then scanned it whole
        # for each message (a 1,000,000-row load ran for 28 minutes): the index, always.
        options = "SET enable_seqscan = off " if table == "engagement" else ""
        out.append(
            f"CREATE FUNCTION report_{table}_change() RETURNS trigger LANGUAGE plpgsql "
            f"{options}AS $$ BEGIN {body} END IF; RETURN NULL; END $$"
        )
        for op_name, referencing in (
            ("INSERT", "NEW TABLE AS new_rows"),
            ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("DELETE", "OLD TABLE AS old_rows"),
        ):
            out.append(
                f"CREATE TRIGGER report_{table}_{op_name.lower()} AFTER {op_name} ON {source} "
                f"REFERENCING {referencing} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION report_{table}_change()"
            )
    return out


def _backfill(dialect: str) -> list[str]:
    """Counts of the rows already there, straight into the day tables."""
    out = []
    for table in _TABLES:
        keys = _keys(dialect, table, "x")
        columns = ", ".join(c for c, _ in keys)
        exprs = ", ".join(e for _, e in keys)
        count = "COUNT(DISTINCT x.message_key)" if table == "engagement" else "COUNT(*)"
        out.append(
            f"INSERT INTO report_{table}_day ({columns}, {_COUNT[table]}) "
            f"SELECT {exprs}, {count} FROM {_SOURCE[table]} x GROUP BY {exprs}"
        )
    out.append(
        "INSERT INTO report_engagement_multiday (message_key, kind) "
        "SELECT x.message_key, x.kind FROM engagement x GROUP BY x.message_key, x.kind "
        f"HAVING COUNT(DISTINCT {_day(dialect, 'x.at')}) > 1"
    )
    return out


def _key_columns(table: str) -> list[sa.Column[object]]:
    text = sqlmodel.sql.sqltypes.AutoString
    if table == "run":
        return [
            sa.Column("journey", text(length=64), nullable=False),
            sa.Column("version", text(length=64), nullable=False),
            sa.Column("status", text(length=16), nullable=False),
        ]
    common = [
        sa.Column("journey", text(length=64), nullable=False),
        sa.Column("journey_version", text(length=64), nullable=False),
        sa.Column("step", text(length=64), nullable=False),
        sa.Column("channel", text(length=8), nullable=False),
    ]
    if table == "message":
        return [
            *common,
            sa.Column("state", text(length=16), nullable=False),
            sa.Column("decision", text(length=16), nullable=False),
            sa.Column("reason", text(length=64), nullable=False),
            sa.Column("deferred", sa.Boolean(), nullable=False),
        ]
    return [*common, sa.Column("kind", text(length=16), nullable=False)]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in _TABLES:
        keys = ["day", *(c.name for c in _key_columns(table))]
        op.create_table(
            f"report_{table}_day",
            sa.Column("day", sa.Date(), nullable=False),
            *_key_columns(table),
            sa.Column(_COUNT[table], sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint(*keys),
        )
        op.create_table(
            f"report_{table}_delta",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("day", sa.Date(), nullable=False),
            *_key_columns(table),
            sa.Column("n", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "report_engagement_multiday",
        sa.Column("message_key", text(length=300), nullable=False),
        sa.Column("kind", text(length=16), nullable=False),
        sa.PrimaryKeyConstraint("message_key", "kind"),
    )
    # A report's first and last partial days read the ledgers by time.
    op.create_index("ix_message_created_at", "message", ["created_at"])
    op.create_index("ix_journey_run_started_at", "journey_run", ["started_at"])
    # Attribution reads the clicks (and opens, deliveries where on) of a period.
    op.create_index("ix_engagement_kind_at", "engagement", ["kind", "at"])
    for statement in _backfill(dialect):
        op.execute(statement)
    for statement in _sqlite_triggers() if dialect == "sqlite" else _postgres_triggers():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in _TABLES:
        source = _SOURCE[table]
        if dialect == "sqlite":
            for what in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS report_{table}_{what}")
        else:
            for what in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS report_{table}_{what} ON {source}")
            op.execute(f"DROP FUNCTION IF EXISTS report_{table}_change()")
    op.drop_index("ix_engagement_kind_at", table_name="engagement")
    op.drop_index("ix_journey_run_started_at", table_name="journey_run")
    op.drop_index("ix_message_created_at", table_name="message")
    op.drop_table("report_engagement_multiday")
    for table in _TABLES:
        op.drop_table(f"report_{table}_delta")
        op.drop_table(f"report_{table}_day")
