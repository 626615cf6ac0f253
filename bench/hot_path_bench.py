"""The worker's hot path of a purchase, activity by activity: CPU and SQL statements per call.

Run: .venv/bin/python bench/hot_path_bench.py [--customers 60]
     PYTHONPATH=<another checkout> .venv/bin/python bench/hot_path_bench.py   (the same
     measurement of another checkout's code: this file imports only trouw and activities)

For each of N new customers: their purchase (three lines of the sample shop's products, the
API's ingest), then match_journeys as the worker runs it, then the send of the confirmation
(post_purchase's first step) through the send activity with the local outbox (its .eml too, as
`trouw up` writes it). Each call's CPU is this process's CPU time (time.process_time: every
thread, the activities' database threads too; SQLite's work runs in them), so the load of a
shared machine moves it far less than wall time. The first customers are a warm-up (imports, journey and
template compiles) and are not counted. Prints the median and mean CPU ms and the statements of
each activity per purchase. SQLite only (on PostgreSQL part of the work is the server's, which
this would not count). No Temporal server: the workflow's own cost (activations, history)
is in bench/engine_bench.py. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from temporalio.testing import ActivityEnvironment

from activities.journey_runs import JourneyActivities
from activities.messaging import MessagingActivities
from activities.services import Services
from trouw.commands.sample_shop import PRODUCTS, numbered_customer
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.ingest import (
    CustomerIn,
    EventIn,
    ProductIn,
    ingest_event,
    upsert_product,
    wire_event,
)
from trouw.language.contracts import MatchJourneysInput, SendMessageInput
from trouw.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# The engine bench's products (bench/api_bench.py BENCH_SKUS).
SKUS = ["LAWN-10", "SOIL-40", "ROSE-01", "POT-40", "SHEARS-1", "CAT-2", "BIRD-5"]
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class Statements:
    """SQL statements sent on one engine while counting."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


def measured(statements: Statements, call: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, CPU seconds of this process, statements) of one call."""
    before, started = statements.count, time.process_time()
    result = call()
    return result, time.process_time() - started, statements.count - before


def confirmation(plan: Any, customer: str, order: str, now: datetime) -> SendMessageInput:
    """The send post_purchase's first step asks for, as workflows/run.py builds it."""
    return SendMessageInput(
        message_key=f"{plan.workflow_id}#0:confirmation:email",
        customer_id=customer,
        journey=plan.journey,
        journey_version=plan.version,
        workflow_id=plan.workflow_id,
        step="confirmation",
        channel="email",
        template="order_confirmation",
        category="transactional",
        triggered_at=now,
        service_cutoff_days=120,
        now=now,
        order_id=order,
        skus=plan.skus,
        vars={"trigger": plan.context.get("trigger", {}), "events": {}},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--profile",
        help="also profile the counted calls (cProfile on CPU time, every thread) into this file",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="trouw-hot-path-"))
    url = f"sqlite:///{home / 'trouw.db'}"
    settings = Settings(
        home=home,
        database_url=url,
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        signing_keys=["bench-key"],
    )
    engine = make_engine(url)
    migrate(engine)
    services = Services.from_settings(settings, engine=engine)
    journeys = JourneyActivities(services)
    messaging = MessagingActivities(services)
    environment = ActivityEnvironment()
    statements = Statements(engine)
    with session_scope(engine) as session:
        for product in PRODUCTS:
            if product["sku"] in SKUS:
                upsert_product(session, ProductIn(**product))
    figures: dict[str, list[tuple[float, int]]] = {"match": [], "send": []}
    profiles = None
    if args.profile:
        # Imported here: engine_profile puts this checkout first on sys.path, which must not
        # decide whose trouw and activities are measured (imported above).
        from engine_profile import ThreadProfiles

        profiles = ThreadProfiles()
    sent = 0
    for n in range(args.warmup + args.customers):
        if profiles is not None and n == args.warmup:
            profiles.install()
        customer, order = f"hp-c{n}", f"hp-o{n}"
        now = NOW + timedelta(minutes=n)
        details = numbered_customer(customer, n)
        with session_scope(engine) as session:
            row, _new = ingest_event(
                session,
                EventIn(
                    id=f"hp-e{n}",
                    type="purchase",
                    customer=customer,
                    order=order,
                    channel="web",
                    lines=[{"sku": sku, "qty": 1} for sku in SKUS[n % 5 : n % 5 + 3]],  # type: ignore[misc]
                    at=now,
                    profile=CustomerIn(**details),
                ),
            )
            wire = wire_event(row)
        match_input = MatchJourneysInput(customer_id=customer, event=wire, now=now)
        result, match_cpu, match_sql = measured(statements, partial(journeys._match, match_input))
        plan = next(plan for plan in result.runs if plan.journey == "post_purchase")
        request = confirmation(plan, customer, order, now)
        outcome, send_cpu, send_sql = measured(
            statements,
            partial(asyncio.run, environment.run(messaging.send_message, request)),
        )
        sent += outcome.outcome == "sent"
        if n >= args.warmup:
            figures["match"].append((match_cpu, match_sql))
            figures["send"].append((send_cpu, send_sql))
    if profiles is not None:
        profiles.stats().dump_stats(args.profile)
    load = os.getloadavg()
    print(  # noqa: T201
        f"{args.customers} purchases after {args.warmup} warm-up (SQLite), "
        f"{sent} confirmations sent; load average {load[0]:.1f}"
    )
    print(f"{'activity':10}{'CPU ms median':>15}{'mean':>8}{'statements':>12}")  # noqa: T201
    for name, rows in figures.items():
        cpu = [1000 * c for c, _s in rows]
        sql = statistics.mean(s for _c, s in rows)
        print(  # noqa: T201
            f"{name:10}{statistics.median(cpu):>15.2f}{statistics.mean(cpu):>8.2f}{sql:>12.1f}"
        )
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
