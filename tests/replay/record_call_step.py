"""Records histories of a journey whose `call` step reports an event (histories/call_step/).

`python -m tests.replay.record_call_step call_step` was run on the workflow code from before the
typed call result (CallActivityResult, trouw/language/contracts.py), when the workflow popped the events
out of a plain dict: the replay test shows today's code reads that result the same way. Run
after a deliberate change of that behaviour, never to silence a failing replay test.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.replay.record import scenario_histories, write_histories

# journeys/examples/voucher_wait.yaml: a voucher issued (its voucher_issued event signalled to
# the customer workflow), then a wait for its redemption that times out into the reminder.
JOURNEY = ROOT / "journeys" / "examples" / "voucher_wait.yaml"
CUSTOMERS = ("v1", "v2")


async def record(folder: Path) -> list[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="trouw-record-"))
    try:
        journeys = workdir / "journeys"
        journeys.mkdir()
        shutil.copy(JOURNEY, journeys / JOURNEY.name)
        customers = [
            {
                "id": cid,
                "first_name": "Ann",
                "email": f"{cid}@example.com",
                "opt_in": {"email": True},
            }
            for cid in CUSTOMERS
        ]
        events: list[dict[str, Any]] = [
            {
                "at": "0d",
                "type": "purchase",
                "customer": cid,
                "order": f"o-{cid}",
                "channel": "web",
                "lines": [{"sku": "POT-40"}],
            }
            for cid in CUSTOMERS
        ]
        histories = await scenario_histories(
            journeys, workdir, customers=customers, events=events, until="25d"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return write_histories(histories, folder)


if __name__ == "__main__":
    target = Path(__file__).parent / "histories" / sys.argv[1]
    files = asyncio.run(record(target))
    print(f"{len(files)} histories written to {target}")  # noqa: T201
