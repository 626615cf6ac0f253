"""Two worker processes and the API against one dev server and PostgreSQL; one worker is
SIGKILLed mid-load: every purchase gets its confirmation once (no loss, no duplicate)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import _PG, ROOT
from tests.e2e.cluster import FAKE_LISTING_LAG_SECONDS, cluster, purchase, wait_until
from trouw.domain.content import content_digest
from workflows.options import SEND_ATTEMPT_TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
PURCHASES = 40
# A send the dead worker held is taken up after its attempt timeout (SEND_ATTEMPT_TIMEOUT,
# 45 s); one whose request never reached SendGrid then waits for the listing lag (the fake's:
# FAKE_LISTING_LAG_SECONDS) and is resent. Twice that on a loaded machine, and a margin.
RECOVERY_WITHIN = 2 * (SEND_ATTEMPT_TIMEOUT.total_seconds() + FAKE_LISTING_LAG_SECONDS) + 30


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
        killed_at = time.monotonic()
        try:
            await wait_until(
                lambda: len(shop.confirmation_keys()) >= PURCHASES,
                within=RECOVERY_WITHIN,
                what="every confirmation recorded as sent",
            )
            await wait_until(
                lambda: len(shop.mail_keys()) >= PURCHASES, within=60, what="every mail at SendGrid"
            )
        except AssertionError:
            print(await shop.report())  # noqa: T201 - what a failed run leaves to read
            raise
        recovered = time.monotonic() - killed_at
        elapsed = time.monotonic() - started
        survivor_alive = shop.workers["worker-2"].poll() is None
        # Each worker's presence row: the killed one never removed its own (no clean stop).
        presence = dict(shop.rows("SELECT pid, digest FROM worker_presence"))
        mails = shop.mail_keys()
        confirmations = shop.confirmation_keys()
        reconciled = shop.reconciled_keys()

    duplicates = {key: count for key, count in mails.items() if count > 1}
    missing = confirmations - set(mails)
    print(  # noqa: T201 - the figures the report quotes
        f"\npurchases posted {PURCHASES}; mails at SendGrid when worker-1 was killed {at_kill}; "
        f"confirmations sent {len(confirmations)}; mails at SendGrid {sum(mails.values())} "
        f"({len(mails)} distinct); duplicates {len(duplicates)}; lost {PURCHASES - len(confirmations)}"
        f"; unknown outcomes reconciled {len(reconciled)} ({sum(reconciled.values())} resent)"
        f"; {elapsed:.1f} s in all, {recovered:.1f} s from the kill to the last confirmation"
    )
    assert survivor_alive
    assert len(confirmations) == PURCHASES  # no loss
    assert not missing
    assert duplicates == {}  # no duplicate
    assert PURCHASES // 4 <= at_kill < PURCHASES  # the kill really happened mid-load
    digest = content_digest(ROOT / "journeys", ROOT / "templates")
    assert presence == {process.pid: digest for process in shop.workers.values()}
