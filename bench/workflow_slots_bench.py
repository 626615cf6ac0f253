"""Workflow task slots and polls: how many tasks a worker runs at once when its tasks wait.

Run: .venv/bin/python bench/workflow_slots_bench.py            (about 3 minutes)
     .venv/bin/python bench/workflow_slots_bench.py --nap 1 --workflows 80 --rounds 2

N new workflows, each with one workflow task that waits for a local activity sleeping --nap
seconds (no CPU), started at once on an in-memory dev server; printed: workflows finished per
second for each worker configuration, one after the other on the same server. With tasks that
wait rather than compute, the rate is (tasks that can run at once) / nap: it shows how many
slots a configuration leaves to tasks, whatever the machine's load. A Trouw purchase's workflow
task is of this kind: it holds its slot while match_journeys, send_message and
record_run_events run (docs/performance.md, "Engine"; docs/decisions.md).

Temporal's core reserves a slot for every poll before it sends it, so a waiting poll holds a
slot: with max_concurrent_workflow_tasks 8 and Temporal's default of 5 polls (4 on the sticky
queue, which a new workflow never uses), a burst of new workflows had 4 slots, not 8.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from temporalio import activity, workflow  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker  # noqa: E402

NAP = "nap"


@activity.defn(name=NAP)
async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


@workflow.defn(name="Nap", sandboxed=False)
class NapWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> None:
        await workflow.execute_local_activity(
            NAP, seconds, start_to_close_timeout=timedelta(seconds=60)
        )


def configurations() -> dict[str, dict[str, Any]]:
    """Trouw before (8 slots, Temporal's polls), more slots alone, and Trouw's settings now.
    Each with a sticky cache of its slots, at least 10 (Trouw's): the core runs no more tasks at
    once than its cache holds."""

    def split(slots: int, polls: int, threads: int | None = None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "max_concurrent_workflow_tasks": slots,
            "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(polls),
            "nonsticky_to_sticky_poll_ratio": 0.5,
        }
        if threads is not None:
            options["workflow_task_executor"] = ThreadPoolExecutor(threads)
        return options

    return {
        "8 slots, 5 polls (1 + 4 sticky): Trouw before": {"max_concurrent_workflow_tasks": 8},
        "32 slots, 5 polls (1 + 4 sticky)": {"max_concurrent_workflow_tasks": 32},
        "8 slots, 4 polls (2 + 2 sticky)": split(8, 4),
        "16 slots, 4 polls (2 + 2 sticky), 8 threads": split(16, 4, 8),
        "10 slots, 4 polls (2 + 2 sticky), 8 threads: Trouw now": split(10, 4, 8),
    }


async def rate(client: Client, options: dict[str, Any], workflows: int, seconds: float) -> float:
    queue = f"slots-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[NapWorkflow],
        activities=[nap],
        max_cached_workflows=max(10, options["max_concurrent_workflow_tasks"]),
        **options,
    ):
        await asyncio.sleep(1)  # its polls are out
        began = time.monotonic()
        handles = await asyncio.gather(
            *(
                client.start_workflow("Nap", seconds, id=f"{queue}-{n}", task_queue=queue)
                for n in range(workflows)
            )
        )
        await asyncio.gather(*(handle.result() for handle in handles))
        return workflows / (time.monotonic() - began)


async def main(opts: argparse.Namespace) -> None:
    from engine_bench import dev_server_settings

    from trouw.stack.temporal import start_dev_server, wait_for_port

    settings = dev_server_settings(Path(tempfile.mkdtemp(prefix="slots-bench-")), False)
    server = start_dev_server(settings)
    try:
        await wait_for_port("127.0.0.1", settings.temporal_port, within=60)
        client = await Client.connect(f"127.0.0.1:{settings.temporal_port}")
        print(f"{opts.workflows} workflows, local activity of {opts.nap} s each", flush=True)
        for _ in range(opts.rounds):
            for name, options in configurations().items():
                load = os.getloadavg()[0]
                got = await rate(client, options, opts.workflows, opts.nap)
                print(
                    f"{name:46s} {got:6.2f} workflows/s ~ {got * opts.nap:4.1f} tasks at once"
                    f"  (load {load:.1f})",
                    flush=True,
                )
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=80)
    parser.add_argument("--nap", type=float, default=2.0, help="seconds each local activity sleeps")
    parser.add_argument("--rounds", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
