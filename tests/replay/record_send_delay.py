"""Records a run whose local send attempt is rate limited with a retry delay (histories/<folder>/).

The run of tests/workflows/test_sending.py: a first send whose local attempt fails with
RateLimitedError carrying `next_retry_delay`, the regular activity that sends it, a second send.
`python -m tests.replay.record_send_delay send_delay_v1` was run on the workflow code from
before the regular activity waited that delay (no timer, no patch marker);
`... send_delay` after it. Run after a deliberate change of that behaviour, never to silence a
failing replay test.
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
from tests.workflows.test_sending import TWO_SENDS, rate_limited, run_to_history
from trouw.temporal import binary


async def record(folder: Path) -> list[Path]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    try:
        _result, history = await run_to_history(
            env.client, Fakes([rate_limited, sent, sent]), TWO_SENDS
        )
    finally:
        await env.shutdown()
    return write_histories({"journey_rate_limited_local_send": history}, folder)


if __name__ == "__main__":
    target = Path(__file__).parent / "histories" / sys.argv[1]
    files = asyncio.run(record(target))
    print(f"{len(files)} histories written to {target}")  # noqa: T201
    sys.stdout.flush()
    os._exit(0)  # the Temporal client can crash at interpreter exit (sdk-python issue 300)
