"""Benchmark: the journey report over a year of a shop.

Run: .venv/bin/python bench/report_bench.py                       (SQLite and PostgreSQL)
     .venv/bin/python bench/report_bench.py --messages 100000 --orders 20000   (a quick run)
Prints a report; docs/performance.md has the figures. Not a test: nothing here asserts.

1. Report: 1,000,000 messages over a year (10 journeys x 4 steps, 80 % sent, the rest
   suppressed by reason, 5 % deferred once), engagement for them (60 % delivered, 25 % opened,
   8 % clicked), 200,000 orders (3 % returned) and 100,000 vouchers issued by messages; then
   `journey_report` over the whole year (funnel + attribution of every order), timed, next to
   a reference query in the same run: one `GROUP BY` count over the message table.
The click redirect has its own script: bench/click_bench.py.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from bench_databases import on_each_database  # noqa: E402

from trouw.domain.db.engine import make_engine, migrate  # noqa: E402
from trouw.domain.db.models import (  # noqa: E402
    Engagement,
    JourneyRun,
    Message,
    Order,
    ReportEngagementDelta,
    ReportMessageDelta,
    ReportRunDelta,
    Voucher,
)
from trouw.domain.measure.attribution import AttributionRules  # noqa: E402
from trouw.domain.measure.report import journey_report  # noqa: E402
from trouw.domain.measure.rollup import fold  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
CHUNK = 20_000
REASONS = ("no_consent", "frequency_cap", "smart_sending", "unsubscribed")


def _insert(engine: sa.Engine, model: Any, rows: list[dict[str, Any]]) -> None:
    table = model.__table__
    with engine.begin() as connection:
        for at in range(0, len(rows), CHUNK):
            connection.execute(table.insert(), rows[at : at + CHUNK])


def populate(engine: sa.Engine, messages: int, orders: int, customers: int) -> dict[str, int]:
    rng = random.Random(7)
    counts = {"messages": 0, "engagement": 0, "orders": 0, "vouchers": 0, "runs": 0}
    runs, batch, touches, vouchers = [], [], [], []
    for n in range(messages):
        customer = f"c{rng.randrange(customers)}"
        journey = f"journey{n % 10}"
        created = START + timedelta(seconds=rng.randrange(int(YEAR.total_seconds())))
        key = f"w{n // 4}:{journey}:step{n % 4}"
        if n % 4 == 0:
            runs.append(
                {
                    "workflow_id": f"w{n // 4}",
                    "customer_id": customer,
                    "journey": journey,
                    "version": "v1",
                    "reentry_key": str(n),
                    "event_source_id": str(n),
                    "started_at": created,
                    "status": rng.choice(("completed", "completed", "converted", "held_out")),
                }
            )
        sent = rng.random() < 0.8
        history = [{"status": "allowed", "at": created.isoformat(), "detail": None}]
        if rng.random() < 0.05:
            history.insert(0, {"status": "defer", "at": created.isoformat(), "reason": "quiet"})
        batch.append(
            {
                "message_key": key,
                "customer_id": customer,
                "journey": journey,
                "journey_version": "v1",
                "step": f"step{n % 4}",
                "channel": "email" if n % 3 else "sms",
                "category": "service",
                "template": "care_tips",
                "created_at": created,
                "decision": "send" if sent else "suppress",
                "reason": None if sent else rng.choice(REASONS),
                "state": "sent" if sent else "suppressed",
                "status_history": history,
                "consent_snapshot": {},
                "attempts": 1,
            }
        )
        if sent:
            for kind, share, delay in (
                ("delivered", 0.6, 60),
                ("opened", 0.25, 3600),
                ("clicked", 0.08, 7200),
            ):
                if rng.random() < share:
                    # A fifth of the opens come back 1-3 days later: engaged on several days.
                    again = kind == "opened" and rng.random() < 0.2
                    for repeat in range(2 if again else 1):
                        later = timedelta(days=rng.randint(1, 3)) if repeat else timedelta(0)
                        touches.append(
                            {
                                "key": f"{key}:{kind}:{repeat}",
                                "message_key": key,
                                "customer_id": customer,
                                "journey": journey,
                                "journey_version": "v1",
                                "step": f"step{n % 4}",
                                "channel": "email",
                                "kind": kind,
                                "at": created + timedelta(seconds=delay) + later,
                                "source": "sendgrid",
                            }
                        )
            if n % 10 == 0 and len(vouchers) < orders // 2:
                vouchers.append(
                    {
                        "code": f"V{n}",
                        "customer_id": customer,
                        "value": 5,
                        "currency": "EUR",
                        "issued_at": created,
                        "expires_at": created + timedelta(days=30),
                        "journey": journey,
                        "message_key": key,
                    }
                )
        if len(batch) >= 100_000:
            _insert(engine, Message, batch)
            counts["messages"] += len(batch)
            batch = []
    _insert(engine, Message, batch)
    counts["messages"] += len(batch)
    _insert(engine, JourneyRun, runs)
    _insert(engine, Engagement, touches)
    _insert(engine, Voucher, vouchers)
    counts.update(runs=len(runs), engagement=len(touches), vouchers=len(vouchers))
    order_rows = []
    for n in range(orders):
        placed = START + timedelta(seconds=rng.randrange(int(YEAR.total_seconds())))
        order_rows.append(
            {
                "id": f"o{n}",
                "customer_id": f"c{rng.randrange(customers)}",
                "channel": rng.choice(("web", "pos")),
                "store": rng.choice((None, "Gent", "Brugge")),
                "placed_at": placed,
                "returned_at": placed + timedelta(days=10) if rng.random() < 0.03 else None,
                "total": round(rng.lognormvariate(3.5, 0.6), 2),
                "currency": "EUR",
            }
        )
    _insert(engine, Order, order_rows)
    counts["orders"] = len(order_rows)
    return counts


def time_report(engine: sa.Engine, period: tuple[datetime, datetime]) -> dict[str, Any]:
    """The report from the roll-ups and from the ledgers (as before them), and the reference."""
    m = Message.__table__  # type: ignore[attr-defined]
    start, end = period
    with engine.connect() as connection:
        started = time.perf_counter()
        connection.execute(
            sa.select(m.c.journey, m.c.step, sa.func.count()).group_by(m.c.journey, m.c.step)
        ).all()
        reference = time.perf_counter() - started
        timed = {}
        bodies = {}
        for label, rollups in (("rollup", True), ("ledger", False)):
            started = time.perf_counter()
            report = journey_report(
                connection, AttributionRules(), start=start, end=end, rollups=rollups
            )
            timed[label] = time.perf_counter() - started
            bodies[label] = report.to_json()
    return {
        "rollup_s": timed["rollup"],
        "ledger_s": timed["ledger"],
        "reference_s": reference,
        "attributed": report.attributed_orders,
        "same": bodies["rollup"] == bodies["ledger"],
    }


def report_bench_pending(connection: sa.Connection) -> str:
    """How many delta rows wait for a fold, per table."""
    found = []
    for model in (ReportRunDelta, ReportMessageDelta, ReportEngagementDelta):
        table = model.__table__  # type: ignore[attr-defined]
        n = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        found.append(f"{table.name} {n:,}")
    return ", ".join(found)


def bench_report(url: str, label: str, args: argparse.Namespace) -> None:
    engine = make_engine(url) if url.startswith("sqlite") else sa.create_engine(url)
    migrate(engine)
    started = time.perf_counter()
    counts = populate(engine, args.messages, args.orders, args.customers)
    fill = time.perf_counter() - started
    print(
        f"{label}: {counts['messages']:,} messages, {counts['engagement']:,} engagement rows, "
        f"{counts['orders']:,} orders, {counts['vouchers']:,} vouchers, {counts['runs']:,} runs "
        f"(filled in {fill:.0f} s, triggers writing the roll-up deltas)"
    )
    with engine.connect() as connection:
        pending = report_bench_pending(connection)
    started = time.perf_counter()
    with engine.begin() as connection:
        folded = fold(connection)
    print(
        f"  fold of the whole year's {sum(folded.values()):,} deltas ({pending}): "
        f"{time.perf_counter() - started:.1f} s"
    )
    periods = {
        "the year (whole days)": (START, START + YEAR),
        "a quarter from 09:30 to 17:45": (
            START + timedelta(days=90, hours=9, minutes=30),
            START + timedelta(days=181, hours=17, minutes=45),
        ),
    }
    for name, period in periods.items():
        for _ in range(args.repeat):
            r = time_report(engine, period)
            print(
                f"  {name}: report from roll-ups {r['rollup_s']:.2f} s, from the ledgers "
                f"{r['ledger_s']:.2f} s ({r['ledger_s'] / r['rollup_s']:.1f}x), reference "
                f"GROUP BY {r['reference_s']:.2f} s (roll-ups / reference "
                f"{r['rollup_s'] / r['reference_s']:.1f}x); attributed {r['attributed']:,} "
                f"orders; same numbers: {r['same']}"
            )
    bench_writes(engine, args.writes)  # last: it drops the triggers
    engine.dispose()


def _one_by_one(engine: sa.Engine, tag: str, n: int) -> float:
    """Seconds per write of a message, its state change and a delivery, one transaction each
    (as sends and callbacks write them)."""
    m = Message.__table__  # type: ignore[attr-defined]
    e = Engagement.__table__  # type: ignore[attr-defined]
    started = time.perf_counter()
    for i in range(n):
        key = f"{tag}{i}"
        at = START + timedelta(minutes=i)
        with engine.begin() as connection:
            connection.execute(
                m.insert(),
                {
                    "message_key": key,
                    "customer_id": f"c{i}",
                    "journey": "welcome",
                    "step": "tips",
                    "channel": "email",
                    "category": "service",
                    "template": "care_tips",
                    "created_at": at,
                    "status_history": [],
                    "consent_snapshot": {},
                },
            )
        with engine.begin() as connection:
            connection.execute(
                m.update().where(m.c.message_key == key).values(state="sent", decision="send")
            )
        with engine.begin() as connection:
            connection.execute(
                e.insert(),
                {
                    "key": f"{key}:d",
                    "message_key": key,
                    "customer_id": f"c{i}",
                    "journey": "welcome",
                    "step": "tips",
                    "channel": "email",
                    "kind": "delivered",
                    "at": at,
                    "source": "sendgrid",
                },
            )
    return (time.perf_counter() - started) / (3 * n)


def bench_writes(engine: sa.Engine, n: int) -> None:
    """What the triggers cost each write: with them, then with them dropped, same database."""
    with_triggers = _one_by_one(engine, "t", n)
    with engine.begin() as connection:
        for table, source in (
            ("run", "journey_run"),
            ("message", "message"),
            ("engagement", "engagement"),
        ):
            for what in ("insert", "update", "delete"):
                if engine.dialect.name == "sqlite":
                    connection.execute(sa.text(f"DROP TRIGGER report_{table}_{what}"))
                else:
                    connection.execute(sa.text(f"DROP TRIGGER report_{table}_{what} ON {source}"))
    without = _one_by_one(engine, "p", n)
    print(
        f"  writes, one transaction each ({3 * n:,} each way): {with_triggers * 1000:.2f} ms with "
        f"the roll-up triggers, {without * 1000:.2f} ms without ({with_triggers / without:.2f}x)"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--skip", choices=("sqlite", "postgres"), action="append")
    args = parser.parse_args()
    skip = set(args.skip or ())
    print(f"load average before: {os.getloadavg()}; cores: {os.cpu_count()}")
    print("(a shared machine: absolute figures move with the other work on it; ratios hold)")
    on_each_database(lambda url, label: bench_report(url, label, args), skip=skip, file="report.db")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
