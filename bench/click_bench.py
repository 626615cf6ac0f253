"""Benchmark: the click redirect `GET /c/{code}` at 200 requests/s, beside `/healthz`.

Run alone: .venv/bin/python bench/click_bench.py
     with other work on the same disk:  --disk-load
     with another process taking the database's write lock 200 ms of every second: --hold-lock 200
     with a py-spy profile of the API process: --py-spy /path/to/py-spy --profile /tmp/api.svg
Prints the figures; docs/performance.md has them. Not a test: nothing here asserts.

The API (uvicorn, one process, SQLite, `trouw.ways_in.api.app.create_app` with its lifespan) serves
`/c/{code}` at --rate requests/s (open loop: fired on schedule, one code per request, so no
cache helps) and, in the same seconds, `/healthz` (no database) at --reference-rate: both see
the same machine, so their ratio is the honest figure when other work shares it. The load
average is printed at the start and end of the measured phase, and how late the generator fired
(its own lag, counted in both latencies). After the phase the API is stopped (SIGTERM: its
lifespan writes the clicks still queued) and the clicks in the ledger are counted against the
302 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from bench_load import fire_open_loop, free_port, pct  # noqa: E402

from trouw.domain.db.engine import make_engine, migrate  # noqa: E402
from trouw.domain.db.models import Engagement, Message, TrackedLink  # noqa: E402
from trouw.domain.measure.links import link_code  # noqa: E402

KEY = "bench-key"


def seed(url: str, count: int) -> list[str]:
    """`count` sent messages, each with one tracked link; their codes."""
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    messages, links, codes = [], [], []
    for n in range(count):
        key = f"run{n}:tips:email"
        target = f"https://shop.example/p/{n}?utm_source=trouw"
        messages.append(
            {
                "message_key": key,
                "customer_id": f"c{n}",
                "journey": "post_purchase",
                "step": "tips",
                "channel": "email",
                "category": "service",
                "template": "care_tips",
                "created_at": now,
                "status_history": [],
                "consent_snapshot": {},
                "attempts": 1,
                "decision": "send",
                "state": "sent",
            }
        )
        code = link_code(KEY.encode(), key, target)
        codes.append(code)
        links.append(
            {
                "code": code,
                "message_key": key,
                "url": target,
                "created_at": now,
                "expires_at": now + timedelta(days=365),
            }
        )
    with engine.begin() as connection:
        connection.execute(Message.__table__.insert(), messages)  # type: ignore[attr-defined]
        connection.execute(TrackedLink.__table__.insert(), links)  # type: ignore[attr-defined]
    engine.dispose()
    return codes


def serve(url: str, port: int, home: str) -> None:
    import uvicorn

    from trouw.settings import Settings
    from trouw.ways_in.api.app import create_app

    settings = Settings(home=Path(home), database_url=url, signing_keys=[KEY])
    uvicorn.run(
        create_app(settings, make_engine(url)), host="127.0.0.1", port=port, log_level="warning"
    )


def disk_load(folder: str) -> None:
    """Other work on the same disk: a SQLite fill committing 2,000-row batches, synced."""
    engine = sa.create_engine(f"sqlite:///{folder}/fill.db")
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        connection.exec_driver_sql("CREATE TABLE fill (id INTEGER PRIMARY KEY, body TEXT)")
    body = "x" * 500
    while True:
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA synchronous=FULL")
            connection.execute(
                sa.text("INSERT INTO fill (body) VALUES (:body)"), [{"body": body}] * 2000
            )


def hold_lock(url: str, millis: float) -> None:
    """Another writer on the same database (an import, a fold): holds its write lock `millis`
    ms of every second."""
    engine = make_engine(url)
    while True:
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT 1")  # BEGIN IMMEDIATE: the write lock is taken
            time.sleep(millis / 1000)
        time.sleep(max(0.0, 1 - millis / 1000))


async def open_loop(
    http: aiohttp.ClientSession, rate: float, seconds: float, paths: list[str]
) -> dict[str, Any]:
    """Fires GET paths[n] every 1/rate s for `seconds`; latencies (s), lateness, statuses."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []

    async def fire(n: int) -> None:
        started = time.perf_counter()
        try:
            async with http.get(paths[n % len(paths)], allow_redirects=False) as answer:
                await answer.read()
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(type(exc).__name__)
            return
        latencies.append(time.perf_counter() - started)

    late = await fire_open_loop(int(rate * seconds), rate, fire)
    return {"latencies": latencies, "late": late, "statuses": statuses, "errors": errors}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    base: str, codes: list[str], args: argparse.Namespace, server: int
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=base, connector=connector, timeout=timeout) as http:
        warm = codes[-200:]
        warmed = await open_loop(http, args.rate, 1, [f"/c/{c}" for c in warm])
        await open_loop(http, args.reference_rate, 1, ["/healthz"])
        load_start = os.getloadavg()
        cpu_start = cpu_seconds(server)
        clicks, health = await asyncio.gather(
            open_loop(http, args.rate, args.seconds, [f"/c/{c}" for c in codes[:-200]]),
            open_loop(http, args.reference_rate, args.seconds, ["/healthz"]),
        )
        load_end = os.getloadavg()
        cpu = cpu_seconds(server) - cpu_start
    return {
        "cpu": cpu,
        "clicks": clicks,
        "health": health,
        "load": (load_start, load_end),
        "redirected": warmed["statuses"].get(302, 0) + clicks["statuses"].get(302, 0),
    }


