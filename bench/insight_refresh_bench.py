"""Time and peak memory of a full insight refresh, database read included, on SQLite and PostgreSQL.

Usage: .venv/bin/python bench/insight_refresh_bench.py [--customers 100000] [--lines 1000000]
       [--no-postgres]
A synthetic shop (customers who buy at their own pace over two years, 5,000 products in 40
categories, 1-6 lines per order) is written straight into the tables; then each database runs
the refresh in a child process of its own: the very functions the refresh activities call
(load_facts -> score_customers + recommend -> stage -> apply_chunk per chunk -> finish), so the
figure is the refresh minus Temporal's scheduling. Peak memory is the child's peak RSS
(getrusage), which includes the interpreter and numpy/scipy (~110 MB before any work); its CPU
time (user + system) is printed too, since on a shared machine the wall clock mostly measures
the other jobs (on PostgreSQL it leaves out the server's own CPU).
As a reference measured in the same run, the child first times a bare `SELECT` of the same
rows (the database read alone), so the ratio refresh/read stays valid on a loaded machine.
Figures: docs/performance.md ("Insight refresh").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get(
    "TROUW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


def fill(engine: Any, *, customers: int, lines: int, products: int = 5000, seed: int = 7) -> int:
    """Write a shop of `customers` with about `lines` order lines; returns the orders written."""
    from trouw.domain.db.models import Order, OrderLine, Product

    rng = random.Random(seed)
    order_table = Order.__table__  # type: ignore[attr-defined]
    line_table = OrderLine.__table__  # type: ignore[attr-defined]
    product_table = Product.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(
            product_table.insert(),
            [
                {
                    "sku": f"SKU-{n:05d}",
                    "name": f"Product {n}",
                    "category": f"cat-{n % 40:02d}",
                    "price": n % 50 + 1,
                }
                for n in range(products)
            ],
        )
    per_customer = lines / customers / 3.5  # lines per order average 3.5
    start = AS_OF - timedelta(days=730)
    orders_batch: list[dict[str, Any]] = []
    lines_batch: list[dict[str, Any]] = []
    written = 0

    def flush() -> None:
        with engine.begin() as connection:
            if orders_batch:
                connection.execute(order_table.insert(), orders_batch)
            if lines_batch:
                connection.execute(line_table.insert(), lines_batch)
        orders_batch.clear()
        lines_batch.clear()

    for customer in range(customers):
        count = max(1, int(rng.expovariate(1 / per_customer) + 0.5))
        first = start + timedelta(days=rng.uniform(0, 700))
        # The customer's orders fall between the first and as_of, at a pace of their own
        # (exponential gaps, squeezed into the time left), so every generated line is kept.
        gaps = [rng.expovariate(1.0) for _ in range(count)]
        room = (AS_OF - first).total_seconds() * rng.uniform(0.3, 1.0) / sum(gaps)
        favourite = rng.randrange(40)
        at = first
        for number in range(count):
            order_id = f"O{customer:06d}-{number}"
            size = rng.randint(1, 6)
            total = 0
            for line_no in range(1, size + 1):
                category = favourite if rng.random() < 0.6 else rng.randrange(40)
                sku = rng.randrange(products // 40) * 40 + category
                price = sku % 50 + 1
                lines_batch.append(
                    {
                        "order_id": order_id,
                        "line_no": line_no,
                        "sku": f"SKU-{sku:05d}",
                        "name": f"Product {sku}",
                        "qty": 1,
                        "unit_price": price,
                    }
                )
                total += price
            orders_batch.append(
                {
                    "id": order_id,
                    "customer_id": f"C{customer:06d}",
                    "channel": "pos",
                    "placed_at": at,
                    "total": total,
                    "currency": "EUR",
                }
            )
            written += 1
            at = at + timedelta(seconds=gaps[number] * room)
        if len(lines_batch) > 50_000:
            flush()
    flush()
    return written


def child(database: str, out: Path) -> None:
    """One refresh in this process; prints a JSON line of figures."""
    import sqlalchemy as sa

    from trouw.domain.db.engine import make_engine
    from trouw.domain.insight.store import (
        apply_chunk,
        chunk_bounds,
        facts_query,
        finish_refresh,
        score_and_stage,
    )
    from trouw.settings import Settings

    engine = make_engine(database) if database.startswith("sqlite") else _pg(database)
    settings = Settings(home=out, database_url="sqlite://", signing_keys=["bench"])
    begin = time.perf_counter()
    cpu = _cpu()
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=20000).execute(
            facts_query(AS_OF)
        )
        rows = sum(len(partition) for partition in result.partitions())
    read_seconds = time.perf_counter() - begin
    read_cpu = _cpu() - cpu
    server_read = _server_cpu(engine)
    phases: dict[str, float] = {}
    begin = time.perf_counter()
    cpu = _cpu()

    def mark(what: object) -> None:
        name = str(what).split(" ")[0]
        phases[name] = time.perf_counter() - begin
        if os.environ.get("TROUW_BENCH_TRACE"):
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"# {phases[name]:6.1f} s  peak {peak:5.0f} MB  {what}", file=sys.stderr)

    refresh_id = f"bench-{uuid.uuid4().hex[:8]}"
    customers = score_and_stage(
        engine,
        settings,
        refresh_id=refresh_id,
        as_of=AS_OF,
        horizon_days=None,
        now=datetime.now(UTC),
        progress=mark,
    )
    staged = time.perf_counter() - begin
    events = 0
    for first, last in chunk_bounds(engine, refresh_id=refresh_id, size=10_000):
        events += apply_chunk(
            engine,
            refresh_id=refresh_id,
            first=first,
            last=last,
            now=datetime.now(UTC),
            next_order_shift=timedelta(days=7),
        ).events
    finish_refresh(engine, refresh_id=refresh_id, now=datetime.now(UTC))
    total = time.perf_counter() - begin
    total_cpu = _cpu() - cpu
    server_total = _server_cpu(engine)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT count(*) FROM customer_insight")).scalar_one()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": rows,
                "read_seconds": read_seconds,
                "read_cpu_seconds": read_cpu,
                "total_cpu_seconds": total_cpu,
                "server_read_cpu_seconds": server_read,
                "server_refresh_cpu_seconds": (
                    None
                    if server_total is None or server_read is None
                    else server_total - server_read
                ),
                "customers": customers,
                "stored": stored,
                "scored_seconds": phases.get("recommending", 0.0),
                "read_in_refresh_seconds": phases.get("scoring", 0.0),
                "staged_seconds": staged,
                "total_seconds": total,
                "peak_rss_mb": peak_mb,
            }
        )
    )


def _cpu() -> float:
    """CPU seconds of this process so far: on a shared machine, wall time waits for the others."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


