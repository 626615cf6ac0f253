"""Starting insight refreshes: the nightly Temporal Schedule, and one refresh on demand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError

from trouw.language.contracts import (
    INSIGHT_PROGRESS_QUERY,
    INSIGHT_REFRESH_WORKFLOW,
    INSIGHT_SCHEDULE_ID,
    InsightProgress,
    InsightRefreshInput,
    InsightRefreshResult,
)
from trouw.settings import Settings

log = logging.getLogger("trouw.insight")


def nightly_schedule(settings: Settings) -> Schedule:
    """Every night at insight_refresh_time in the shop's zone; a refresh still running when the
    next one is due makes the next one wait its turn rather than run twice at once."""
    hour, minute = (int(part) for part in settings.insight_refresh_time.split(":"))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            INSIGHT_REFRESH_WORKFLOW,
            InsightRefreshInput(),
            id="insight-refresh",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])
            ],
            time_zone_name=settings.default_timezone,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE),
    )


async def ensure_schedule(client: Client, settings: Settings) -> str:
    """Create or update the nightly schedule (or delete it when insight_schedule is off)."""
    handle = client.get_schedule_handle(INSIGHT_SCHEDULE_ID)
    if not settings.insight_schedule:
        try:
            await handle.delete()
            return "deleted"
        except RPCError:
            return "off"
    schedule = nightly_schedule(settings)
    try:
        await client.create_schedule(INSIGHT_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await handle.update(update)
        return "updated"


def refresh_workflow_id(now: datetime | None = None) -> str:
    return f"insight-refresh-{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%S.%fZ')}"


async def refresh_now(
    client: Client,
    settings: Settings,
    *,
    as_of: datetime | None = None,
    horizon_days: int | None = None,
    progress: Callable[[InsightProgress], None] | None = None,
    poll_seconds: float = 0.5,
) -> InsightRefreshResult:
    """Start a refresh and wait for it, reporting its progress as it goes."""
    handle = await client.start_workflow(
        INSIGHT_REFRESH_WORKFLOW,
        InsightRefreshInput(as_of=as_of, horizon_days=horizon_days),
        id=refresh_workflow_id(),
        task_queue=settings.task_queue,
        result_type=InsightRefreshResult,
    )
    result = asyncio.ensure_future(handle.result())
    while not result.done():
        if progress is not None:
            try:
                state = await handle.query(INSIGHT_PROGRESS_QUERY, result_type=InsightProgress)
                progress(state)
            except RPCError:
                pass  # not picked up by a worker yet
        await asyncio.wait({result}, timeout=poll_seconds)
    outcome: InsightRefreshResult = result.result()
    return outcome
