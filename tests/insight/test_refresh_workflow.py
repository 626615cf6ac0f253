"""The InsightRefresh workflow: chunks on the time-skipping server, and a worker killed mid-refresh."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.services import Services
from tests.conftest import ROOT
from tests.e2e.test_slice import free_port
from tests.insight.test_store import AT, _regulars, _shop
from tests.time_skipping import time_skipping
from tests.worker_process import start_worker, stop
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import CustomerInsightRecord, InsightRefresh, InsightSegmentChange
from trouw.domain.insight.refresh import nightly_schedule
from trouw.language.contracts import (
    INSIGHT_PROGRESS_QUERY,
    INSIGHT_REFRESH_WORKFLOW,
    InsightProgress,
    InsightRefreshInput,
    InsightRefreshResult,
)
from trouw.settings import Settings
from trouw.stack import metrics
from trouw.stack.temporal import connect, start_dev_server, wait_for_port
from trouw.stack.worker import build_worker

# The workers of this test start no nightly schedule of their own.
SCHEDULE_OFF = {"TROUW_INSIGHT_SCHEDULE": "false"}


async def test_refresh_scores_then_applies_in_chunks(settings: Settings) -> None:
    engine = get_engine(settings.effective_database_url)
    _shop(engine, _regulars(240))
    queue = f"insight-{uuid.uuid4().hex[:8]}"
    refreshes = metrics.INSIGHT_REFRESH_SECONDS.collect()[0]
    counted = next(s.value for s in refreshes.samples if s.name.endswith("_count"))
    async with time_skipping() as env:
        async with build_worker(env.client, Services.from_settings(settings), task_queue=queue):
            handle = await env.client.start_workflow(
                INSIGHT_REFRESH_WORKFLOW,
                InsightRefreshInput(as_of=AT + timedelta(days=240), chunk_size=3),
                id=f"insight-refresh-{queue}",
                task_queue=queue,
                result_type=InsightRefreshResult,
            )
            result = await handle.result()
            progress = await handle.query(INSIGHT_PROGRESS_QUERY, result_type=InsightProgress)
            history = await handle.fetch_history()

    assert result.customers == 20 and result.changes == 20  # the baseline: everyone is new
    samples = metrics.INSIGHT_REFRESH_SECONDS.collect()[0].samples
    assert next(s.value for s in samples if s.name.endswith("_count")) == counted + 1
    assert result.events == 0
    assert progress == InsightProgress(phase="done", chunks_done=7, chunks=7, customers=20)
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == ["score_insight", *["apply_insight_chunk"] * 7, "finish_insight_refresh"]
    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(CustomerInsightRecord)).one() == 20
        row = session.get(InsightRefresh, f"insight-refresh-{queue}")
        assert row is not None and row.status == "done" and row.baseline


def test_the_nightly_schedule_follows_the_settings(settings: Settings) -> None:
    tuned = settings.model_copy(update={"insight_refresh_time": "03:15"})
    schedule = nightly_schedule(tuned)
    calendar = schedule.spec.calendars[0]
    assert [r.start for r in calendar.hour] == [3] and [r.start for r in calendar.minute] == [15]
    assert schedule.spec.time_zone_name == settings.default_timezone


@pytest.mark.slow
async def test_a_worker_killed_while_scoring_leaves_the_refresh_to_another(
    tmp_path: Path,
) -> None:
    """SIGKILL the only worker while score_insight runs: the heartbeat timeout frees the
    activity, the next worker scores again and applies every chunk once."""
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "bench"))
    from insight_refresh_bench import AS_OF, fill

    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'kill.db'}",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        temporal_persist=False,
        signing_keys=["kill-key"],
        task_queue=f"insight-kill-{tmp_path.name}",
    )
    engine = get_engine(settings.effective_database_url)
    fill(engine, customers=20_000, lines=120_000, products=500)
    server = start_dev_server(settings)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await wait_for_port("127.0.0.1", settings.temporal_port, within=60, process=server.process)
        client: Client = await connect(settings)
        workers.append(start_worker(settings, tmp_path, "worker-1", SCHEDULE_OFF))
        handle = await client.start_workflow(
            INSIGHT_REFRESH_WORKFLOW,
            InsightRefreshInput(as_of=AS_OF, chunk_size=4000),
            id="insight-refresh-kill",
            task_queue=settings.task_queue,
            result_type=InsightRefreshResult,
        )

        def scoring() -> bool:
            with session_scope(engine) as session:
                row = session.get(InsightRefresh, "insight-refresh-kill")
                return row is not None and row.scored_at is None

        deadline = datetime.now(UTC) + timedelta(seconds=120)
        while not scoring():
            assert datetime.now(UTC) < deadline, "score_insight never started"
            await asyncio.sleep(0.2)
        # At once: a pause here would bet on how long scoring takes (on a fast machine it
        # could end first, and the kill would test nothing).
        os.kill(workers[0].pid, signal.SIGKILL)
        assert workers[0].wait(timeout=10) == -signal.SIGKILL
        assert scoring(), "the worker was killed after it had scored"
        workers.append(start_worker(settings, tmp_path, "worker-2", SCHEDULE_OFF))
        result = await asyncio.wait_for(handle.result(), timeout=300)
        history = await handle.fetch_history()
    finally:
        for worker in workers:
            stop(worker)
        server.stop()

    starts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert starts[0] >= 2, "score_insight ran again after the kill"
    with session_scope(engine) as session:
        stored = session.exec(select(func.count()).select_from(CustomerInsightRecord)).one()
        changes = session.exec(
            select(func.count(col(InsightSegmentChange.id))).where(
                InsightSegmentChange.refresh_id == "insight-refresh-kill"
            )
        ).one()
    assert result.customers == stored == changes == 20_000
