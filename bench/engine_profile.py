"""Where Trouw's Python CPU goes per purchase: cProfile of API, relay and worker in one process.

Run: .venv/bin/python bench/engine_profile.py [--purchases 60] [--inflight 8] [--top 25]
Starts an in-memory `temporal server start-dev` and Trouw's whole stack in THIS process (the
API, the relay and the worker, as `trouw up` runs them minus the worker's own process), with a
CPU-time profiler (cProfile on time.thread_time) in every thread: the event loop (API routes,
activity coroutines), the workflow-activation threads (the sandbox) and the threads that run
database work. Then it posts new customers' purchases (three lines) and waits until every
confirmation is in the outbox, after a warm-up of 8 purchases that is not measured (imports,
journey validation, template compiles). It prints CPU per purchase for the stages of the path, each as
the cumulative CPU of one entry point, and the functions with the most CPU of their own.

Python work only: the dev server's CPU is not in it (bench/engine_bench.py measures that per
process). Not a test: nothing here asserts. py-spy is not available on this machine; cProfile
adds its own overhead (roughly 1.5-2x here), so the shares matter, not the milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(SCRIPT.parent))

import httpx  # noqa: E402
from api_bench import PRODUCTS, OutboxTail, purchase  # noqa: E402
from bench_load import free_port  # noqa: E402

# (label, file suffix, function name): each row is the cumulative CPU of that entry point.
STAGES = [
    ("API: POST /v1/events route", "trouw/ways_in/api/v1.py", "post_event"),
    (
        "API: store the event (ingest, one transaction)",
        "trouw/ways_in/api/events.py",
        "store_event",
    ),
    ("API: hand-off (signal-with-start + mark)", "trouw/stack/relay.py", "hand_off"),
    ("worker: workflow activations (sandbox)", "workflow_sandbox/_runner.py", "activate"),
    ("worker: sandbox instance creation", "workflow_sandbox/_runner.py", "__init__"),
    ("worker: match_journeys (plan the runs)", "activities/journey_runs.py", "_match"),
    ("worker: record_run / record_run_events", "activities/journey_runs.py", "record_run_events"),
    ("worker: send: prepare (claim, policy, context)", "activities/messaging.py", "_prepare"),
    ("worker: send: deliver (render, provider, record)", "activities/messaging.py", "_deliver"),
    ("worker: send_message (whole activity)", "activities/messaging.py", "send_message"),
]


class ThreadProfiles:
    """One cProfile per thread, on CPU time, started when the thread first runs Python."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start(self, *_: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(time.thread_time)
        with self._lock:
            self.profiles.append(profile)
        profile.enable()

    def install(self) -> None:
        threading.setprofile(self._start)
        self._start()

    def clear(self) -> None:
        """Forget what was measured so far (the warm-up), in every thread."""
        with self._lock:
            for profile in self.profiles:
                profile.clear()

    def stats(self) -> pstats.Stats:
        threading.setprofile(None)  # type: ignore[arg-type]
        for profile in self.profiles:
            profile.create_stats()
        # A thread that ran no Python since the warm-up was cleared has nothing to add (and
        # pstats refuses an empty profile).
        measured = [profile for profile in self.profiles if profile.stats]  # type: ignore[attr-defined]
        return pstats.Stats(*measured)  # type: ignore[arg-type]