def _line(label: str, found: dict[str, Any], rate: float) -> str:
    values = found["latencies"]
    ms = [v * 1000 for v in values]
    return (
        f"  {label}: {len(values)} answered at {rate:.0f}/s {found['statuses']}, "
        f"p50 {pct(ms, 50):.1f} ms, p95 {pct(ms, 95):.1f} ms, p99 {pct(ms, 99):.1f} ms, "
        f"max {max(ms):.1f} ms; errors {len(found['errors'])}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--reference-rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--disk-load", action="store_true")
    parser.add_argument("--hold-lock", type=float, default=0, metavar="MS")
    parser.add_argument("--py-spy", help="path to py-spy: profile the API process")
    parser.add_argument("--profile", default="/tmp/click-api.svg")
    parser.add_argument("--serve", nargs=3, metavar=("URL", "PORT", "HOME"))
    parser.add_argument("--disk-load-in")
    parser.add_argument("--hold-lock-on")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0
    if args.disk_load_in:
        disk_load(args.disk_load_in)
        return 0
    if args.hold_lock_on:
        hold_lock(args.hold_lock_on, args.hold_lock)
        return 0
    print(f"load average before: {os.getloadavg()}; cores: {os.cpu_count()}")
    home = Path(tempfile.mkdtemp(prefix="trouw-click-"))
    url = f"sqlite:///{home / 'trouw.db'}"
    codes = seed(url, int(args.rate * args.seconds) + 200)
    port = free_port()
    me = [sys.executable, __file__]
    server = subprocess.Popen([*me, "--serve", url, str(port), str(home)], cwd=ROOT)
    helpers = []
    if args.disk_load:
        helpers.append(subprocess.Popen([*me, "--disk-load-in", str(home)], cwd=ROOT))
    if args.hold_lock:
        lock = [*me, "--hold-lock-on", url, "--hold-lock", str(args.hold_lock)]
        helpers.append(subprocess.Popen(lock, cwd=ROOT))
    spy = None
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        if args.py_spy:
            spy = subprocess.Popen(
                [args.py_spy, "record", "-p", str(server.pid), "-o", args.profile, "--threads"]
                + ["-d", str(int(args.seconds) + 4), "-r", "200", "--nonblocking"]
                + (["-f", "raw"] if args.profile.endswith(".txt") else [])
            )
        found = asyncio.run(measure(base, codes, args, server.pid))
    finally:
        for helper in helpers:
            helper.kill()
            helper.wait()
        server.send_signal(signal.SIGTERM)  # the lifespan writes what the writer still holds
        server.wait(timeout=60)
        if spy is not None:
            spy.wait(timeout=60)
    engine = make_engine(url)
    e = Engagement.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        recorded = connection.execute(
            sa.select(sa.func.count()).select_from(e).where(e.c.source == "redirect")
        ).scalar_one()
    engine.dispose()
    start, end = found["load"]
    print(
        f"click redirect, {args.seconds:.0f} s, extra load: "
        f"{'disk fill ' if args.disk_load else ''}"
        f"{f'write lock held {args.hold_lock:.0f} ms/s' if args.hold_lock else ''}"
        f"{'none' if not (args.disk_load or args.hold_lock) else ''}"
    )
    print(f"  load average (1, 5, 15 min) at the start {start}, at the end {end}")
    print(_line("/c/{code} (click)", found["clicks"], args.rate))
    print(_line("/healthz (reference, same seconds)", found["health"], args.reference_rate))
    late = [v * 1000 for v in found["clicks"]["late"] + found["health"]["late"]]
    print(f"  generator fired late: p50 {pct(late, 50):.1f} ms, p99 {pct(late, 99):.1f} ms")
    clicks_p99 = pct(found["clicks"]["latencies"], 99)
    health_p99 = pct(found["health"]["latencies"], 99)
    print(f"  p99 click / p99 healthz: {clicks_p99 / health_p99:.2f}x")
    answered = len(found["clicks"]["latencies"]) + len(found["health"]["latencies"])
    print(
        f"  API process CPU in the phase: {found['cpu']:.1f} s for {answered:,} answers "
        f"({found['cpu'] / answered * 1000:.2f} ms each; {found['cpu'] / args.seconds:.2f} cores)"
    )
    print(f"  clicks in the ledger: {recorded:,} of {found['redirected']:,} answered 302")
    if spy is not None:
        print(f"  py-spy profile of the API process: {args.profile}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
