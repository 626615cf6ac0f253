"""A worker that recycles itself above its memory mark while purchases flow (the mark set below
any worker's RSS, so it drains and starts afresh every few seconds): every purchase gets its
confirmation once (no loss, no duplicate), and the recycles show in its log and its metrics."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import _PG
from tests.e2e.cluster import Cluster, cluster, purchase, wait_until
from tests.e2e.test_slice import free_port
from workflows.options import SEND_ATTEMPT_TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
# Purchases are posted in waves of 30 every 3 s, faster than one worker confirms them on a quiet
# machine (10 a wave left nothing outstanding at most recycles there), so they flow across recycles.
WAVE = 30
MAX_WAVES = 20  # until 3 recycles fell mid-load (some confirmations still out), at most this
# As in test_two_workers: a send cut off by a drain is taken up after its attempt timeout at
# worst, then perhaps a lookup after the fake's listing lag; twice that and a margin.
RECOVERY_WITHIN = 2 * (SEND_ATTEMPT_TIMEOUT.total_seconds() + 5) + 30
DRAINING = "is above worker_recycle_rss_mib"
POLLING = "polling task queue"


def log_lines(shop: Cluster) -> list[dict[str, str]]:
    """The worker's JSON log lines (the cluster's processes log JSON), in order."""
    lines = []
    for text in (shop.home / "worker-1.log").read_text(errors="replace").splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def pauses(lines: list[dict[str, str]]) -> list[float]:
    """Seconds from each drain's warning to the fresh worker's first poll."""
    found, draining = [], None
    for line in lines:
        at = datetime.fromisoformat(line["time"])
        if DRAINING in line["message"]:
            draining = at
        elif POLLING in line["message"] and draining is not None:
            found.append((at - draining).total_seconds())
            draining = None
    return found


async def test_a_worker_recycled_while_purchases_flow_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    if not _PG:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    metrics_port = free_port()
    recycle = {
        "TROUW_WORKER_RECYCLE_RSS_MIB": "1",  # every worker is above it: each one recycles
        "TROUW_WORKER_RECYCLE_CHECK_SECONDS": "1",
        "TROUW_WORKER_RECYCLE_MIN_SECONDS": "8",
        "TROUW_WORKER_METRICS_PORT": str(metrics_port),
    }
    # Mails at SendGrid and purchases posted when each recycle began: fewer mails is mid-load.
    at_recycles: list[tuple[int, int]] = []
    posted = 0

    def watch() -> None:
        count = sum(DRAINING in line["message"] for line in log_lines(shop))
        while len(at_recycles) < count:
            at_recycles.append((len(shop.mail_keys()), posted))

    def mid_load() -> list[int]:
        return [mails for mails, then in at_recycles if mails < then]

    async with cluster(tmp_path, workers=1, worker_env=recycle) as shop:
        worker = shop.workers["worker-1"]
        started = time.monotonic()
        for _ in range(MAX_WAVES):
            bodies = [purchase(index) for index in range(posted, posted + WAVE)]
            assert await shop.post(bodies) == [202] * WAVE
            posted += WAVE
            for _ in range(12):  # 3 s between waves
                watch()
                await asyncio.sleep(0.25)
            if len(mid_load()) >= 3:
                break

        def all_out() -> bool:
            watch()
            return len(shop.confirmation_keys()) >= posted and len(shop.mail_keys()) >= posted

        try:
            await wait_until(all_out, within=RECOVERY_WITHIN, what="every confirmation sent")
        except AssertionError:
            print(await shop.report())  # noqa: T201 - what a failed run leaves to read
            raise
        elapsed = time.monotonic() - started
        await asyncio.sleep(3)  # a duplicate would have reached the fake by now
        watch()
        alive = worker.poll() is None
        # The counter of the worker running now: the recycles of the ones before it. A scrape
        # can fall between a drain and the fresh worker's start: try again.
        async with httpx.AsyncClient(timeout=5) as http:
            counted = None
            for _ in range(120):
                try:
                    text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                except httpx.HTTPError:
                    await asyncio.sleep(0.25)
                    continue
                counted = next(
                    float(line.split()[-1])
                    for line in text.splitlines()
                    if line.startswith("trouw_worker_recycles_total ")
                )
                break
        watch()  # the recycles up to the scrape: the counter cannot have more
        lines = log_lines(shop)
        mails = shop.mail_keys()
        confirmations = shop.confirmation_keys()
        reconciled = shop.reconciled_keys()

    duplicates = {key: count for key, count in mails.items() if count > 1}
    gaps = pauses(lines)
    print(  # noqa: T201 - the figures the report quotes
        f"\npurchases posted {posted}; recycles {len(at_recycles)} (mails at SendGrid, purchases "
        f"posted at each: {at_recycles}), {len(mid_load())} mid-load; confirmations sent "
        f"{len(confirmations)}; mails at SendGrid {sum(mails.values())} ({len(mails)} distinct); "
        f"duplicates {len(duplicates)}; lost {posted - len(confirmations)}; unknown outcomes "
        f"reconciled "
        f"{len(reconciled)} ({sum(reconciled.values())} resent); pause from drain to the fresh "
        f"worker's first poll {[round(g, 1) for g in gaps]} s; metric trouw_worker_recycles_total "
        f"{counted}; {elapsed:.1f} s in all"
    )
    assert alive  # the same process (its id) took over every time
    assert len(mid_load()) >= 3  # recycled while purchases flowed, more than once
    assert len(confirmations) == posted  # no loss
    assert not confirmations - set(mails)  # every one reached SendGrid
    assert duplicates == {}  # no duplicate
    assert counted is not None and 1 <= counted <= len(at_recycles)
    assert len(gaps) >= len(mid_load())  # each drain was followed by a fresh worker's poll
