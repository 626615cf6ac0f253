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
years with their expiry, returns, adjustments), then `trouw.domain.loyalty.ledger.balances` (lots and
expiry in Python) against the reference in the same run: SQL SUM(points) GROUP BY customer
(which ignores expiry, so it is the floor of what a correct balance can cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
from bench_load import fire_open_loop, free_port, pct  # noqa: E402

from trouw.domain.db.engine import make_engine, migrate, session_scope  # noqa: E402

POSTGRES_ADMIN = os.environ.get(
    "TROUW_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def database_url(kind: str, home: Path, name: str) -> str:
    """A fresh database: a SQLite file in `home`, or a PostgreSQL database of its own."""
    if kind == "sqlite":
        return f"sqlite:///{home / (name + '.db')}"
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    database = f"{name}_{os.getpid()}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{database}"


def drop_database(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        )
    admin.dispose()


def seed_vouchers(url: str, count: int) -> tuple[list[str], str]:
    from trouw.domain.ingest import CustomerIn, upsert_customer
    from trouw.domain.loyalty import ledger, vouchers
    from trouw.ways_in.api.auth import create_api_key

    ledger.configure(ledger.LoyaltyConfig(key=b"bench-key"))
    engine = make_engine(url)
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


# --- the server, instrumented -------------------------------------------------------------------


def instrument_transactions(folder: Path, role: str) -> None:
    """In a server process: time every SQLite write transaction (the wait for the write lock
    and how long it is held) with the code that opened it; written to folder every 2 s."""
    import json
    import threading
    import traceback

    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

    import trouw.domain.db.engine as db

    records: list[tuple[str, float, float, float, str]] = []
    plain_begin = db._sqlite_begin
    roots = tuple(str(ROOT / part) for part in ("trouw", "activities", "workflows"))

    def site() -> str:
        frames = [
            f"{Path(frame.filename).relative_to(ROOT)}:{frame.name}"
            for frame in traceback.extract_stack(limit=40)
            if frame.filename.startswith(roots) and not frame.filename.endswith("db/engine.py")
        ]
        return " < ".join(reversed(frames[-2:])) or "?"

    def timed_begin(connection: sa.Connection) -> None:
        asked = time.perf_counter()
        plain_begin(connection)
        where = site()
        if connection.get_execution_options().get(db.READ_ONLY):
            where = "(read only, no lock) " + where
        connection.info["bench_tx"] = (asked, time.perf_counter(), time.time(), where)

    def ended(connection: sa.Connection) -> None:
        begun = connection.info.pop("bench_tx", None)
        if begun is not None:
            asked, got, wall, where = begun
            now = time.perf_counter()
            records.append((role, wall, (got - asked) * 1000, (now - got) * 1000, where))

    def dump() -> None:
        while True:
            time.sleep(2)
            (folder / f"tx-{role}-{os.getpid()}.json").write_text(json.dumps(records))

    db._sqlite_begin = timed_begin  # type: ignore[assignment]
    sa.event.listen(Engine, "commit", ended)
    sa.event.listen(Engine, "rollback", ended)
    threading.Thread(target=dump, daemon=True).start()


if os.environ.get("TROUW_BENCH_TX_STATS") and __name__ == "__mp_main__":
    # The worker process `trouw up` spawns runs this file again under this name.
    instrument_transactions(Path(os.environ["TROUW_BENCH_TX_STATS"]), "worker")


def serve(stats_file: Path, api_only: bool) -> None:
    """`trouw up` (or the API alone), with the API process timing each loyalty request's parts:
    the wait for a thread, the wait for SQLite's write lock (BEGIN IMMEDIATE), the work and the
    commit. Written to `stats_file` when the server stops."""
    import json
    import threading

    import trouw.domain.db.engine as db
    import trouw.ways_in.api.loyalty as routes
    from trouw.settings import Settings
    from trouw.stack.runtime import run_stack

    instrument_transactions(stats_file.parent, "api")
    records: list[dict[str, float]] = []
    local = threading.local()
    plain_begin = db._sqlite_begin

    def timed_begin(connection: object) -> None:
        began = time.perf_counter()
        plain_begin(connection)
        record = getattr(local, "record", None)
        if record is not None:
            record["lock_ms"] = record.get("lock_ms", 0.0) + (time.perf_counter() - began) * 1000

    async def timed_session(state: object, work: object, *, read_only: bool = False) -> object:
        called = time.perf_counter()
        record: dict[str, float] = {"at": time.time()}

        def run() -> object:
            started = time.perf_counter()
            record["queue_ms"] = (started - called) * 1000
            local.record = record
            try:
                scope = db.read_scope if read_only else session_scope
                with scope(state.engine) as session:  # type: ignore[attr-defined]
                    result = work(session)  # type: ignore[operator]
                    record["work_ms"] = (time.perf_counter() - started) * 1000
                return result
            finally:
                record["thread_ms"] = (time.perf_counter() - started) * 1000
                local.record = None

        try:
            return await asyncio.to_thread(run)
        finally:
            record["total_ms"] = (time.perf_counter() - called) * 1000
            records.append(record)

    db._sqlite_begin = timed_begin  # type: ignore[assignment]
    routes.in_session = timed_session  # type: ignore[assignment]
    settings = Settings()
    try:
        asyncio.run(run_stack(settings, worker=not api_only, worker_process=not api_only))
    finally:
        stats_file.write_text(json.dumps(records))


# --- the load -----------------------------------------------------------------------------------


def process_cpu(api_pid: int, temporal_port: str) -> dict[str, float]:
    """CPU seconds (user + system) so far of the API process, the worker process it spawned
    (with its children) and the Temporal dev server (found by its port)."""
    import psutil

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    api = psutil.Process(api_pid)
    figures = {"api": used(api), "worker": 0.0, "dev server": 0.0}
    for child in api.children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.Error:
            continue
        if "start-dev" in command and temporal_port in command:
            figures["dev server"] += used(child)
        elif not any("resource_tracker" in part for part in command):
            figures["worker"] += used(child)
    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or []
        if "start-dev" in command and temporal_port in command and process.ppid() != api_pid:
            figures["dev server"] += used(process)  # its own session: not always our child
    return figures


async def temporal_counts(address: str) -> dict[str, int]:
    """Workflows, signals and workflow tasks in every history on the dev server."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client

    client = await Client.connect(address)
    counts = {"workflows": 0, "signals": 0, "workflow tasks": 0, "history events": 0}
    async for execution in client.list_workflows():
        counts["workflows"] += 1
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        for event in history.events:
            counts["history events"] += 1
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                counts["signals"] += 1
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                counts["workflow tasks"] += 1
    return counts


async def open_loop(
    http: aiohttp.ClientSession,
    rate: float,
    seconds: float,
    request: object,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> dict[str, float]:
    """Fires request(n) every 1/rate s for `seconds`; latency per request in ms.

    aiohttp, not httpx: httpcore's pool spends CPU per queued request on every pass (seen with
    py-spy: the load generator itself, not the server, was the bottleneck on a loaded machine).
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    total = int(rate * seconds)

    async def fire(n: int) -> None:
        began = time.perf_counter()
        try:
            async with request(http, n) as response:  # type: ignore[operator]
                await response.read()
                if response.status >= 400:
                    errors[str(response.status)] = errors.get(str(response.status), 0) + 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        latencies.append((time.perf_counter() - began) * 1000)

    start = time.perf_counter()
    wall = time.time()
    cpu_from = cpu() if cpu else {}
    await fire_open_loop(total, rate, fire)
    cpu_to = cpu() if cpu else {}
    return {
        # CPU ms per request in each process over the phase (API, worker, dev server).
        "cpu_ms": {  # type: ignore[dict-item]
            role: (cpu_to[role] - cpu_from[role]) * 1000 / total for role in cpu_from
        },
        "requests": float(total),
        "errors": float(sum(errors.values())),
        "error_kinds": errors,  # type: ignore[dict-item]
        "p50": pct(latencies, 50),
        "p90": pct(latencies, 90),
        "p99": pct(latencies, 99),
        "max": max(latencies),
        "achieved_rate": total / (time.perf_counter() - start),
        "from": wall,
        "to": time.time(),
        "load": os.getloadavg()[0],
    }


async def voucher_phases(
    base: str,
    key: str,
    codes: list[str],
    rate: float,
    seconds: float,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> dict[str, dict[str, float]]:
    headers = {"Authorization": f"Bearer {key}"}
    per = int(rate * seconds)
    lookup = codes[:per]
    redeem = codes[per : 2 * per]
    results = {}
    connector = aiohttp.TCPConnector(limit=200)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        base_url=base, headers=headers, connector=connector, timeout=timeout
    ) as http:
        # Warm up: connections, the first queries, Python's caches.
        for code in codes[-50:]:
            async with http.get(f"/v1/vouchers/{code}") as response:
                await response.read()
        results["GET /healthz (reference)"] = await open_loop(
            http, rate, seconds, lambda h, n: h.get("/healthz"), cpu
        )
        results["GET /v1/vouchers/{code}"] = await open_loop(
            http, rate, seconds, lambda h, n: h.get(f"/v1/vouchers/{lookup[n]}"), cpu
        )
        for name in ("POST /v1/vouchers/{code}/redeem", "POST redeem, same receipt again"):
            results[name] = await open_loop(
                http,
                rate,
                seconds,
                lambda h, n: h.post(
                    f"/v1/vouchers/{redeem[n]}/redeem",
                    json={"receipt": f"R-{n}", "channel": "pos", "store": "Gent"},
                ),
                cpu,
            )
    return results


async def drained_counts(url: str, temporal_port: str) -> dict[str, float]:
    """Once every stored event is marked relayed (at most 60 s): the events stored, and what
    the dev server holds (workflows, signals, workflow tasks, history events)."""
    import sqlalchemy as sa

    engine = make_engine(url)
    deadline = time.monotonic() + 60
    try:
        while True:
            with engine.connect() as connection:
                stored, waiting = connection.execute(
                    sa.text("SELECT count(*), count(*) - count(relayed_at) FROM inbound_event")
                ).one()
            if not waiting or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
    finally:
        engine.dispose()
    counts = await temporal_counts(f"127.0.0.1:{temporal_port}")
    return {"events stored": stored, "not relayed": waiting, **counts}


def stop_leftover_dev_server(port: str) -> None:
    """The Temporal dev server `trouw up` started runs in its own session: when the stack was
    killed rather than stopped, it would run on (seen after runs at load 25-30), eating the CPU
    of the next run. Found by its port on the command line; Linux only (/proc)."""
    import signal

    wanted = ["server", "start-dev", "--ip", "127.0.0.1", "--port", port]
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if args[1:7] == wanted:
            os.kill(int(entry.name), signal.SIGTERM)


def run_vouchers(
    args: argparse.Namespace, kind: str, api_only: bool
) -> tuple[
    dict[str, dict[str, float]], list[dict[str, float]], list[tuple[str, float, float, float, str]]
]:
    import json

    home = Path(tempfile.mkdtemp(prefix="trouw-loyalty-bench-"))
    url = database_url(kind, home, "trouw_loyalty_bench")
    per = int(args.rate * args.seconds)
    codes, key = seed_vouchers(url, 2 * per + 50)
    port = free_port()
    stats_file = home / "server-stats.json"
    env = {
        **os.environ,
        "TROUW_HOME": str(home),
        "TROUW_DATABASE_URL": url,
        "TROUW_API_PORT": str(port),
        "TROUW_TEMPORAL_PORT": str(free_port()),
        "TROUW_TEMPORAL_UI_PORT": str(free_port()),
        "TROUW_TEMPORAL_PERSIST": "false",
        "TROUW_SIGNING_KEYS": '["bench-key"]',
        "TROUW_JOURNEYS_DIR": str(ROOT / "journeys"),
        "TROUW_TEMPLATES_DIR": str(ROOT / "templates"),
        "TROUW_BENCH_TX_STATS": str(home),
    }
    command = [sys.executable, __file__, "--serve", str(stats_file)]
    server = subprocess.Popen(
        command + (["--api-only"] if api_only else []),
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
                raise RuntimeError("the bench server did not start")
            time.sleep(0.5)
        results = asyncio.run(
            voucher_phases(
                base,
                key,
                codes,
                args.rate,
                args.seconds,
                lambda: process_cpu(server.pid, env["TROUW_TEMPORAL_PORT"]),
            )
        )
        results["temporal"] = asyncio.run(drained_counts(url, env["TROUW_TEMPORAL_PORT"]))
    finally:
        server.terminate()
        try:
            server.wait(timeout=180)  # a loaded machine takes its time to stop the stack
        except subprocess.TimeoutExpired:
            server.kill()
        stop_leftover_dev_server(env["TROUW_TEMPORAL_PORT"])
        drop_database(url)
    records = json.loads(stats_file.read_text()) if stats_file.exists() else []
    transactions = [
        tuple(row) for path in home.glob("tx-*.json") for row in json.loads(path.read_text())
    ]
    return results, records, transactions  # type: ignore[return-value]


def print_vouchers(
    title: str,
    results: dict[str, dict[str, float]],
    records: list[dict[str, float]],
    transactions: list[tuple[str, float, float, float, str]],
) -> None:
    counts = results.pop("temporal", {})
    reference = results["GET /healthz (reference)"]["p99"]
    print(f"\n{title}")
    print(
        f"{'phase':<36} {'n':>6} {'err':>4} {'rate':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p99/ref':>8} {'load':>6}"
    )
    for name, row in results.items():
        print(
            f"{name:<36} {row['requests']:>6.0f} {row['errors']:>4.0f} {row['achieved_rate']:>6.1f} "
            f"{row['p50']:>8.1f} {row['p90']:>8.1f} {row['p99']:>8.1f} {row['max']:>8.1f} "
            f"{row['p99'] / reference:>8.2f} {row['load']:>6.1f}"
        )
    for name, row in results.items():
        if row["errors"]:
            print(f"  {name} errors: {row['error_kinds']}")
    print("  CPU ms per request over each phase (user + system): API, worker, dev server")
    for name, row in results.items():
        shown = "  ".join(f"{role} {ms:.2f}" for role, ms in row.get("cpu_ms", {}).items())  # type: ignore[union-attr]
        print(f"  {name:<34} {shown}")
    if counts:
        redeems = results["POST /v1/vouchers/{code}/redeem"]["requests"]
        print(
            "  after the run (relay drained): "
            + ", ".join(f"{what} {value:.0f}" for what, value in counts.items())
            + f"; per redeem: {counts['signals'] / redeems:.2f} signals,"
            f" {counts['workflow tasks'] / redeems:.2f} workflow tasks,"
            f" {counts['history events'] / redeems:.2f} history events"
        )
    if not records:
        return
    print("  inside the API process (p50 / p99 ms): thread wait, write-lock wait (SQLite BEGIN")
    print("  IMMEDIATE), work in the transaction (lock wait included), commit, whole request")
    for name, row in results.items():
        mine = [r for r in records if row["from"] <= r["at"] <= row["to"]]
        if not mine:
            continue
        parts = {
            "thread": [r.get("queue_ms", 0.0) for r in mine],
            "lock": [r.get("lock_ms", 0.0) for r in mine],
            "work": [r.get("work_ms", 0.0) for r in mine],
            "commit": [r.get("thread_ms", 0.0) - r.get("work_ms", 0.0) for r in mine],
            "request": [r.get("total_ms", 0.0) for r in mine],
        }
        shown = "  ".join(
            f"{part} {pct(values, 50):.1f}/{pct(values, 99):.1f}" for part, values in parts.items()
        )
        print(f"  {name:<34} {shown}")
    if not transactions:
        return
    phase = results["POST /v1/vouchers/{code}/redeem"]
    during = [t for t in transactions if phase["from"] <= t[1] <= phase["to"]]
    writes = [t for t in during if not t[4].startswith("(read only")]
    print(
        f"  SQLite transactions during the redeem phase: {len(during)}, of them {len(writes)} writes"
        f" holding the write lock {sum(t[3] for t in writes) / 1000 / (phase['to'] - phase['from']):.0%}"
        " of the time; by who opened them (process, code):"
    )
    print(f"    {'n':>6} {'held p50':>9} {'p99':>7} {'max':>7} {'sum s':>6} {'wait p99':>9}  site")
    sites: dict[tuple[str, str], list[tuple[str, float, float, float, str]]] = {}
    for row in during:
        sites.setdefault((row[0], row[4]), []).append(row)
    for (role, where), rows in sorted(sites.items(), key=lambda item: -sum(r[3] for r in item[1]))[
        :8
    ]:
        held = [r[3] for r in rows]
        print(
            f"    {len(rows):>6} {pct(held, 50):>9.1f} {pct(held, 99):>7.1f} {max(held):>7.1f}"
            f" {sum(held) / 1000:>6.2f} {pct([r[2] for r in rows], 99):>9.1f}  {role}: {where}"
        )


LEDGER_COLUMNS = ("key", "customer_id", "at", "kind", "points", "expires_at", "lot", "source")


def seed_ledger(url: str, customers: int, entries: int, now: datetime) -> int:
    """Earnings over two years (with their expiry), returns, adjustments; and the expiries the
    sweep would have written by `now` (computed by the rules). Returns the expiry rows added."""
    import sqlalchemy as sa

    from trouw.domain.loyalty.rules import Entry, due_expiries

    engine = make_engine(url)
    migrate(engine)
    rng = random.Random(16)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    per = entries // customers
    rows: list[tuple[object, ...]] = []
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
            source = "operator" if entry.kind == "adjust" else "rules"
            rows.append(
                (entry.key, f"c{customer}", entry.at, entry.kind, entry.points)
                + (entry.expires_at, entry.lot, source)
            )
    if url.startswith("sqlite"):
        # As the ORM stores an aware time on SQLite (trouw.domain.db.models.UTCDateTime): UTC, no offset.
        stamp = "%Y-%m-%d %H:%M:%S.%f"
        with sqlite3.connect(url.split("///", 1)[1]) as connection:
            connection.executemany(
                f"INSERT INTO points_entry ({', '.join(LEDGER_COLUMNS)})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    row[:2]
                    + (row[2].strftime(stamp),)
                    + row[3:5]  # type: ignore[attr-defined]
                    + (row[5].strftime(stamp) if row[5] else None,)  # type: ignore[attr-defined]
                    + row[6:]
                    for row in rows
                ],
            )
    else:
        with engine.begin() as connection:
            raw = connection.connection.driver_connection
            with raw.cursor().copy(  # type: ignore[union-attr]
                f"COPY points_entry ({', '.join(LEDGER_COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                sa.text("VACUUM ANALYZE points_entry")
            )
    engine.dispose()
    return swept


def timed(work: object) -> tuple[object, float]:
    began = time.perf_counter()
    result = work()  # type: ignore[operator]
    return result, time.perf_counter() - began


def run_balances(args: argparse.Namespace, kind: str) -> dict[str, float]:
    """Every balance at once (swept and unswept ledger), against a bare SQL SUM in the same run;
    and one customer's balance and level (`loyalty.*` in the context) for 1,000 customers."""
    import sqlalchemy as sa

    from trouw.domain.loyalty import ledger

    home = Path(tempfile.mkdtemp(prefix="trouw-balance-bench-"))
    url = database_url(kind, home, "trouw_balance_bench")
    now = datetime(2027, 1, 1, tzinfo=UTC)
    swept, seeded = timed(lambda: seed_ledger(url, args.customers, args.entries, now))
    engine = make_engine(url)
    reference_sql = sa.text(
        "SELECT customer_id, SUM(points) FROM points_entry GROUP BY customer_id"
    )
    try:
        with engine.connect() as connection:
            connection.execute(reference_sql).fetchall()  # warm the cache as the others get it
            _rows, reference = timed(lambda: connection.execute(reference_sql).fetchall())
        with session_scope(engine) as session:
            kept, measured_swept = timed(lambda: ledger.balances(session, now=now))
        rng = random.Random(7)
        sample = [f"c{rng.randrange(args.customers)}" for _ in range(1000)]
        lookups = []
        with session_scope(engine) as session:
            for customer_id in sample:
                began = time.perf_counter()
                ledger.loyalty_dict(session, customer_id, now=now)
                lookups.append((time.perf_counter() - began) * 1000)
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM points_entry WHERE kind = 'expire'"))
        with session_scope(engine) as session:
            unswept, measured_unswept = timed(lambda: ledger.balances(session, now=now))
    finally:
        engine.dispose()
        drop_database(url)
    return {
        "customers": float(len(kept)),  # type: ignore[arg-type]
        "entries": float(args.entries),
        "expiries": float(swept),  # type: ignore[arg-type]
        "agree": float(kept == unswept),
        "seed_s": seeded,
        "swept_s": measured_swept,
        "unswept_s": measured_unswept,
        "sql_sum_s": reference,
        "lookup_p50_ms": pct(lookups, 50),
        "lookup_p99_ms": pct(lookups, 99),
    }


def print_balances(kind: str, balance: dict[str, float]) -> None:
    print(
        f"\nbalances: {balance['customers']:,.0f} customers, {balance['entries']:,.0f} entries "
        f"+ {balance['expiries']:,.0f} expiries ({kind})"
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
    print(
        f"  one customer's points and level (loyalty_dict), 1,000 customers: "
        f"p50 {balance['lookup_p50_ms']:.2f} ms, p99 {balance['lookup_p99_ms']:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--skip-vouchers", action="store_true")
    parser.add_argument("--skip-balances", action="store_true")
    parser.add_argument(
        "--api-only", action="store_true", help="Also run the vouchers on the API alone."
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.api_only)
        return
    if args.quick:
        args.seconds, args.customers, args.entries = 5.0, 10_000, 100_000
    kinds = [kind for kind in args.databases.split(",") if kind]
    print(
        f"machine: {os.cpu_count()} cores, load average at start "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (shared machine: absolute figures move; ratios hold)"
    )
    for kind in kinds if not args.skip_vouchers else []:
        for api_only in (False, True) if args.api_only else (False,):
            results, records, transactions = run_vouchers(args, kind, api_only)
            what = "the API alone" if api_only else "`trouw up` (API, worker, relay, sweep)"
            print_vouchers(
                f"vouchers on {what}, {kind}, open loop {args.rate:g} req/s for {args.seconds:g} s"
                " each",
                results,
                records,
                transactions,
            )
    if args.skip_balances:
        return
    for kind in kinds:
        print_balances(kind, run_balances(args, kind))
    print("load average at end " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
