"""Records runs whose sends fail and are retried (tests/replay/histories/<folder>/).

The runs of tests/workflows/test_sending.py, on fake activities: `rate_limited_local_send`, a
first send whose local attempt fails with RateLimitedError carrying `next_retry_delay`, then the
regular activity, then a second send; `send_retries_run_out`, a first send rate-limited until
the activity's day of retries is over, then a second send; `cancelled_between_retries`, a run
cancelled while its first send's activity waits for its next attempt (5 h after a 429).

`python -m tests.replay.record_sends send_delay_v1 rate_limited_local_send` was run on the
workflow code from before the regular activity waited that delay (no timer, no patch marker),
`... send_delay rate_limited_local_send` after it; `... send_gave_up_v1 send_retries_run_out`
on the code from before a send whose retries ran out ended its ledger row, `... send_gave_up`
after; `... send_cancelled_v1 cancelled_between_retries` on the code from before a cancelled
run's send ended its row (the run went on with its next step), `... send_cancelled` after. Run after a deliberate change of that behaviour, never to silence a failing replay test.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.replay.record import write_histories
from tests.workflows.test_journey_control_flow import Fakes, sent
from tests.workflows.test_sending import (
    CANCELLED_BETWEEN_RETRIES,
    RETRIES_RUN_OUT,
    TWO_SENDS,
    GivingUpFakes,
    cancel_to_history,
    rate_limited,
    retry_pending,
    run_to_history,
)
from trouw.stack.temporal import binary

RUNS = {
    "rate_limited_local_send": lambda: Fakes([rate_limited, sent, sent]),
    "send_retries_run_out": lambda: GivingUpFakes(list(RETRIES_RUN_OUT)),
    "cancelled_between_retries": lambda: GivingUpFakes(list(CANCELLED_BETWEEN_RETRIES)),
}
# The runs cancelled once they are where the name says.
CANCELLED = {"cancelled_between_retries": retry_pending}


async def record(folder: Path, runs: list[str]) -> list[Path]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    histories = {}
    try:
        for name in runs:
            if name in CANCELLED:
                _ended, history = await cancel_to_history(
                    env.client, RUNS[name](), TWO_SENDS, CANCELLED[name]
                )
            else:
                _result, history = await run_to_history(env.client, RUNS[name](), TWO_SENDS)
            histories[f"journey_{name}"] = history
    finally:
        await env.shutdown()
    return write_histories(histories, folder)


if __name__ == "__main__":
    target = Path(__file__).parent / "histories" / sys.argv[1]
    files = asyncio.run(record(target, sys.argv[2:] or list(RUNS)))
    print(f"{len(files)} histories written to {target}")  # noqa: T201
    sys.stdout.flush()
    os._exit(0)  # the Temporal client can crash at interpreter exit (sdk-python issue 300)
