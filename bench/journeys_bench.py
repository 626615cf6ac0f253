"""Benchmark: simulation speed (1 and 100 customers over 400 days) and Temporal history size.

Run: .venv/bin/python bench/journeys_bench.py [--customers 100] [--runs 3]
Prints a report; the figures go into docs/performance.md. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trouw.commands.sample_shop import PRODUCTS as CATALOGUE  # noqa: E402
from trouw.commands.sample_shop import numbered_customer  # noqa: E402
from trouw.commands.simulate import load_scenario, simulate, simulate_parallel  # noqa: E402
from trouw.stack.temporal import quiet_runtime  # noqa: E402

# The products the stories buy, from the sample shop (fewer products: a smaller scenario file).
PRODUCTS = [p for p in CATALOGUE if p["sku"] in ("LAWN-10", "ROSE-01", "POT-40", "CAT-2")]


def customer_story(n: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One customer who touches every shipped journey over 400 days."""
    cid = f"c{n:03d}"
    customer = {
        **numbered_customer(cid, n),
        "phone": f"+3247{n:07d}",
        "birthday": f"1980-{(n % 12) + 1:02d}-{(n % 27) + 1:02d}" if n % 5 else None,
        "opt_in": {"email": n % 2 == 0, "sms": False},
    }
    customer = {k: v for k, v in customer.items() if v is not None}
    events = [
        {
            "at": "0d",
            "type": "purchase",
            "customer": cid,
            "order": f"{cid}-o1",
            "channel": "web",
            "lines": [{"sku": "LAWN-10"}, {"sku": "ROSE-01", "qty": 2}, {"sku": "POT-40"}],
        },
        {"at": "2d", "type": "delivered", "customer": cid, "order": f"{cid}-o1"},
        {
            "at": "40d",
            "type": "purchase",
            "customer": cid,
            "order": f"{cid}-o2",
            "channel": "pos",
            "lines": [{"sku": "CAT-2", "qty": 2}],
        },
    ]
    return customer, events


def write(path: Path, count: int) -> Path:
    customers, events = [], []
    for n in range(count):
        customer, story = customer_story(n)
        customers.append(customer)
        events.extend(story)
    data = {
        "start": "2026-03-02T09:00:00+01:00",
        "until": "400d",
        "customers": customers,
        "products": PRODUCTS,
        "events": events,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def timed(
    path: Path, histories: dict[str, Any] | None = None, processes: int | None = None
) -> tuple[float, int]:
    started = time.perf_counter()
    workdir = path.parent / f"sim-{time.time_ns()}"
    if histories is not None:
        result = await simulate(
            load_scenario(path),
            journeys_dir=ROOT / "journeys",
            templates_dir=ROOT / "templates",
            workdir=workdir,
            histories=histories,
        )
    else:
        result = await simulate_parallel(
            load_scenario(path),
            journeys_dir=ROOT / "journeys",
            templates_dir=ROOT / "templates",
            workdir=workdir,
            processes=processes,
        )
    return time.perf_counter() - started, len(result.timeline)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    quiet_runtime()
    work = Path(tempfile.mkdtemp(prefix="trouw-bench-"))

    one = write(work / "one.yaml", 1)
    singles = [await timed(one) for _ in range(args.runs)]
    many = write(work / "many.yaml", args.customers)
    hundred = [await timed(many) for _ in range(max(1, args.runs - 1))]
    serial = await timed(many, processes=1)

    histories: dict[str, Any] = {}
    await timed(one, histories)
    history = histories["journey:c000:post_purchase:c000-o1"]
    kinds = Counter(
        e.WhichOneof("attributes").removesuffix("_event_attributes") for e in history.events
    )
    waits = kinds.get("timer_started", 0)

    print("Trouw journey benchmark (time-skipping server, all shipped journeys, 400 days)")
    print(
        f"  1 customer:    median {statistics.median(s for s, _ in singles):.2f} s "
        f"(runs: {', '.join(f'{s:.2f}' for s, _ in singles)}), {singles[0][1]} message decisions"
    )
    print(
        f"  {args.customers} customers: median {statistics.median(s for s, _ in hundred):.2f} s "
        f"(runs: {', '.join(f'{s:.2f}' for s, _ in hundred)}), {hundred[0][1]} message decisions, "
        f"{statistics.median(s for s, _ in hundred) / args.customers * 1000:.0f} ms per customer"
    )
    print(
        f"  {args.customers} customers in one process: {serial[0]:.2f} s "
        f"({serial[0] / args.customers * 1000:.0f} ms per customer)"
    )
    print(
        f"  post_purchase history, web order of 3 products: {len(history.events)} events "
        f"+ {waits} search-attribute upserts on a real server = {len(history.events) + waits}"
    )
    for kind, count in kinds.most_common():
        print(f"    {count:3d}  {kind}")


if __name__ == "__main__":
    asyncio.run(main())
