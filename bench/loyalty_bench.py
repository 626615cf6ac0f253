"""Benchmark: voucher lookup and redeem latency at 100 requests/s on the embedded stack, and the
points balance of 100,000 customers over 1,000,000 ledger entries.

Run: .venv/bin/python bench/loyalty_bench.py            (about 3 minutes)
     .venv/bin/python bench/loyalty_bench.py --quick    (a short smoke run)
Prints a report; docs/performance.md has the results. Not a test: nothing here asserts.

Vouchers: `trouw up` (embedded Temporal dev server, worker, relay, loyalty sweep and the API on
SQLite, as a developer or a small shop runs it) in a subprocess; this process is the load
generator, open loop: one request every 1/R s on schedule, whatever the answers (so a slow answer
cannot hide by slowing the load). Phases: GET /healthz (the reference: the same server, route
and connection handling, no database), GET /v1/vouchers/{code}, POST /v1/vouchers/{code}/redeem
(each a fresh code and receipt: every request writes), POST redeem again with the same receipt
(the idempotent repeat). Every redemption derives a voucher_redeemed event the relay hands to
Temporal while the load runs.

Balances: a SQLite file with 100,000 customers and 1,000,000 entries (earnings spread over two
years with their expiry, returns, adjustments), then `trouw.loyalty.ledger.balances` (lots and
expiry in Python) against the reference in the same run: SQL SUM(points) GROUP BY customer
(which ignores expiry, so it is the floor of what a correct balance can cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from trouw.db.engine import make_engine, migrate, session_scope  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def seed_vouchers(db: Path, count: int) -> tuple[list[str], str]:
    from trouw.api.auth import create_api_key
    from trouw.ingest import CustomerIn, upsert_customer
    from trouw.loyalty import ledger, vouchers

    ledger.configure(ledger.LoyaltyConfig(key=b"bench-key"))
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    now = datetime.now(UTC)
    codes = []
    with session_scope(engine) as session:
        key = create_api_key(session, name="bench", scopes=["ingest", "read"])
        for number in range(1000):
            upsert_customer(
                session,
                CustomerIn(id=f"c{number}", email=f"c{number}@example.com"),
                at=now,
                source="import",
                announce=False,
            )
        for number in range(count):
            voucher, _new = vouchers.issue(
                session,
                customer_id=f"c{number % 1000}",
                value=Decimal("5"),
                expires_at=now + timedelta(days=60),
                issued_key=f"bench:{number}",
                now=now,
                prefix="BENCH",
                handed_over=True,  # no journey waits on these: keep the relay for redemptions
            )
            codes.append(voucher.code)
    engine.dispose()
    return codes, key


async def open_loop(
    http: httpx.AsyncClient, rate: float, seconds: float, request: object
) -> dict[str, float]:
    """Fires request(n) every 1/rate s for `seconds`; latency per request in ms."""
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    start = time.perf_counter()

    async def fire(n: int) -> None:
        nonlocal errors
        began = time.perf_counter()
        try:
            response = await request(http, n)  # type: ignore[operator]
            if response.status_code >= 400:
                errors += 1
        except httpx.HTTPError:
            errors += 1
        latencies.append((time.perf_counter() - began) * 1000)

    tasks = []
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(n)))
    await asyncio.gather(*tasks)
    return {
        "requests": float(total),
        "errors": float(errors),
        "p50": pct(latencies, 0.50),
        "p90": pct(latencies, 0.90),
        "p99": pct(latencies, 0.99),
        "max": max(latencies),
        "achieved_rate": total / (time.perf_counter() - start),
    }


async def voucher_phases(
    base: str, key: str, codes: list[str], rate: float, seconds: float
) -> dict[str, dict[str, float]]:
    headers = {"Authorization": f"Bearer {key}"}
    per = int(rate * seconds)
    lookup = codes[:per]
    redeem = codes[per : 2 * per]
    results = {}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits) as http:
        # Warm up: connections, the first queries, Python's caches.
        for code in codes[-50:]:
            await http.get(f"/v1/vouchers/{code}")
        results["GET /healthz (reference)"] = await open_loop(
            http, rate, seconds, lambda h, n: h.get("/healthz")
        )
        results["GET /v1/vouchers/{code}"] = await open_loop(
            http, rate, seconds, lambda h, n: h.get(f"/v1/vouchers/{lookup[n]}")
        )
        results["POST /v1/vouchers/{code}/redeem"] = await open_loop(
            http,
            rate,
            seconds,
            lambda h, n: h.post(
                f"/v1/vouchers/{redeem[n]}/redeem",
                json={"receipt": f"R-{n}", "channel": "pos", "store": "Gent"},
            ),
        )
        results["POST redeem, same receipt again"] = await open_loop(
            http,
            rate,
            seconds,
            lambda h, n: h.post(
                f"/v1/vouchers/{redeem[n]}/redeem",
                json={"receipt": f"R-{n}", "channel": "pos", "store": "Gent"},
            ),
        )
    return results


def run_vouchers(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    home = Path(tempfile.mkdtemp(prefix="trouw-loyalty-bench-"))
    db = home / "trouw.db"
    per = int(args.rate * args.seconds)
    codes, key = seed_vouchers(db, 2 * per + 50)
    port = free_port()
    env = {
        **os.environ,
        "TROUW_HOME": str(home),
        "TROUW_API_PORT": str(port),
        "TROUW_TEMPORAL_PORT": str(free_port()),
        "TROUW_TEMPORAL_UI_PORT": str(free_port()),
        "TROUW_TEMPORAL_PERSIST": "false",
        "TROUW_SIGNING_KEYS": '["bench-key"]',
        "TROUW_JOURNEYS_DIR": str(ROOT / "journeys"),
        "TROUW_TEMPLATES_DIR": str(ROOT / "templates"),
    }
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "trouw"), "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("trouw up did not start")
            time.sleep(0.5)
        return asyncio.run(voucher_phases(base, key, codes, args.rate, args.seconds))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def seed_ledger(db: Path, customers: int, entries: int, now: datetime) -> int:
    """Earnings over two years (with their expiry), returns, adjustments; and the expiries the
    sweep would have written by `now` (computed by the rules). Returns the expiry rows added."""
    from trouw.loyalty.rules import Entry, due_expiries

    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    engine.dispose()
    rng = random.Random(16)
    # As the ORM stores an aware time on SQLite (trouw.db.models.UTCDateTime): UTC, no offset.
    stamp = "%Y-%m-%d %H:%M:%S.%f"
    start = datetime(2025, 1, 1, tzinfo=UTC)
    per = entries // customers
    rows = []
    swept = 0
    for customer in range(customers):
        earned: list[str] = []
        ledger: list[Entry] = []
        for number in range(per):
            at = start + timedelta(days=rng.randint(0, 730), minutes=number)
            key = f"c{customer}:{number}"
            roll = rng.random()
            if roll < 0.85 or not earned:
                entry = Entry(key, at, rng.randint(1, 300), "earn", at + timedelta(days=365))
                earned.append(key)
            elif roll < 0.95:
                entry = Entry(key, at, -rng.randint(1, 100), "return", lot=rng.choice(earned))
            else:
                entry = Entry(key, at, rng.randint(-50, 50) or 1, "adjust")
            ledger.append(entry)
        for expiry in due_expiries(ledger, now=now):
            ledger.append(
                Entry(f"expire:{expiry.lot}", expiry.at, -expiry.points, "expire", lot=expiry.lot)
            )
            swept += 1
        for entry in ledger:
            rows.append(
                (
                    entry.key,
                    f"c{customer}",
                    entry.at.strftime(stamp),
                    entry.kind,
                    entry.points,
                    entry.expires_at.strftime(stamp) if entry.expires_at else None,
                    entry.lot,
                    "operator" if entry.kind == "adjust" else "rules",
                )
            )
    with sqlite3.connect(db) as connection:
        connection.executemany(
            "INSERT INTO points_entry (key, customer_id, at, kind, points, expires_at, lot, source)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return swept


def run_balances(args: argparse.Namespace) -> dict[str, float]:
    from trouw.loyalty import ledger

    home = Path(tempfile.mkdtemp(prefix="trouw-balance-bench-"))
    db = home / "ledger.db"
    now = datetime(2027, 1, 1, tzinfo=UTC)
    began = time.perf_counter()
    swept = seed_ledger(db, args.customers, args.entries, now)
    seeded = time.perf_counter() - began
    engine = make_engine(f"sqlite:///{db}")
    with sqlite3.connect(db) as connection:
        began = time.perf_counter()
        connection.execute(
            "SELECT customer_id, SUM(points) FROM points_entry GROUP BY customer_id"
        ).fetchall()
        reference = time.perf_counter() - began
    with session_scope(engine) as session:
        began = time.perf_counter()
        kept = ledger.balances(session, now=now)
        measured_swept = time.perf_counter() - began
    with sqlite3.connect(db) as connection:
        connection.execute("DELETE FROM points_entry WHERE kind = 'expire'")
    with session_scope(engine) as session:
        began = time.perf_counter()
        unswept = ledger.balances(session, now=now)
        measured_unswept = time.perf_counter() - began
    engine.dispose()
    return {
        "customers": float(len(kept)),
        "entries": float(args.entries),
        "expiries": float(swept),
        "agree": float(kept == unswept),
        "seed_s": seeded,
        "swept_s": measured_swept,
        "unswept_s": measured_unswept,
        "sql_sum_s": reference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--skip-vouchers", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.customers, args.entries = 5.0, 10_000, 100_000
    print(
        f"machine: {os.cpu_count()} cores, load average at start "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (shared machine: absolute figures move; ratios hold)"
    )
    if not args.skip_vouchers:
        results = run_vouchers(args)
        reference = results["GET /healthz (reference)"]["p99"]
        print(
            f"\nvouchers on `trouw up` (SQLite), open loop {args.rate:g} req/s for {args.seconds:g} s each"
        )
        print(
            f"{'phase':<36} {'n':>6} {'err':>4} {'rate':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99/ref':>8}"
        )
        for name, row in results.items():
            print(
                f"{name:<36} {row['requests']:>6.0f} {row['errors']:>4.0f} {row['achieved_rate']:>6.1f} "
                f"{row['p50']:>8.1f} {row['p90']:>8.1f} {row['p99']:>8.1f} {row['max']:>8.1f} "
                f"{row['p99'] / reference:>8.2f}"
            )
    balance = run_balances(args)
    print(
        f"\nbalances: {balance['customers']:,.0f} customers, {balance['entries']:,.0f} entries "
        f"+ {balance['expiries']:,.0f} expiries (SQLite)"
    )
    print(f"  seeding (not measured)               {balance['seed_s']:8.2f} s")
    ref = balance["sql_sum_s"]
    print(f"  SQL SUM GROUP BY (reference)         {ref:8.2f} s")
    for label, key in (
        ("ledger.balances, swept ledger", "swept_s"),
        ("ledger.balances, nothing swept", "unswept_s"),
    ):
        print(f"  {label:<36} {balance[key]:8.2f} s   {balance[key] / ref:6.1f}x the reference")
    print(f"  both give the same balances: {bool(balance['agree'])}")
    print("load average at end " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
