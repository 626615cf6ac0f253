"""Benchmark: what the funnel per segment (`trouw report --segments`) costs on top of the report.

Run: .venv/bin/python bench/segment_funnel_bench.py [--messages 200000] [--orders 40000]
Builds the year of a shop that bench/report_bench.py builds (its `populate`), plus a segment
history: every customer scored by a weekly refresh, moving segment about every two months (the
rows insight_segment_change keeps). Then, on SQLite (and PostgreSQL unless --skip postgres), the
report over the whole year without and with `segments=True`, each timed twice (the second run
counts), and the ratio between them measured in the same run. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from bench_databases import on_each_database  # noqa: E402
from report_bench import START, YEAR, populate  # noqa: E402

from trouw.domain.db.engine import make_engine, migrate  # noqa: E402
from trouw.domain.db.models import InsightSegmentChange  # noqa: E402
from trouw.domain.measure.attribution import AttributionRules  # noqa: E402
from trouw.domain.measure.report import journey_report  # noqa: E402

SEGMENTS = ("champions", "loyal", "promising", "new", "needs_attention", "at_risk", "lost")


def segment_history(engine: sa.Engine, customers: int) -> int:
    rng = random.Random(11)
    rows = []
    for n in range(customers):
        at = START + timedelta(days=rng.randrange(0, 60))
        week = 0
        while at < START + YEAR:
            rows.append(
                {
                    "customer_id": f"c{n}",
                    "refresh_id": f"r{week}-{n}",
                    "at": at,
                    "segment": rng.choice(SEGMENTS),
                    "previous_segment": None,
                }
            )
            at += timedelta(weeks=rng.randrange(4, 13))
            week += 1
    table = InsightSegmentChange.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        for at in range(0, len(rows), 20_000):
            connection.execute(table.insert(), rows[at : at + 20_000])
    return len(rows)


def timed(engine: sa.Engine, segments: bool) -> float:
    best = 0.0
    for _ in range(2):  # the second run counts: the first warms the page cache
        started = time.perf_counter()
        with engine.connect() as connection:
            journey_report(
                connection, AttributionRules(), start=START, end=START + YEAR, segments=segments
            )
        best = time.perf_counter() - started
    return best


def bench(url: str, label: str, args: argparse.Namespace) -> None:
    engine = make_engine(url)
    migrate(engine)
    counts = populate(engine, args.messages, args.orders, args.customers)
    changes = segment_history(engine, args.customers)
    if args.composite_index:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE INDEX ix_bench_segment_change_customer_at "
                    "ON insight_segment_change (customer_id, at)"
                )
            )
    plain = timed(engine, False)
    split = timed(engine, True)
    print(
        f"{label}: {counts['messages']:,} messages, {counts['engagement']:,} engagement rows, "
        f"{counts['orders']:,} orders, {changes:,} segment changes"
    )
    print(f"  report                 {plain:7.2f} s")
    print(f"  report with segments   {split:7.2f} s   ({split / plain:.2f}x the report)")
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--orders", type=int, default=40_000)
    parser.add_argument("--customers", type=int, default=30_000)
    parser.add_argument("--skip", choices=("sqlite", "postgres"), action="append")
    parser.add_argument(
        "--composite-index",
        action="store_true",
        help="Add an index on insight_segment_change (customer_id, at) before timing.",
    )
    args = parser.parse_args()
    skip = set(args.skip or [])
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    on_each_database(lambda url, label: bench(url, label, args), skip=skip, file="bench.db")
    return 0


if __name__ == "__main__":
    sys.exit(main())
