"""A run that another writer started first is skipped alone: the runs started before it stay."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from activities.journey_runs import JourneyActivities
from activities.services import Services
from tests.conftest import ROOT
from tests.purchases import ingest_purchase
from trouw.domain.db.models import JourneyRun, JourneyRunEvent
from trouw.language.contracts import MatchJourneysInput
from trouw.settings import Settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_conflicting_run_does_not_undo_the_runs_already_started(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "journeys"
    folder.mkdir()
    for name in ("alpha", "beta", "gamma"):
        (folder / f"{name}.yaml").write_text(
            f"journey: {name}\ntrigger: {{event: purchase}}\nsteps:\n  - {{id: done, exit: done}}\n"
        )
    settings = Settings(
        home=tmp_path / "home", journeys_dir=folder, templates_dir=ROOT / "templates"
    )
    services = Services.from_settings(settings, engine=engine)
    event_in = ingest_purchase(
        engine,
        id="e1",
        customer="c1",
        order="o1",
        lines=[{"sku": "LAWN-10", "unit_price": "24.95"}],
        at=NOW,
    )

    # Another writer starts beta's run between this activity's look-up and its insert: its
    # row goes in just before our insert, in our transaction, as the winner's would.
    injected: list[str] = []

    def race(
        conn: Connection, _cursor: Any, statement: str, params: Any, _context: Any, _many: bool
    ) -> None:
        if injected or not statement.startswith("INSERT INTO journey_run "):
            return
        values = params.values() if isinstance(params, dict) else params
        beta = next((v for v in values if isinstance(v, str) and ":beta:" in v), None)
        if beta is not None:
            injected.append(beta)
            table = JourneyRun.__table__  # type: ignore[attr-defined]
            conn.execute(
                table.insert().values(
                    workflow_id=beta,
                    customer_id="c1",
                    journey="beta",
                    version="another-writer",
                    reentry_key="another-writer",
                    event_source_id="another-writer",
                    started_at=NOW,
                    status="running",
                )
            )

    event.listen(engine, "before_cursor_execute", race)
    try:
        result = JourneyActivities(services)._match(
            MatchJourneysInput(customer_id="c1", event=event_in, now=NOW)
        )
    finally:
        event.remove(engine, "before_cursor_execute", race)

    assert injected, "the race was not staged"
    started = [plan.workflow_id for plan in result.runs]
    assert [plan.journey for plan in result.runs] == ["alpha", "gamma"]
    with Session(engine) as session:
        runs = session.exec(select(JourneyRun.workflow_id).order_by(col(JourneyRun.id))).all()
        events = session.exec(
            select(JourneyRunEvent.workflow_id).where(JourneyRunEvent.kind == "started")
        ).all()
    # Every run the activity reports as started has its ledger row and its `started` event.
    assert set(started) <= set(runs)
    assert set(started) == set(events)
