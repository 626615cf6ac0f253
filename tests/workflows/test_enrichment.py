"""The enrichment journey ends as soon as a birthday arrives, by whatever path it arrives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import select

from activities.services import Services
from tests.time_skipping import time_skipping
from tests.workflows.relaying import purchase, relay
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import JourneyRun, Message
from trouw.domain.ingest import CustomerIn, EventIn, ingest_event, upsert_customer
from trouw.settings import Settings
from trouw.stack.worker import build_worker
from trouw.ways_in.imports import import_file

QUEUE = "enrichment-test"


def runs(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with session_scope(engine) as session:
        found = session.exec(select(JourneyRun).where(JourneyRun.journey == "enrichment")).all()
        return {run.customer_id: (run.status, run.end_reason) for run in found}


async def test_a_birthday_from_any_path_ends_the_enrichment_run(
    settings: Settings, tmp_path: Path
) -> None:
    engine = get_engine(settings.effective_database_url)
    services = Services.from_settings(settings, engine=engine)
    customers = ("by-import", "by-api", "by-event", "silent")
    async with time_skipping() as env:
        async with build_worker(env.client, services, task_queue=QUEUE):
            start = datetime.now(UTC)
            with session_scope(engine) as session:
                for customer in customers:
                    ingest_event(
                        session,
                        purchase(customer, start, first_name="An", email=f"{customer}@example.com"),
                        now=start,
                    )
            await relay(engine, env.client, QUEUE)
            await env.sleep(timedelta(days=5))
            assert runs(engine) == dict.fromkeys(customers, ("running", None))
            # Day 5: three birthdays arrive by three paths; "silent" never answers.
            csv = tmp_path / "klanten.csv"
            csv.write_text("id;birthday\nby-import;24-04-1979\n", encoding="utf-8")
            import_file(kind="customers", path=csv, engine=engine, settings=settings)
            with session_scope(engine) as session:
                upsert_customer(
                    session,
                    CustomerIn(id="by-api", birthday="1985-07-01"),  # type: ignore[arg-type]
                    at=datetime.now(UTC),
                    source="api",
                )
                ingest_event(
                    session,
                    EventIn(
                        id="by-event-register",
                        type="register",
                        customer="by-event",
                        profile={"id": "by-event", "birthday": "1990-01-31"},
                    ),
                )
            await relay(engine, env.client, QUEUE)
            await env.sleep(timedelta(days=70))
    assert runs(engine) == {
        "by-import": ("exited", "exit on register"),
        "by-api": ("exited", "exit on register"),
        "by-event": ("exited", "exit on register"),
        "silent": ("exited", "no birthday given"),
    }
    with session_scope(engine) as session:
        asked = session.exec(select(Message.customer_id).where(Message.journey == "enrichment"))
        assert list(asked) == ["silent"]
