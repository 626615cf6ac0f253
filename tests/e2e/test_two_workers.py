"""Two worker processes and the API against one dev server and PostgreSQL; one worker is
SIGKILLed mid-load: every purchase gets its confirmation once (no loss, no duplicate)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import _PG
from tests.e2e.cluster import cluster, purchase, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
PURCHASES = 40


@pytest.mark.xfail(
    strict=False,
    reason="recovery after a worker's SIGKILL sometimes exceeds the 5-minute limit: 2 of 5 runs "
    "on 2026-11-30 did not finish, cause not found (docs/operations.md)",
)
async def test_a_worker_killed_mid_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    if not _PG:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    async with cluster(tmp_path, workers=2) as shop:
        started = time.monotonic()
        codes = await shop.post([purchase(index) for index in range(PURCHASES)])
        assert codes == [202] * PURCHASES
        # Kill worker-1 once a quarter of the confirmations went out: it holds tasks then.
        await wait_until(
            lambda: len(shop.mail_keys()) >= PURCHASES // 4, within=180, what="first sends"
        )
        killed = shop.workers["worker-1"]
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(timeout=10) == -signal.SIGKILL
        at_kill = len(shop.mail_keys())
        await wait_until(
            lambda: len(shop.confirmation_keys()) >= PURCHASES,
            within=300,
            what="every confirmation recorded as sent",
        )
        await wait_until(
            lambda: len(shop.mail_keys()) >= PURCHASES, within=60, what="every mail at SendGrid"
        )
        elapsed = time.monotonic() - started
        survivor_alive = shop.workers["worker-2"].poll() is None
        mails = shop.mail_keys()
        confirmations = shop.confirmation_keys()

    duplicates = {key: count for key, count in mails.items() if count > 1}
    missing = confirmations - set(mails)
    print(  # noqa: T201 - the figures the report quotes
        f"\npurchases posted {PURCHASES}; mails at SendGrid when worker-1 was killed {at_kill}; "
        f"confirmations sent {len(confirmations)}; mails at SendGrid {sum(mails.values())} "
        f"({len(mails)} distinct); duplicates {len(duplicates)}; lost {PURCHASES - len(confirmations)}"
        f"; {elapsed:.1f} s"
    )
    assert survivor_alive
    assert len(confirmations) == PURCHASES  # no loss
    assert not missing
    assert duplicates == {}  # no duplicate
    assert PURCHASES // 4 <= at_kill < PURCHASES  # the kill really happened mid-load
