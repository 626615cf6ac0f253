"""InsightRefreshWorkflow: score every customer, then apply the scores in chunks over the workers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from trouw.language.contracts import (
        INSIGHT_PROGRESS_QUERY,
        INSIGHT_REFRESH_WORKFLOW,
        ApplyInsightChunkInput,
        ApplyInsightChunkResult,
        FinishInsightRefreshInput,
        InsightProgress,
        InsightRefreshInput,
        InsightRefreshResult,
        ScoreInsightInput,
        ScoreInsightResult,
    )

# The scoring reads every order and fits the models: minutes at most, and it heartbeats while
# it streams and stores, so a killed worker is noticed within the heartbeat timeout and the
# attempt is retried on another worker.
SCORE_OPTIONS: workflow.ActivityConfig = {
    "start_to_close_timeout": timedelta(minutes=30),
    "heartbeat_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
    ),
}
# One chunk of customers: seconds; idempotent, so a retry after a kill redoes only its chunk.
CHUNK_OPTIONS: workflow.ActivityConfig = {
    "start_to_close_timeout": timedelta(minutes=10),
    "heartbeat_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
    ),
}
FINISH_OPTIONS: workflow.ActivityConfig = {
    "start_to_close_timeout": timedelta(minutes=1),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=1)),
}
# Chunks in flight at once: enough to keep a few workers busy, few enough for one database.
PARALLEL_CHUNKS = 4


@workflow.defn(name=INSIGHT_REFRESH_WORKFLOW)
class InsightRefreshWorkflow:
    def __init__(self) -> None:
        self._progress = InsightProgress(phase="starting")

    @workflow.query(name=INSIGHT_PROGRESS_QUERY)
    def progress(self) -> InsightProgress:
        return self._progress

    @workflow.run
    async def run(self, input: InsightRefreshInput) -> InsightRefreshResult:
        started = workflow.now()
        as_of = input.as_of or started
        refresh_id = workflow.info().workflow_id
        self._progress = InsightProgress(phase="scoring")
        scored: ScoreInsightResult = await workflow.execute_activity(
            "score_insight",
            ScoreInsightInput(
                refresh_id=refresh_id,
                as_of=as_of,
                horizon_days=input.horizon_days,
                chunk_size=input.chunk_size,
            ),
            result_type=ScoreInsightResult,
            **SCORE_OPTIONS,
        )
        self._progress = InsightProgress(
            phase="applying", chunks=len(scored.chunks), customers=scored.customers
        )
        results: list[ApplyInsightChunkResult] = []
        pending = list(scored.chunks)
        while pending:
            batch, pending = pending[:PARALLEL_CHUNKS], pending[PARALLEL_CHUNKS:]
            done = await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "apply_insight_chunk",
                        ApplyInsightChunkInput(refresh_id=refresh_id, first=first, last=last),
                        result_type=ApplyInsightChunkResult,
                        **CHUNK_OPTIONS,
                    )
                    for first, last in batch
                )
            )
            results.extend(done)
            self._progress = self._progress.model_copy(update={"chunks_done": len(results)})
        result: InsightRefreshResult = await workflow.execute_activity(
            "finish_insight_refresh",
            FinishInsightRefreshInput(refresh_id=refresh_id, started=started),
            result_type=InsightRefreshResult,
            **FINISH_OPTIONS,
        )
        self._progress = self._progress.model_copy(update={"phase": "done"})
        return result.model_copy(update={"events": sum(r.events for r in results)})
