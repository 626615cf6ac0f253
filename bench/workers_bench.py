"""Purchase-to-confirmation throughput with one and with two worker processes (production shape).

Run: .venv/bin/python bench/workers_bench.py [--purchases 60]
Each round starts the production shape of tests/e2e/cluster.py: a Temporal dev server (in
memory), a PostgreSQL schema of its own, `trouw api` and N `trouw worker` processes, SendGrid as
a local fake. It posts the purchases through the API (ten at a time) and times from the first
post until every confirmation is recorded as sent. The two rounds run one after the other on the
same machine, so their ratio holds under the shared machine's load (printed) even when the
absolute figures do not. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.cluster import cluster, purchase, wait_until  # noqa: E402


async def round_trip(workers: int, purchases: int, offset: int) -> float:
    with tempfile.TemporaryDirectory(prefix=f"trouw-bench-{workers}w-") as home:
        async with cluster(Path(home), workers=workers, verbose=False) as shop:
            bodies = [purchase(offset + index) for index in range(purchases)]
            started = time.monotonic()
            codes = await shop.post(bodies)
            if codes != [202] * purchases:
                raise RuntimeError(f"the API refused purchases: {sorted(set(codes))}")
            await wait_until(
                lambda: len(shop.confirmation_keys()) >= purchases,
                within=900,
                what="every confirmation",
            )
            return time.monotonic() - started


async def main(purchases: int) -> None:
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    results: dict[int, float] = {}
    for workers in (1, 2):
        seconds = await round_trip(workers, purchases, offset=workers * 100_000)
        results[workers] = seconds
        print(
            f"{workers} worker(s): {purchases} purchases -> confirmations in {seconds:.1f} s "
            f"= {purchases / seconds:.2f}/s",
            flush=True,
        )
    ratio = results[1] / results[2]
    print(f"two workers / one worker throughput: {ratio:.2f}x")
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purchases", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(main(args.purchases))
    sys.stdout.flush()
    os._exit(0)  # the Temporal client can crash at interpreter exit (sdk-python issue 300)
