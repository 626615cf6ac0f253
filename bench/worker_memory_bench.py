"""Worker memory with many sleeping customers: RSS of one worker process at steps up to 10,000.

Run: .venv/bin/python bench/worker_memory_bench.py            (1,000, 5,000 and 10,000 customers)
     .venv/bin/python bench/worker_memory_bench.py --steps 300,1000 \
         --variants 'default;arenas2:MALLOC_ARENA_MAX=2' --malloc-trim
     .venv/bin/python bench/worker_memory_bench.py --steps 1000 \
         --variants 'wft8:TROUW_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS=8'
     .venv/bin/python bench/worker_memory_bench.py --steps 1000,3000 --reference main
Prints a report; docs/performance.md ("Worker memory") has the results. Not a test.

One in-memory `temporal server start-dev` (trouw.stack.temporal.start_dev_server), one SQLite database,
and per configuration one worker process exactly as `trouw worker` runs it (worker, relay,
content watch, loyalty sweep, run sync: trouw.stack.runtime.run_stack), with its sticky cache set by
TROUW_WORKER_MAX_CACHED_WORKFLOWS (--cache, by default the product's).

The state it creates is production's after a purchase of a new customer. This process plays the
API: each purchase (three or two lines, bench/api_bench.purchase) is stored by ingest_event as
POST /v1/events stores it (event, customer, order and lines) and handed off as the API hands it
off (trouw.stack.temporal.deliver: signal-with-start of the customer's workflow; then relayed_at
set, trouw.stack.relay.mark_relayed). Two differences, both in how the same rows are written: 32
purchases per transaction (--batch) and one relayed_at UPDATE per batch, not one per purchase
(the API's one each took SQLite's write lock 32 times, which the worker needs for every purchase
it handles). The worker does the rest as in production: matches the journeys, sends the
confirmation, and leaves each customer with 1 sleeping workflow, the customer's, with its
journey runs inside it (workflows/inline.py; before fd37a99 also its post_purchase run as a
workflow of its own). At each step, once every confirmation is in the outbox and the worker has gone
quiet, the worker's RSS is read, with its mappings (main heap, other anonymous memory, files),
glibc's, pymalloc's and SQLite's accounts and its live Python objects; beside them the CPU per customer of
the worker, the dev server and this feeder, which shows who sets the pace, `uptime`, and how
often the worker recycled itself so far (worker_recycle_rss_mib: it executes itself again in
the same process id, which this script keeps reading). The
reference, measured in the same run: the same worker's RSS before the first purchase.

Variants (--variants: environment settings of the worker, e.g. MALLOC_ARENA_MAX, or
BENCH_WORKER_OPTIONS, JSON of temporalio Worker options that are no setting;
BENCH_SQLITE_CACHE_KIB, SQLite's page cache per connection; --cache; and
--unsandboxed for the runner the simulator uses) run one after the other on fresh servers, each
with --steps customers. At most --window purchases await their confirmation and --inflight
signal-with-starts are in flight, so the worker, not the feeder, sets the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(SCRIPT.parent))

import psutil  # noqa: E402
from api_bench import PRODUCTS, OutboxTail, environment, purchase  # noqa: E402
from bench_load import free_port  # noqa: E402
from simulate_bench import export  # noqa: E402

TASK_QUEUE = "trouw-memory-bench"


def worker_child(unsandboxed: bool) -> None:
    """The worker process: `trouw worker` (run_stack), optionally with the unsandboxed runner."""
    census = os.environ.get("BENCH_CENSUS_FILE")
    if census:
        # First: a census asked for while the imports still run must not kill the process.
        signal.signal(signal.SIGUSR1, lambda _n, _f: write_census(Path(census)))
    from trouw.settings import Settings
    from trouw.stack.runtime import run_stack
    from trouw.stack.temporal import quiet_runtime

    options = json.loads(os.environ.get("BENCH_WORKER_OPTIONS") or "{}")
    if options:
        # Worker options to try that are no setting (yet), e.g. max_task_queue_activities_per_second
        # (the ones build_worker passes from settings win: set those with TROUW_* variables).
        import functools

        import trouw.stack.worker
        from trouw.stack.worker import TrouwWorker

        trouw.stack.worker.TrouwWorker = functools.partial(TrouwWorker, **options)  # type: ignore[misc]
    sqlite_cache = os.environ.get("BENCH_SQLITE_CACHE_KIB")
    if sqlite_cache:
        # SQLite's page cache per connection (its default: 2,000 KiB), set after the product's
        # own pragmas on every connection the worker opens: a setting to try, not one (yet).
        import trouw.domain.db.engine as db_engine

        pragmas = db_engine._sqlite_pragmas

        def with_cache_size(connection: Any, record: Any) -> None:
            pragmas(connection, record)
            connection.execute(f"PRAGMA cache_size=-{int(sqlite_cache)}")

        db_engine._sqlite_pragmas = with_cache_size  # type: ignore[assignment]
    if unsandboxed:
        from temporalio.worker import UnsandboxedWorkflowRunner

        import trouw.stack.worker

        trouw.stack.worker.workflow_runner = UnsandboxedWorkflowRunner  # type: ignore[assignment]
    quiet_runtime()
    import gc

    def timed(phase: str, info: dict[str, int]) -> None:
        # Time in the cyclic garbage collector, by generation: what gc.freeze could save.
        if phase == "start":
            GC_TIME["started"] = time.perf_counter()
        else:
            key = f"gen{info['generation']}_s"
            GC_TIME[key] = GC_TIME.get(key, 0.0) + time.perf_counter() - GC_TIME["started"]

    gc.callbacks.append(timed)
    if asyncio.run(run_stack(Settings(), api=False, worker=True)):
        # Recycled above worker_recycle_rss_mib: as `trouw worker` does, this command line
        # again in this process id, which the bench keeps measuring.
        from trouw.stack.recycle import execute_afresh, recycles_so_far

        execute_afresh(recycles_so_far() + 1)


GC_TIME: dict[str, float] = {}


def write_census(path: Path) -> None:
    """Live Python objects by type (after a full collection), for what grows between steps."""
    import collections
    import ctypes
    import gc
    import sys

    gc.collect()
    objects = gc.get_objects()
    counts = collections.Counter(type(o).__qualname__ for o in objects)
    # The biggest Python objects (a large container or buffer shows here, not in the counts).
    biggest = sorted(((sys.getsizeof(o), type(o).__qualname__) for o in objects), reverse=True)[:5]
    del objects
    # glibc's own account: heap bytes in use and free per arena, and live mmap'ed chunks.
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    handle = libc.fopen(str(path.with_suffix(".malloc.xml")).encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(handle))
    libc.fclose(ctypes.c_void_p(handle))
    info = path.with_suffix(".malloc.xml").read_text()
    totals = dict(re.findall(r'<total type="(\w+)" count="\d+" size="(\d+)"/>', info[-600:]))
    system = re.findall(r'<system type="current" size="(\d+)"/>', info)
    free = sum(int(v) for k, v in totals.items() if k in ("fast", "rest"))
    current = sum(int(x) for x in system[-1:])
    # SQLite's own heap (its connections' page caches first of all), from the library the
    # sqlite3 module uses: part of glibc's bytes in use above.
    sqlite = ctypes.CDLL("libsqlite3.so.0")
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    sqlite_used = sqlite.sqlite3_memory_used()
    trimmed = None
    if os.environ.get("BENCH_TRIM") == "1":
        import ctypes

        # What glibc holds freed but not returned: RSS after malloc_trim (an intervention).
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = rss_mib(os.getpid())
    path.write_text(
        json.dumps(
            {
                "objects": sum(counts.values()),
                "types": dict(counts),
                "trimmed": trimmed,
                "gc_s": {k: round(v, 3) for k, v in GC_TIME.items() if k != "started"},
                "biggest": [f"{kind} {size // 1024} KiB" for size, kind in biggest],
                "glibc_mib": {
                    "free_in_heaps": round(free / 2**20, 1),
                    "in_use_in_heaps": round((current - free) / 2**20, 1),
                    "mmap_live": round(int(totals.get("mmap", 0)) / 2**20, 1),
                    "heaps_current": round(current / 2**20, 1),
                },
                "pymalloc_mib": pymalloc_mib(path.with_suffix(".pymalloc.txt")),
                "sqlite_mib": round(sqlite_used / 2**20, 1),
            }
        )
    )


def pymalloc_mib(scratch: Path) -> dict[str, float]:
    """Python's small-object allocator: its arenas (mmap'ed, outside glibc's heaps) and the
    bytes in use in them, from sys._debugmallocstats (which writes to the C stderr)."""
    import sys

    saved = os.dup(2)
    with scratch.open("wb") as out:
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    text = scratch.read_text()
    arenas = re.search(r"(\d+) arenas \* (\d+) bytes/arena\s*=\s*([\d,]+)", text)
    used = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
    return {
        "arenas": round(int(arenas.group(3).replace(",", "")) / 2**20, 1) if arenas else -1,
        "in_blocks": round(int(used.group(1).replace(",", "")) / 2**20, 1) if used else -1,
    }


async def census(pid: int, path: Path) -> dict[str, Any]:
    if os.environ.get("BENCH_NO_CENSUS") == "1":
        return {}
    await asyncio.to_thread(path.unlink, missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    for _ in range(120):
        await asyncio.sleep(0.5)
        with contextlib.suppress(OSError, ValueError):
            data: dict[str, Any] = json.loads(await asyncio.to_thread(path.read_text))
            return data
    return {}


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def recycles_logged(log: Path) -> int:
    """How often the worker said it drains to be recycled (trouw.stack.runtime's warning)."""
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace").count("is above worker_recycle_rss_mib")
    return 0


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def tree_cpu_s(pid: int) -> float:
    """CPU of a process and its children (the dev server)."""
    process = psutil.Process(pid)
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            times = each.cpu_times()
            total += times.user + times.system
    return total


def mappings_mib(pid: int) -> dict[str, float]:
    """The worker's resident memory by kind of mapping (/proc/PID/smaps): glibc's main heap,
    other anonymous memory (its other heaps, pymalloc's arenas, large blocks, thread stacks)
    and file pages (shared libraries: the Temporal core, libpython, ...)."""
    kinds = {"main_heap": 0, "anonymous": 0, "files": 0}
    kind = "anonymous"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(maxsplit=6)
        if "-" in first[0] and len(first) >= 5:  # a mapping's header: range perms offset ...
            name = first[5] if len(first) > 5 else ""
            kind = (
                "main_heap"
                if name == "[heap]"
                else "files"
                if name.startswith("/")
                else "anonymous"
            )
        elif first[0] == "Rss:":
            kinds[kind] += int(first[1])
    return {k: round(v / 1024, 1) for k, v in kinds.items()}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def quiet(
    pid: int, *, idle_cpu: float = 0.05, window: float = 2.0, bound: float = 120
) -> None:
    """Wait until the worker used less than idle_cpu seconds of CPU over a window."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        before = cpu_s(pid)
        await asyncio.sleep(window)
        if cpu_s(pid) - before < idle_cpu * window:
            return


def parse_variants(text: str) -> list[tuple[str, dict[str, str]]]:
    """`name:KEY=VALUE,KEY=VALUE;name2` -> [(name, {KEY: VALUE}), (name2, {})]."""
    variants = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, settings = part.partition(":")
        env = dict(item.split("=", 1) for item in settings.split(",") if item)
        variants.append((name, env))
    return variants


async def run_config(
    variant: tuple[str, dict[str, str]], steps: list[int], opts: argparse.Namespace
) -> dict[str, Any]:
    name, variant_env = variant
    cache, unsandboxed, inflight, trim = (
        opts.cache,
        opts.unsandboxed,
        opts.inflight,
        opts.malloc_trim,
    )
    window, batch = opts.window, opts.batch
    from sqlalchemy.exc import OperationalError
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.service import RPCError

    from trouw.domain.db.engine import make_engine, migrate, session_scope
    from trouw.domain.ingest import (
        ProductIn,
        PurchaseEvent,
        ingest_event,
        upsert_product,
        wire_event,
    )
    from trouw.domain.loyalty.ledger import take_derived
    from trouw.language.contracts import CustomerEvent
    from trouw.settings import Settings
    from trouw.stack.relay import mark_relayed
    from trouw.stack.temporal import deliver, start_dev_server, wait_for_port

    home = Path(tempfile.mkdtemp(prefix="trouw-memory-"))
    settings = Settings(
        home=home,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        temporal_persist=False,
        task_queue=TASK_QUEUE,
        signing_keys=["bench-key"],
    )
    server = start_dev_server(settings)
    await wait_for_port("127.0.0.1", settings.temporal_port, within=60, process=server.process)
    address = f"127.0.0.1:{settings.temporal_port}"
    engine = make_engine(f"sqlite:///{home / 'trouw.db'}")
    migrate(engine)
    with session_scope(engine) as session:
        for product in PRODUCTS:
            upsert_product(session, ProductIn.model_validate(product))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUW_")}
    env |= {
        "TROUW_HOME": str(home),
        "TEMPORAL_ADDRESS": address,
        "TROUW_TASK_QUEUE": TASK_QUEUE,
        "TROUW_SIGNING_KEYS": '["bench-key"]',
        "TROUW_JOURNEYS_DIR": str(ROOT / "journeys"),
        "TROUW_TEMPLATES_DIR": str(ROOT / "templates"),
        "TROUW_WORKER_MAX_CACHED_WORKFLOWS": str(cache),
        "BENCH_CENSUS_FILE": str(home / "census.json"),
        "BENCH_TRIM": "1" if trim else "0",
    }
    env |= variant_env
    # The reference variant runs this script's copy in --reference's export, so that the
    # worker imports that revision's packages.
    checkout = opts.reference_dir if name == "reference" else ROOT
    script = checkout / "bench" / SCRIPT.name
    args = [sys.executable, str(script), "--worker-child"]
    if unsandboxed:
        args.append("--unsandboxed")
    log = (home / "worker.log").open("ab")

    async def start_worker() -> subprocess.Popen[bytes]:
        started = await asyncio.to_thread(
            subprocess.Popen, args, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        # The worker is ready when its RSS stops growing (imports, journeys, templates).
        await asyncio.sleep(5)
        for _ in range(60):  # on a loaded machine the imports alone can look quiet for 2 s
            was = rss_mib(started.pid)
            await quiet(started.pid)
            if abs(rss_mib(started.pid) - was) < 0.5:
                break
        return started

    async def stop_worker(running: subprocess.Popen[bytes]) -> None:
        running.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(running.wait, 30)
        if running.poll() is None:
            running.kill()

    worker = await start_worker()
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    tail = OutboxTail(home / "outbox" / "index.jsonl")
    rows: list[dict[str, Any]] = []
    restarted: dict[str, Any] | None = None
    handing: set[asyncio.Task[None]] = set()
    try:
        before = rss_mib(worker.pid)
        counted = await census(worker.pid, home / "census.json")
        idle = {
            "rss_mib": round(before, 1),
            "threads": psutil.Process(worker.pid).num_threads(),
            "mappings_mib": mappings_mib(worker.pid),
            "python_objects": counted.get("objects"),
            "glibc_mib": counted.get("glibc_mib"),
            "pymalloc_mib": counted.get("pymalloc_mib"),
            "uptime": uptime(),
        }
        print(f"  {name} before its first purchase: {json.dumps(idle)}", flush=True)
        taken = 0  # purchases stored and handed off so far
        began = time.monotonic()

        def store_batch(first: int, count: int) -> list[CustomerEvent]:
            # Many purchases per transaction: one write-lock turn of SQLite for `batch`
            # customers instead of one each, so the feeder costs the worker little.
            wires = []
            with session_scope(engine) as session:
                for n in range(first, first + count):
                    event = PurchaseEvent.model_validate(purchase("m", n)).as_event()
                    row, new = ingest_event(session, event)
                    take_derived(session)  # none for a purchase without loyalty
                    if new:
                        wires.append(wire_event(row))
            return wires

        async def store(first: int, count: int) -> list[CustomerEvent]:
            for attempt in range(10):
                try:
                    return await asyncio.to_thread(store_batch, first, count)
                except OperationalError:  # database is locked: the worker writes a lot
                    if attempt == 9:
                        raise
                    await asyncio.sleep(1)
            raise AssertionError("unreachable")

        gate = asyncio.Semaphore(inflight)

        async def signal_one(event: CustomerEvent) -> str | None:
            async with gate:
                try:
                    await deliver(client, event, task_queue=TASK_QUEUE)
                except RPCError:
                    return None  # stored: the worker's relay hands it off, as in production
                return event.id

        async def hand_off_batch(events: list[CustomerEvent]) -> None:
            # The API's hand-off (trouw.stack.relay.hand_off: signal-with-start, then relayed_at
            # set) with one UPDATE for the batch instead of one per event: 32 fewer turns of
            # SQLite's write lock, which the worker needs for every purchase it handles.
            handed = [i for i in await asyncio.gather(*map(signal_one, events)) if i is not None]
            for attempt in range(10):
                try:
                    await asyncio.to_thread(mark_relayed, engine, handed)
                    return
                except OperationalError:  # locked: the relay would mark them again anyway
                    if attempt == 9:
                        raise
                    await asyncio.sleep(1)

        for step in steps:
            step_began, step_first, step_cpu_before = time.monotonic(), taken, cpu_s(worker.pid)
            others_before = (tree_cpu_s(server.process.pid), cpu_s(os.getpid()))
            while taken < step:
                # At most `window` purchases wait for their confirmation: the worker sets the
                # pace, and the sticky cache is not flooded with customers mid-purchase.
                tail.poll()
                room = window - (taken - len(tail.first))
                if room < min(batch, step - taken):
                    await asyncio.sleep(0.5)
                    continue
                count = min(batch, step - taken)
                task = asyncio.create_task(hand_off_batch(await store(taken, count)))
                handing.add(task)
                task.add_done_callback(handing.discard)
                taken += count
            if handing:
                await asyncio.gather(*handing)
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                tail.poll()
                if len(tail.first) >= taken:
                    break
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited; see {home / 'worker.log'}")
                await asyncio.sleep(1)
            await quiet(worker.pid)
            rss = rss_mib(worker.pid)
            step_s = time.monotonic() - step_began
            step_cpu = cpu_s(worker.pid) - step_cpu_before
            step_n = max(1, taken - step_first)
            server_ms = (tree_cpu_s(server.process.pid) - others_before[0]) / step_n * 1000
            feeder_ms = (cpu_s(os.getpid()) - others_before[1]) / step_n * 1000
            row = {
                "customers": taken,
                "confirmed": len(tail.first),
                "rss_mib": round(rss, 1),
                "growth_mib": round(rss - before, 1),
                "workflows_running": (
                    await client.count_workflows("ExecutionStatus='Running'")
                ).count,
                "worker_cpu_s": round(cpu_s(worker.pid), 1),
                "elapsed_s": round(time.monotonic() - began),
                "load": round(os.getloadavg()[0], 1),
                "threads": psutil.Process(worker.pid).num_threads(),
                "rate": round((taken - step_first) / step_s, 1),
                "cpu_ms_each": round(step_cpu / step_n * 1000),
                # Where the pace is set: CPU per customer of the dev server and of this feeder.
                "server_cpu_ms_each": round(server_ms),
                "feeder_cpu_ms_each": round(feeder_ms),
                "uptime": uptime(),
                "mappings_mib": mappings_mib(worker.pid),
                # Times the worker drained and started afresh (worker_recycle_rss_mib) so far.
                "recycles": recycles_logged(home / "worker.log"),
            }
            now_counted = await census(worker.pid, home / "census.json")
            grown = {
                name: count - counted.get("types", {}).get(name, 0)
                for name, count in now_counted.get("types", {}).items()
            }
            row["python_objects"] = now_counted.get("objects")
            row["gc_s"] = now_counted.get("gc_s")
            row["biggest"] = now_counted.get("biggest")
            row["glibc_mib"] = now_counted.get("glibc_mib")
            row["pymalloc_mib"] = now_counted.get("pymalloc_mib")
            row["sqlite_mib"] = now_counted.get("sqlite_mib")
            if now_counted.get("trimmed") is not None:
                row["rss_after_malloc_trim_mib"] = round(now_counted["trimmed"], 1)
            row["grown_types"] = dict(sorted(grown.items(), key=lambda kv: -kv[1])[:8])
            counted = now_counted
            rows.append(row)
            print(
                f"  {name}: {json.dumps(row)}",
                flush=True,
            )
        if opts.settle:
            # The same worker left alone beside its sleeping customers: one above its recycle
            # mark recycles once its minimum life is over (worker_recycle_min_seconds).
            await asyncio.sleep(opts.settle)
            await quiet(worker.pid)
            settled = {
                "customers": taken,
                "after_s": opts.settle,
                "rss_mib": round(rss_mib(worker.pid), 1),
                "threads": psutil.Process(worker.pid).num_threads(),
                "recycles": recycles_logged(home / "worker.log"),
                "uptime": uptime(),
            }
            print(f"  {name} settled: {json.dumps(settled)}", flush=True)
        if opts.restart:
            # A worker started afresh beside the same sleeping customers: what a restart (a
            # deploy) leaves, with nothing in the sticky cache until a timer fires.
            await stop_worker(worker)
            worker = await start_worker()
            await asyncio.sleep(60)  # its first trim and its relay, sweep and run sync passes
            await quiet(worker.pid)
            now_counted = await census(worker.pid, home / "census.json")
            restarted = {
                "customers": taken,
                "rss_mib": round(rss_mib(worker.pid), 1),
                "threads": psutil.Process(worker.pid).num_threads(),
                "mappings_mib": mappings_mib(worker.pid),
                "python_objects": now_counted.get("objects"),
                "glibc_mib": now_counted.get("glibc_mib"),
                "pymalloc_mib": now_counted.get("pymalloc_mib"),
                "workflows_running": (
                    await client.count_workflows("ExecutionStatus='Running'")
                ).count,
                "uptime": uptime(),
            }
            print(f"  {name} restarted: {json.dumps(restarted)}", flush=True)
    finally:
        for task in handing:
            task.cancel()
        await stop_worker(worker)
        server.stop()
        engine.dispose()
    return {
        "variant": name,
        "env": variant_env,
        "cache": cache,
        "unsandboxed": unsandboxed,
        "rss_before_mib": round(before, 1),
        "steps": rows,
        "restarted": restarted,
    }


def report(results: list[dict[str, Any]], env: dict[str, Any]) -> str:
    out = [
        "# Worker memory with sleeping customers (in-memory dev server, `trouw worker`)",
        "",
        f"machine: {env}",
        "",
        "| variant | cache | customers | sleeping workflows | worker RSS MiB | growth over the "
        "worker before its first purchase (reference) | per 1,000 customers | threads "
        "| customers/s, worker CPU ms each | dev server, feeder CPU ms each | load "
        "| recycles |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        runner = result["variant"] + (" unsandboxed" if result["unsandboxed"] else "")
        previous = (0, result["rss_before_mib"])
        out.append(
            f"| {runner} | {result['cache']} | 0 | 0 | {result['rss_before_mib']} | reference "
            "| | | | | | |"
        )
        for row in result["steps"]:
            per_k = (row["rss_mib"] - previous[1]) / max(1, row["customers"] - previous[0]) * 1000
            out.append(
                f"| {runner} | {result['cache']} | {row['customers']} | {row['workflows_running']} "
                f"| {row['rss_mib']} | +{row['growth_mib']} "
                f"({row['rss_mib'] / result['rss_before_mib']:.2f}×) | {per_k:+.1f} MiB "
                f"| {row['threads']} | {row['rate']}, {row['cpu_ms_each']} "
                f"| {row['server_cpu_ms_each']}, {row['feeder_cpu_ms_each']} | {row['load']} "
                f"| {row.get('recycles', 0)} |"
            )
            previous = (row["customers"], row["rss_mib"])
        if result.get("restarted"):
            again = result["restarted"]
            out.append(
                f"| {runner}, restarted | {result['cache']} | {again['customers']} "
                f"| {again['workflows_running']} | {again['rss_mib']} | restarted | | "
                f"{again['threads']} | | | {again['uptime'].rsplit(':', 1)[-1].strip()} | |"
            )
    return "\n".join(out)


async def main(opts: argparse.Namespace) -> None:
    steps = [int(s) for s in opts.steps.split(",")]
    results = []
    print(f"load average at start: {os.getloadavg()}", flush=True)
    variants = parse_variants(opts.variants)
    if opts.reference:
        into = Path(tempfile.mkdtemp(prefix="trouw-memory-reference-")) / "checkout"
        opts.reference_dir = await asyncio.to_thread(export, ROOT, opts.reference, into)
        variants.insert(0, ("reference", {}))
    for variant in variants:
        results.append(await run_config(variant, steps, opts))
    print(f"load average at end: {os.getloadavg()}", flush=True)
    print()
    print(report(results, environment()))


if __name__ == "__main__":
    from trouw.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1000,5000,10000")
    parser.add_argument(
        "--cache",
        type=int,
        default=Settings().worker_max_cached_workflows,
        help="the sticky cache of every variant (default: the product's)",
    )
    parser.add_argument(
        "--variants",
        default="default",
        help="worker configurations run one after the other: 'name:ENV=VALUE,...;name2:...' "
        "(e.g. 'default;arenas2:MALLOC_ARENA_MAX=2')",
    )
    parser.add_argument("--inflight", type=int, default=32, help="hand-offs in flight")
    parser.add_argument("--window", type=int, default=64, help="purchases awaiting confirmation")
    parser.add_argument("--batch", type=int, default=32, help="purchases stored per transaction")
    parser.add_argument("--unsandboxed", action="store_true")
    parser.add_argument(
        "--no-census",
        action="store_true",
        help="no object census, glibc or pymalloc account in the worker: each takes memory "
        "(about 15 MiB of pymalloc's arenas after the first) that the next steps' RSS keeps",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="after the last step, start the worker afresh and read it again",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0,
        help="after the last step, leave the worker alone this many seconds and read it again "
        "(a worker above worker_recycle_rss_mib recycles meanwhile)",
    )
    parser.add_argument(
        "--malloc-trim", action="store_true", help="also read RSS after glibc's malloc_trim"
    )
    parser.add_argument(
        "--reference",
        help="first run the worker of a clean export of this git revision (e.g. main) as the "
        "variant 'reference', with the same feed",
    )
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.no_census:
        os.environ["BENCH_NO_CENSUS"] = "1"
    if opts.worker_child:
        worker_child(opts.unsandboxed)
    else:
        asyncio.run(main(opts))