APPLICATION = "trouw-insight-bench"


def _server_cpu(engine: Any) -> float | None:
    """CPU seconds the PostgreSQL backends of this process's connections used so far (from
    /proc: the server runs on this machine); None on SQLite, which runs in the process.

    Backends live as long as their pooled connection, so the sum covers all the work they did.
    """
    import sqlalchemy as sa

    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as connection:
        pids = connection.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
            {"name": APPLICATION},
        ).scalars()
        ticks = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None  # not this machine's server, or not readable
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _pg(url: str) -> Any:
    import sqlalchemy as sa

    base, _, schema = url.partition("#schema=")
    return sa.create_engine(
        base,
        connect_args={"options": f"-csearch_path={schema}", "application_name": APPLICATION},
    )


def prepare(database: str, *, customers: int, lines: int) -> tuple[str, Any]:
    """A migrated, filled database; returns its URL for the child and a cleanup."""
    import sqlalchemy as sa

    from trouw.domain.db.engine import make_engine, migrate

    if database == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="insight-bench-"))
        url = f"sqlite:///{directory / 'bench.db'}"
        engine = make_engine(url)
        cleanup: Any = lambda: shutil.rmtree(directory)  # noqa: E731
    else:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(POSTGRES_URL)
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES_URL}#schema={schema}"
        engine = _pg(url)

        def cleanup() -> None:
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))

    migrate(engine)
    begin = time.perf_counter()
    orders = fill(engine, customers=customers, lines=lines)
    print(f"# {database}: wrote {orders} orders in {time.perf_counter() - begin:.0f} s")
    engine.dispose()
    return url, cleanup


def _maybe(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def postgres_reachable() -> bool:
    import sqlalchemy as sa

    try:
        with sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2}).connect():
            return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("URL", "HOME"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    print(f"# insight refresh bench, {platform.python_version()}, {os.cpu_count()} cores")
    print(f"# load average at start: {os.getloadavg()[0]:.1f} (a shared machine)")
    databases = ["sqlite"] + ([] if args.no_postgres or not postgres_reachable() else ["postgres"])
    print(
        "database   | lines     | customers | read (s) | refresh (s) | refresh/read "
        "| of which scoring (s) | refresh CPU (s) | read CPU (s) | server CPU refresh/read (s) "
        "| peak RSS (MB)"
    )
    for database in databases:
        url, cleanup = prepare(database, customers=args.customers, lines=args.lines)
        try:
            result = subprocess.run(
                [sys.executable, __file__, "--child", url, tempfile.mkdtemp()],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
        finally:
            cleanup()
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"{database:10} | {figures['rows']:9,} | {figures['customers']:9,} | "
            f"{figures['read_seconds']:8.1f} | {figures['total_seconds']:11.1f} | "
            f"{figures['total_seconds'] / figures['read_seconds']:12.1f} | "
            f"{figures['scored_seconds'] - figures['read_in_refresh_seconds']:20.1f} | "
            f"{figures['total_cpu_seconds']:15.1f} | {figures['read_cpu_seconds']:12.1f} | "
            f"{_maybe(figures['server_refresh_cpu_seconds'])} / "
            f"{_maybe(figures['server_read_cpu_seconds'])} | "
            f"{figures['peak_rss_mb']:13.0f}"
        )
    print(f"# load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