def stage_seconds(stats: pstats.Stats, suffix: str, name: str) -> float:
    """Cumulative CPU of the matching functions (recursion counted once by cProfile)."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    return sum(
        ct
        for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in raw.items()
        if func == name and file.endswith(suffix)
    )


async def drive(
    profiles: ThreadProfiles, home: Path, purchases: int, inflight: int
) -> tuple[float, int]:
    os.environ.update(
        {
            "TROUW_HOME": str(home),
            "TROUW_API_PORT": str(free_port()),
            "TROUW_TEMPORAL_PORT": str(free_port()),
            "TROUW_TEMPORAL_UI_PORT": str(free_port()),
            "TROUW_TEMPORAL_PERSIST": "false",
            "TROUW_TASK_QUEUE": "engine-profile",
            "TROUW_SIGNING_KEYS": '["bench-key"]',
            "TROUW_JOURNEYS_DIR": str(ROOT / "journeys"),
            "TROUW_TEMPLATES_DIR": str(ROOT / "templates"),
        }
    )
    os.environ.pop("TEMPORAL_ADDRESS", None)
    from trouw.domain.db.engine import session_scope
    from trouw.settings import Settings
    from trouw.stack.runtime import Stack, run_stack
    from trouw.ways_in.api.auth import ensure_key

    settings = Settings()
    stop = asyncio.Event()
    ready = asyncio.Event()
    stack_of: list[Stack] = []

    async def on_ready(stack: Stack) -> None:
        stack_of.append(stack)
        ready.set()

    runner = asyncio.create_task(run_stack(settings, stop=stop, on_ready=on_ready))
    await asyncio.wait_for(ready.wait(), 180)
    stack = stack_of[0]
    with session_scope(stack.services.engine) as session:
        key = ensure_key(session, "bench", ["ingest", "read"])
    url = f"http://127.0.0.1:{settings.api_port}"
    tail = OutboxTail(home / "outbox" / "index.jsonl")
    async with httpx.AsyncClient(
        base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        for product in PRODUCTS:
            (await http.post("/v1/products", json=product)).raise_for_status()
        gate = asyncio.Semaphore(inflight)

        async def batch(prefix: str, count: int) -> tuple[float, int]:
            began = time.perf_counter()

            async def one(n: int) -> None:
                async with gate:
                    body = purchase(prefix, n)
                    (await http.post("/v1/events", json=body)).raise_for_status()

            await asyncio.gather(*(one(n) for n in range(count)))
            wanted = {f"{prefix}-c{n}@example.com" for n in range(count)}
            while True:
                tail.poll()
                if wanted <= set(tail.first) or time.perf_counter() - began > 600:
                    break
                await asyncio.sleep(0.2)
            return time.perf_counter() - began, len(wanted & set(tail.first))

        # Warm-up: imports, journey validation and template compiles happen once per process.
        await batch("warm", 8)
        await asyncio.sleep(1)
        profiles.clear()
        took, confirmed = await batch("prof", purchases)
    stop.set()
    await runner
    return took, confirmed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=60)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", help="also write the merged pstats here (for pstats/snakeviz)")
    args = parser.parse_args()
    from trouw.stack.temporal import quiet_runtime

    quiet_runtime()
    home = Path(tempfile.mkdtemp(prefix="trouw-profile-"))
    profiles = ThreadProfiles()
    load = os.getloadavg()[0]
    profiles.install()
    try:
        took, confirmed = asyncio.run(drive(profiles, home / "home", args.purchases, args.inflight))
    finally:
        stats = profiles.stats()
        shutil.rmtree(home, ignore_errors=True)
    n = args.purchases
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in stats.stats.values())  # type: ignore[attr-defined]
    print(
        f"{n} purchases, {confirmed} confirmed in {took:.1f} s; load {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )  # noqa: T201
    print(f"Python CPU in this process (all threads): {1000 * total / n:.1f} ms per purchase")  # noqa: T201
    print(f"\n{'stage (cumulative CPU)':52}{'ms/purchase':>12}{'share':>8}")  # noqa: T201
    for label, suffix, name in STAGES:
        seconds = stage_seconds(stats, suffix, name)
        print(f"{label:52}{1000 * seconds / n:>12.1f}{100 * seconds / total:>7.0f}%")  # noqa: T201
    if args.save:
        stats.dump_stats(args.save)
    print(f"\nfunctions by own CPU (top {args.top})")  # noqa: T201
    stats.sort_stats("tottime").print_stats(args.top)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
