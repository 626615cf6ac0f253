"""Rows per second and peak memory of `trouw import orders` on SQLite (and PostgreSQL if reachable).

Usage: .venv/bin/python bench/import_bench.py [--lines 100000 20000] [--no-postgres]
Generates order-line CSVs (Benelux style: `;`, decimal comma, dd-mm-yyyy) in a temp dir with
30% as many orders as lines, 5,000 customers and 200 products; each import runs in a child
process on a fresh database (PostgreSQL: a schema of its own), so memory figures are clean.
Memory: tracemalloc peak (Python allocations during the import) and RSS growth (peak RSS from
getrusage minus RSS before the import). Import speed is measured in a separate run without
tracemalloc, which slows Python about 3x (SQLite only; --no-trace skips it). The re-import
column imports the same file again: every order already there. Figures: docs/imports.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import POSTGRES_URL, postgres_available  # noqa: E402


def generate(path: Path, *, lines: int, customers: int = 5000, products: int = 200) -> None:
    """An order-line export: orders of 1-6 lines, rows of one order adjacent, dates ascending."""
    rng = random.Random(7)
    orders = max(1, int(lines * 0.3))
    start = date(2024, 1, 1)
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(
            "order_id;customer_id;placed_at;channel;store;sku;name;qty;unit_price;customer_email\n"
        )
        written = 0
        for number in range(orders):
            remaining_orders = orders - number
            left = lines - written
            size = left if remaining_orders == 1 else max(1, min(6, left - (remaining_orders - 1)))
            size = min(size, rng.randint(1, 6)) if remaining_orders > 1 else size
            customer = rng.randrange(customers)
            day = start + timedelta(days=number * 700 // orders)
            channel = "pos" if rng.random() < 0.7 else "web"
            for _ in range(size):
                sku = rng.randrange(products)
                price = f"{sku % 50 + 1},{sku % 100:02d}"
                handle.write(
                    f"O{number:07d};C{customer:05d};{day:%d-%m-%Y} 1{number % 10}:30;{channel};"
                    f"Gent;SKU-{sku:03d};Artikel {sku};{rng.randint(1, 3)};{price};"
                    f"c{customer}@example.com\n"
                )
            written += size
    if written != lines:
        raise SystemExit(f"generator wrote {written} lines, wanted {lines}")


def products_file(path: Path, *, products: int = 200) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("sku;name;category;price;consumption_days\n")
        for sku in range(products):
            handle.write(f"SKU-{sku:03d};Artikel {sku};garden;{sku % 50 + 1},{sku % 100:02d};60\n")


def _engine(database: str, workdir: Path):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from trouw.domain.db.engine import make_engine, migrate

    if database == "sqlite":
        engine = make_engine(f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}")
        migrate(engine)
        return engine, None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    migrate(engine)

    def drop() -> None:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return engine, drop


def child(
    database: str, csv_path: Path, products_path: Path, *, trace: bool, reimport: bool
) -> dict[str, float]:
    """One measured import in this (child) process."""
    import tracemalloc

    import psutil

    from trouw.settings import Settings
    from trouw.ways_in.imports import import_file

    workdir = csv_path.parent
    settings = Settings(home=workdir / "home", signing_keys=["bench"])
    engine, drop = _engine(database, workdir)
    try:
        import_file(kind="products", path=products_path, engine=engine, settings=settings)
        rss_before = psutil.Process().memory_info().rss
        if trace:
            tracemalloc.start()
        began, cpu = time.perf_counter(), time.process_time()
        report = import_file(
            kind="orders", path=csv_path, engine=engine, settings=settings, backfill=True
        )
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        if trace:
            tracemalloc.stop()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        assert report.rows_rejected == 0, report
        reimport_rate = 0.0
        if reimport:
            again = time.perf_counter()
            second = import_file(kind="orders", path=csv_path, engine=engine, settings=settings)
            reimport_rate = second.rows_read / (time.perf_counter() - again)
            assert second.records_new == 0, second
        return {
            "rows": report.rows_read,
            "orders": report.records_new,
            "seconds": seconds,
            "rate": report.rows_read / seconds,
            "cpu_rate": report.rows_read / cpu,
            "reimport_rate": reimport_rate,
            "tracemalloc_peak": peak,
            "rss_growth": max(0, maxrss - rss_before),
        }
    finally:
        engine.dispose()
        if drop is not None:
            drop()


def run_child(
    database: str, csv_path: Path, products_path: Path, *, trace: bool, reimport: bool = False
) -> dict[str, float]:
    flags = ["--trace" if trace else "--no-trace", "--reimport" if reimport else "--no-reimport"]
    out = subprocess.run(
        [sys.executable, __file__, "--child", database, str(csv_path), str(products_path), *flags],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 20_000])
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("DB", "CSV", "PRODUCTS"))
    parser.add_argument(
        "--trace",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also run each SQLite import under tracemalloc (about 3x slower).",
    )
    parser.add_argument("--reimport", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    if args.child:
        database, csv_path, products_path = args.child
        result = child(
            database, Path(csv_path), Path(products_path), trace=args.trace, reimport=args.reimport
        )
        print(json.dumps(result))
        return
    databases = ["sqlite"] + ([] if args.no_postgres or not postgres_available() else ["postgres"])
    print(f"# import bench: Python {platform.python_version()}, {os.cpu_count()} CPU(s)")
    print(f"# load average at start: {os.getloadavg()[0]:.1f}")
    print()
    print(
        "| database | lines | orders | seconds | rows/s (wall) | rows/s (CPU) "
        "| re-import rows/s | RSS growth | tracemalloc peak |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        products_path = folder / "products.csv"
        products_file(products_path)
        for lines in args.lines:
            csv_path = folder / f"orders-{lines}.csv"
            generate(csv_path, lines=lines)
            size = csv_path.stat().st_size
            for database in databases:
                run = run_child(
                    database, csv_path, products_path, trace=False, reimport=args.reimport
                )
                peak = "-"
                if args.trace and database == "sqlite":
                    traced = run_child(database, csv_path, products_path, trace=True)
                    peak = f"{traced['tracemalloc_peak'] / 2**20:.1f} MiB"
                reimport = f"{run['reimport_rate']:,.0f}" if args.reimport else "-"
                print(
                    f"| {database} | {lines:,} ({size / 1e6:.1f} MB) | {run['orders']:,.0f} "
                    f"| {run['seconds']:.1f} | {run['rate']:,.0f} | {run['cpu_rate']:,.0f} "
                    f"| {reimport} | {run['rss_growth'] / 2**20:.1f} MiB | {peak} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
