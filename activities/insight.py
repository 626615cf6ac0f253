"""Activities of the insight refresh: score the shop, apply the scores chunk by chunk, close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio import activity

from activities.services import Services
from trouw.domain.insight.store import (
    apply_chunk,
    chunk_bounds,
    finish_refresh,
    score_and_stage,
)
from trouw.language.contracts import (
    ApplyInsightChunkInput,
    ApplyInsightChunkResult,
    FinishInsightRefreshInput,
    InsightRefreshResult,
    ScoreInsightInput,
    ScoreInsightResult,
)
from trouw.stack import metrics

log = logging.getLogger("trouw.insight")
T = TypeVar("T")
HEARTBEAT_EVERY = 5.0


async def _heartbeating(work: Callable[[], T], progress: list[object]) -> T:
    """Run blocking work in a thread and heartbeat meanwhile (with its latest progress), so a
    worker that dies is noticed within the heartbeat timeout, even in the middle of a model fit."""
    task = asyncio.ensure_future(asyncio.to_thread(work))
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
        if done:
            return task.result()
        activity.heartbeat(*progress[-1:])


class InsightActivities:
    def __init__(self, services: Services) -> None:
        self.services = services

    @activity.defn(name="score_insight")
    async def score_insight(self, input: ScoreInsightInput) -> ScoreInsightResult:
        settings = self.services.settings
        progress: list[object] = ["reading"]

        def work() -> ScoreInsightResult:
            customers = score_and_stage(
                self.services.engine,
                settings,
                refresh_id=input.refresh_id,
                as_of=input.as_of,
                horizon_days=input.horizon_days,
                now=datetime.now(UTC),
                progress=progress.append,
            )
            chunks = chunk_bounds(
                self.services.engine,
                refresh_id=input.refresh_id,
                size=input.chunk_size or settings.insight_chunk_size,
            )
            return ScoreInsightResult(customers=customers, chunks=chunks)

        activity.heartbeat("reading")
        return await _heartbeating(work, progress)

    @activity.defn(name="apply_insight_chunk")
    async def apply_insight_chunk(self, input: ApplyInsightChunkInput) -> ApplyInsightChunkResult:
        settings = self.services.settings

        def work() -> ApplyInsightChunkResult:
            outcome = apply_chunk(
                self.services.engine,
                refresh_id=input.refresh_id,
                first=input.first,
                last=input.last,
                now=datetime.now(UTC),
                next_order_shift=timedelta(days=settings.insight_next_order_shift_days),
            )
            return ApplyInsightChunkResult(
                customers=outcome.customers, changes=outcome.changes, events=outcome.events
            )

        activity.heartbeat(input.first)
        return await _heartbeating(work, [input.first])

    @activity.defn(name="finish_insight_refresh")
    async def finish_insight_refresh(
        self, input: FinishInsightRefreshInput
    ) -> InsightRefreshResult:
        def work() -> InsightRefreshResult:
            now = datetime.now(UTC)
            row = finish_refresh(self.services.engine, refresh_id=input.refresh_id, now=now)
            seconds = (now - input.started).total_seconds()
            if row.finished_at == now:  # this attempt closed it: observed once per refresh
                metrics.INSIGHT_REFRESH_SECONDS.observe(seconds)
            log.info(
                "insight refresh %s: %d customers, %d segment changes in %.1f s",
                row.id,
                row.customers,
                row.changes,
                seconds,
            )
            return InsightRefreshResult(
                refresh_id=row.id,
                as_of=row.as_of,
                customers=row.customers,
                changes=row.changes,
                events=0,
                seconds=seconds,
            )

        return await asyncio.to_thread(work)

    def all(self) -> list[Callable[..., object]]:
        return [self.score_insight, self.apply_insight_chunk, self.finish_insight_refresh]
