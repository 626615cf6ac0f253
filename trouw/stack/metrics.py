"""Prometheus metrics: Trouw's own counters and histograms, and the Temporal SDK's, in one scrape.

Every metric Trouw exports is defined here, once, named `trouw_*`; code elsewhere imports the
object and counts. The Temporal SDK's runtime metrics (`temporal_*`: task slots, poll and
schedule-to-start latencies, sticky cache) come from its Rust core, which serves them on a
loopback port of its own; a collector reads that page on every scrape so that the API's
`/metrics` and each worker's port show both under one address (docs/operations.md).
"""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

__all__ = [
    "CONTENT_TYPE_LATEST",
    "CONTENT_INFO",
    "CONTROL_ACTIONS",
    "DEFERRALS",
    "EVENTS_ACCEPTED",
    "INSIGHT_REFRESH_SECONDS",
    "PARKED_EVENTS",
    "PROVIDER_ERRORS",
    "PROVIDER_SECONDS",
    "RELAY_BACKLOG",
    "RELAY_FAILURES",
    "RELAY_UNHEARD",
    "RELAY_LAG_SECONDS",
    "RELAY_OLDEST_SECONDS",
    "RUNS",
    "SENDS",
    "SUPPRESSIONS",
    "WORKER_RECYCLES",
    "exposition",
    "on_commit",
    "serve_worker_metrics",
    "temporal_runtime_with_metrics",
]

log = logging.getLogger("trouw.metrics")

# Seconds: from a few milliseconds (a local hand-off) to minutes (a relay behind an outage).
_LAG_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_CALL_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_REFRESH_BUCKETS: Final = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

EVENTS_ACCEPTED = Counter(
    "trouw_events_accepted",
    "Events stored for the first time (repeats of a known event id are not counted).",
    ["type", "source"],
)
RELAY_LAG_SECONDS = Histogram(
    "trouw_relay_lag_seconds",
    "From an event's receipt to its hand-off to the customer workflow.",
    buckets=_LAG_BUCKETS,
)
RELAY_FAILURES = Counter(
    "trouw_relay_failures", "Failed hand-offs of an event to Temporal (each is retried)."
)
RELAY_UNHEARD = Counter(
    "trouw_relay_unheard",
    "Events marked relayed without a signal: no journey starts on their type, no live run "
    "listens to it.",
)
RELAY_BACKLOG = Gauge(
    "trouw_relay_backlog_events", "Events stored but not yet handed to Temporal (parked excluded)."
)
RELAY_OLDEST_SECONDS = Gauge(
    "trouw_relay_oldest_pending_seconds",
    "Age of the oldest event not yet handed to Temporal (0 when none waits).",
)
PARKED_EVENTS = Gauge(
    "trouw_parked_events", "Events the relay gave up on after relay_max_attempts (trouw status)."
)
RUNS = Counter(
    "trouw_journey_runs",
    "Journey runs by how they moved: started, then completed, exited, failed, cancelled, "
    "terminated or timed_out.",
    ["journey", "outcome"],
)
SENDS = Counter(
    "trouw_sends",
    "Message decisions by channel, category and outcome (sent, suppressed, deferred, failed, "
    "unknown).",
    ["channel", "category", "outcome"],
)
WORKER_RECYCLES = Counter(
    "trouw_worker_recycles",
    "Times this worker drained and started afresh above worker_recycle_rss_mib, counted over "
    "the fresh processes that took over (the worker's RSS: process_resident_memory_bytes).",
)
SUPPRESSIONS = Counter(
    "trouw_suppressions", "Messages not sent, by the policy's reason code.", ["channel", "reason"]
)
DEFERRALS = Counter(
    "trouw_deferrals",
    "Messages held for later, by the policy's reason code.",
    ["channel", "reason"],
)
PROVIDER_SECONDS = Histogram(
    "trouw_provider_call_seconds",
    "One provider call (SendGrid, SMTP, Twilio, outbox), whatever its result.",
    ["provider", "channel"],
    buckets=_CALL_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "trouw_provider_errors",
    "Provider calls that did not end in an accepted message, by kind (transient, rate_limited, "
    "ambiguous, permanent).",
    ["provider", "channel", "kind"],
)
INSIGHT_REFRESH_SECONDS = Histogram(
    "trouw_insight_refresh_seconds",
    "One refresh of the customer insight (RFM, expectations, also-bought), start to commit.",
    buckets=_REFRESH_BUCKETS,
)
CONTENT_INFO = Gauge(
    "trouw_content_info",
    "1, labelled with the digest of the journeys and templates this process runs (trouw.domain.content).",
    ["digest"],
)
CONTROL_ACTIONS = Counter(
    "trouw_control_actions",
    "Operator actions (pause, resume, cancel, hold) taken through the CLI or the admin API.",
    ["action"],
)


_PENDING = "trouw_metrics_on_commit"


def on_commit(session: Session, count: Callable[[], object]) -> None:
    """Count once the session's transaction commits: a rolled-back write (retried by its
    activity) is not counted, so a retry does not count the same run or send twice."""
    session.info.setdefault(_PENDING, []).append(count)


@sa_event.listens_for(Session, "after_commit")
def _counted(session: Session) -> None:
    for count in session.info.pop(_PENDING, []):
        count()


@sa_event.listens_for(Session, "after_rollback")
def _dropped(session: Session) -> None:
    session.info.pop(_PENDING, None)


class TemporalRuntimeCollector(Collector):
    """The Temporal core's Prometheus page, re-read on every scrape and exposed as it is."""

    def __init__(self, address: str) -> None:
        self.address = address

    def collect(self) -> Iterable[Metric]:
        try:
            with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=2) as answer:
                text = answer.read().decode("utf-8")
        except OSError as exc:
            # A scrape must answer even when the core's page does not: our own metrics still count.
            log.warning("Temporal runtime metrics unreadable at %s: %s", self.address, exc)
            return iter(())
        return list(text_string_to_metric_families(text))


_runtime_collector: TemporalRuntimeCollector | None = None


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def temporal_runtime_with_metrics() -> None:
    """Make the default Temporal runtime export its metrics, collected into our registry.

    Call before the first client connects (the runtime is fixed per client). The core serves its
    page on a loopback port only; Prometheus scrapes it through our endpoints.
    """
    global _runtime_collector
    from trouw.stack.temporal import quiet_runtime

    if _runtime_collector is not None:
        return
    address = f"127.0.0.1:{_free_loopback_port()}"
    quiet_runtime(metrics_address=address)
    _runtime_collector = TemporalRuntimeCollector(address)
    REGISTRY.register(_runtime_collector)


def exposition() -> bytes:
    """The text a scrape gets: every metric of this process."""
    return generate_latest(REGISTRY)


def serve_worker_metrics(host: str, port: int) -> None:
    """A worker's own /metrics endpoint (a thread of prometheus_client's HTTP server)."""
    start_http_server(port, addr=host, registry=REGISTRY)
    log.info("metrics on http://%s:%d/metrics", host, port)
