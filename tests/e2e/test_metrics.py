"""Metrics after a purchase on the dev server: the API's /metrics and the worker's own port,
scraped as Prometheus would, with our counters and the Temporal SDK's, asserted by name."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_slice import PURCHASE, e2e_settings, free_port, outbox_entries, wait_for
from trouw.domain.content import content_digest
from trouw.stack.runtime import Stack, run_stack

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape by name and labels (the parser is Prometheus's own format)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: Samples, name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_after_a_purchase(tmp_path: Path) -> None:
    settings = e2e_settings(tmp_path).model_copy(
        update={"worker_metrics_port": free_port(), "task_queue": "trouw-metrics"}
    )
    stop = asyncio.Event()
    seen: dict[str, Any] = {}

    async def scenario(stack: Stack) -> None:
        try:
            from trouw.domain.db.engine import session_scope
            from trouw.ways_in.api.auth import ensure_key

            with session_scope(stack.services.engine) as session:
                key = ensure_key(session, "metrics", ["ingest"])
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
                # Counters are per process and other tests count too: compare with a first scrape.
                seen["before"] = samples((await http.get("/metrics")).text)
                answer = await http.post(
                    "/v1/events", json=PURCHASE, headers={"Authorization": f"Bearer {key}"}
                )
                assert answer.status_code == 202, answer.text
                await wait_for(
                    lambda: [e for e in outbox_entries(settings) if e["channel"] == "email"]
                )
                await asyncio.sleep(1)  # the send's ledger commit follows the outbox write
                scrape = await http.get("/metrics")
                seen["content_type"] = scrape.headers["content-type"]
                seen["api"] = samples(scrape.text)
                worker = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
                seen["worker"] = samples((await http.get(worker)).text)
        finally:
            stop.set()

    await asyncio.wait_for(run_stack(settings, stop=stop, on_ready=scenario), timeout=240)

    before, api, worker = seen["before"], seen["api"], seen["worker"]
    assert seen["content_type"].startswith("text/plain")

    def grew(name: str, **labels: str) -> float:
        return value(api, name, **labels) - value(before, name, **labels)

    assert grew("trouw_events_accepted_total", type="purchase", source="api") == 1
    assert grew("trouw_journey_runs_total", journey="post_purchase", outcome="started") == 1
    assert grew("trouw_sends_total", channel="email", category="transactional", outcome="sent") == 1
    assert grew("trouw_provider_call_seconds_count", provider="outbox", channel="email") == 1
    assert grew("trouw_relay_lag_seconds_count") >= 1
    assert value(api, "trouw_parked_events") == 0
    assert value(api, "trouw_relay_backlog_events") == 0
    digest = content_digest(settings.journeys_dir, settings.templates_dir)
    assert value(api, "trouw_content_info", digest=digest) == 1
    # The Temporal SDK's own runtime metrics, through the same endpoint.
    temporal = {name for name, _labels in api if name.startswith("temporal_")}
    assert any(name.startswith("temporal_workflow_task") for name in temporal), sorted(temporal)
    # A purchase's sends are local activities unless their first attempt fails.
    assert any(name.startswith("temporal_local_activity") for name in temporal), sorted(temporal)
    # The worker's port serves the same process's metrics (one process here: `trouw up`).
    assert (
        value(
            worker, "trouw_sends_total", channel="email", category="transactional", outcome="sent"
        )
        >= 1
    )
    assert any(name.startswith("temporal_") for name, _labels in worker)
