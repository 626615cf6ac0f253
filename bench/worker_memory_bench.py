"""Worker memory with many sleeping customers: RSS of one worker process at steps up to 10,000.

Run: .venv/bin/python bench/worker_memory_bench.py                       (10,000 customers)
     .venv/bin/python bench/worker_memory_bench.py --steps 200,500 --cache 500,100
Prints a report; docs/performance.md ("Worker memory") has the results. Not a test.

One in-memory `temporal server start-dev` (trouw.temporal.start_dev_server), one SQLite database,
and per configuration one worker process exactly as `trouw worker` runs it (worker, relay,
content watch, loyalty sweep, run sync: trouw.runtime.run_stack), with its sticky cache set by
TROUW_WORKER_MAX_CACHED_WORKFLOWS. This process plays the API: each purchase of a new customer
(three or two lines, bench/api_bench.purchase) is stored as POST /v1/events stores it and handed
to the customer's workflow; the worker sends the confirmation and the customer's journeys go to
sleep (post_purchase waits for the delivery, the others are held until their first wait ends).
At each step, once every confirmation is in the outbox and the worker has gone quiet, the
worker's RSS is read. The reference, measured in the same run: the same worker's RSS before the
first purchase (its imports, journeys, templates, Temporal core).

Configurations (--cache, and --unsandboxed for the runner the simulator uses) run one after
the other on fresh servers, each with --steps customers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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
from api_bench import PRODUCTS, OutboxTail, environment, free_port, purchase  # noqa: E402

TASK_QUEUE = "trouw-memory-bench"


def worker_child(unsandboxed: bool) -> None:
    """The worker process: `trouw worker` (run_stack), optionally with the unsandboxed runner."""
    from trouw.runtime import run_stack
    from trouw.settings import Settings
    from trouw.temporal import quiet_runtime

    if unsandboxed:
        from temporalio.worker import UnsandboxedWorkflowRunner

        import trouw.worker

        trouw.worker.workflow_runner = UnsandboxedWorkflowRunner  # type: ignore[assignment]
    quiet_runtime()
    census = os.environ.get("BENCH_CENSUS_FILE")
    if census:
        signal.signal(signal.SIGUSR1, lambda _n, _f: write_census(Path(census)))
    asyncio.run(run_stack(Settings(), api=False, worker=True))


def write_census(path: Path) -> None:
    """Live Python objects by type (after a full collection), for what grows between steps."""
    import collections
    import gc

    gc.collect()
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    trimmed = None
    if os.environ.get("BENCH_TRIM") == "1":
        import ctypes

        # What glibc holds freed but not returned: RSS after malloc_trim (an intervention).
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = rss_mib(os.getpid())
    path.write_text(
        json.dumps({"objects": sum(counts.values()), "types": dict(counts), "trimmed": trimmed})
    )


async def census(pid: int, path: Path) -> dict[str, Any]:
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


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


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


async def run_config(
    cache: int, unsandboxed: bool, steps: list[int], inflight: int, trim: bool = False
) -> dict[str, Any]:
    from sqlalchemy.exc import OperationalError
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from trouw.api.events import store_event
    from trouw.db.engine import make_engine, migrate, session_scope
    from trouw.ingest import ProductIn, PurchaseEvent, upsert_product
    from trouw.relay import hand_off
    from trouw.settings import Settings
    from trouw.temporal import start_dev_server, wait_for_port

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
    args = [sys.executable, str(SCRIPT), "--worker-child"]
    if unsandboxed:
        args.append("--unsandboxed")
    log = (home / "worker.log").open("wb")
    worker = await asyncio.to_thread(
        subprocess.Popen, args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    tail = OutboxTail(home / "outbox" / "index.jsonl")
    rows: list[dict[str, Any]] = []
    try:
        # The worker is ready when its RSS stops growing (imports, journeys, templates).
        await asyncio.sleep(5)
        await quiet(worker.pid)
        before = rss_mib(worker.pid)
        counted = await census(worker.pid, home / "census.json")
        taken = 0  # purchases handed out to the feeders so far
        window = inflight * 4
        sent: set[str] = set()
        began = time.monotonic()

        async def one(n: int) -> None:
            # At most `window` purchases wait for their confirmation: the worker, not this
            # feeder, sets the pace, and the feeder never holds SQLite's write lock for long.
            while len(sent) - len(tail.first) >= window:
                await asyncio.sleep(0.5)
                tail.poll()
            body = purchase("m", n)
            event = PurchaseEvent.model_validate(body).as_event()
            for attempt in range(10):
                try:
                    stored = await asyncio.to_thread(store_event, engine, event)
                    break
                except OperationalError:  # database is locked: the worker writes a lot
                    if attempt == 9:
                        raise
                    await asyncio.sleep(1)
            try:
                await hand_off(engine, client, stored.id, task_queue=TASK_QUEUE, event=stored.wire)
            except OperationalError:
                pass  # stored: the worker's relay hands it off, as after an API's failed hand-off
            sent.add(body["profile"]["email"])

        for step in steps:

            async def feeder(limit: int = step) -> None:
                nonlocal taken
                while taken < limit:
                    taken += 1
                    await one(taken - 1)

            await asyncio.gather(*(feeder() for _ in range(inflight)))
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                tail.poll()
                if len(tail.first) >= len(sent):
                    break
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited; see {home / 'worker.log'}")
                await asyncio.sleep(1)
            await quiet(worker.pid)
            rss = rss_mib(worker.pid)
            row = {
                "customers": len(sent),
                "confirmed": len(tail.first),
                "rss_mib": round(rss, 1),
                "growth_mib": round(rss - before, 1),
                "workflows_running": (
                    await client.count_workflows("ExecutionStatus='Running'")
                ).count,
                "worker_cpu_s": round(cpu_s(worker.pid), 1),
                "elapsed_s": round(time.monotonic() - began),
                "load": round(os.getloadavg()[0], 1),
            }
            now_counted = await census(worker.pid, home / "census.json")
            grown = {
                name: count - counted.get("types", {}).get(name, 0)
                for name, count in now_counted.get("types", {}).items()
            }
            row["python_objects"] = now_counted.get("objects")
            if now_counted.get("trimmed") is not None:
                row["rss_after_malloc_trim_mib"] = round(now_counted["trimmed"], 1)
            row["grown_types"] = dict(sorted(grown.items(), key=lambda kv: -kv[1])[:8])
            counted = now_counted
            rows.append(row)
            print(
                f"  cache {cache}{' unsandboxed' if unsandboxed else ''}: {json.dumps(row)}",
                flush=True,
            )
    finally:
        worker.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(worker.wait, 30)
        if worker.poll() is None:
            worker.kill()
        server.stop()
        engine.dispose()
    return {
        "cache": cache,
        "unsandboxed": unsandboxed,
        "rss_before_mib": round(before, 1),
        "steps": rows,
    }


def report(results: list[dict[str, Any]], env: dict[str, Any]) -> str:
    out = [
        "# Worker memory with sleeping customers (in-memory dev server, `trouw worker`)",
        "",
        f"machine: {env}",
        "",
        "| runner | cache | customers | sleeping workflows | worker RSS MiB | growth over the "
        "worker before its first purchase (reference) | per 1,000 customers | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        runner = "unsandboxed" if result["unsandboxed"] else "sandbox"
        previous = (0, result["rss_before_mib"])
        out.append(
            f"| {runner} | {result['cache']} | 0 | 0 | {result['rss_before_mib']} | reference | | |"
        )
        for row in result["steps"]:
            per_k = (row["rss_mib"] - previous[1]) / max(1, row["customers"] - previous[0]) * 1000
            out.append(
                f"| {runner} | {result['cache']} | {row['customers']} | {row['workflows_running']} "
                f"| {row['rss_mib']} | +{row['growth_mib']} "
                f"({row['rss_mib'] / result['rss_before_mib']:.2f}×) | {per_k:+.1f} MiB "
                f"| {row['load']} |"
            )
            previous = (row["customers"], row["rss_mib"])
    return "\n".join(out)


async def main(opts: argparse.Namespace) -> None:
    steps = [int(s) for s in opts.steps.split(",")]
    results = []
    for cache in [int(c) for c in opts.cache.split(",")]:
        results.append(
            await run_config(cache, opts.unsandboxed, steps, opts.inflight, opts.malloc_trim)
        )
    print()
    print(report(results, environment()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1000,2000,5000,10000")
    parser.add_argument("--cache", default="500", help="max_cached_workflows, comma-separated")
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--unsandboxed", action="store_true")
    parser.add_argument(
        "--malloc-trim", action="store_true", help="also read RSS after glibc's malloc_trim"
    )
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker_child:
        worker_child(opts.unsandboxed)
    else:
        asyncio.run(main(opts))
