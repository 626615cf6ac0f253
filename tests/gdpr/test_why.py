"""`trouw why`: every decision of the send ledger explained, with the consent it relied on."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import WorkflowFailureError
from typer.testing import CliRunner

from tests.conftest import ROOT
from tests.gdpr.conftest import T0, Seeded, seed
from tests.workflows.scenario import run, write_scenario
from trouw.commands import gdpr_cli
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.db.models import JourneyRun
from trouw.domain.why import UnknownCustomerError, explain, reconcile, render, temporal_outcome
from trouw.settings import Settings


@pytest.fixture
def cli(engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(gdpr_cli, "_settings", lambda: settings)
    monkeypatch.setattr(gdpr_cli, "_engine", lambda _settings: engine)
    return CliRunner()


def _app() -> object:
    import typer

    app = typer.Typer()
    app.command("why")(gdpr_cli.why)
    app.command("export")(gdpr_cli.export)
    return app


def test_why_shows_suppressed_promotional_with_the_consent_record_it_relied_on(
    engine: Engine, seeded: Seeded
) -> None:
    with Session(engine) as session:
        explanation = explain(session, seeded.customer_id)
    promo = next(m for m in explanation.messages if m.journey == "spring_promo")
    assert promo.outcome == "suppressed"
    assert promo.reason == "no_promotional_opt_in"
    assert promo.reason_text == "no recorded opt-in for promotional email"
    basis = promo.relied_on
    assert basis is not None
    assert (basis.channel, basis.scope, basis.granted) == ("email", "promotional", False)
    assert basis.source == "web"
    assert basis.wording_version == "newsletter-v2"
    assert basis.record_id is not None  # found back in the ledger, not just in the snapshot

    receipt = next(m for m in explanation.messages if m.journey == "post_purchase")
    assert receipt.outcome == "sent"
    assert receipt.relied_on is None
    assert receipt.consent_needed.startswith("no consent")
    assert [e.status for e in receipt.status_history] == ["allowed", "sent", "delivered", "opened"]
    assert receipt.provider_status == "opened"

    summaries = {run.journey: run.summary for run in explanation.runs}
    assert summaries == {"post_purchase": "running", "spring_promo": "exited: exit on unsubscribe"}


def test_why_journey_filters_messages_and_runs(engine: Engine, seeded: Seeded) -> None:
    with Session(engine) as session:
        explanation = explain(session, seeded.customer_id, journey="spring_promo")
    assert [m.journey for m in explanation.messages] == ["spring_promo"]
    assert [r.journey for r in explanation.runs] == ["spring_promo"]


def test_why_unknown_customer_is_an_error(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(UnknownCustomerError, match="nobody"):
        explain(session, "nobody")


def test_why_renders_for_people(engine: Engine, seeded: Seeded) -> None:
    with Session(engine) as session:
        explanation = explain(session, seeded.customer_id)
    console = Console(record=True, width=140)
    render(explanation, console)
    text = console.export_text()
    assert "SUPPRESSED no_promotional_opt_in" in text
    assert (
        "email promotional withdrawn 2026-03-05 10:00 +01:00 via web, wording newsletter-v2" in text
    )
    assert "exited: exit on unsubscribe" in text
    assert "allowed 2026-03-02 11:01 +01:00 → sent" in text


def test_why_command_json_and_filter(cli: CliRunner, seeded: Seeded) -> None:
    result = cli.invoke(_app(), ["why", seeded.customer_id, "--json", "--journey", "spring_promo"])  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["journey"] == "spring_promo"
    [message] = data["messages"]
    assert message["reason"] == "no_promotional_opt_in"
    assert message["relied_on"]["wording_version"] == "newsletter-v2"
    assert data["runs"][0]["summary"] == "exited: exit on unsubscribe"


def test_why_command_human_and_unknown(cli: CliRunner, seeded: Seeded) -> None:
    result = cli.invoke(_app(), ["why", seeded.customer_id])  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    assert "no_promotional_opt_in" in result.stdout
    missing = cli.invoke(_app(), ["why", "nobody"])  # type: ignore[arg-type]
    assert missing.exit_code == 1
    assert "unknown customer 'nobody'" in missing.stderr


# --- run records: written by the workflow and match_journeys, read by why and simulate -------

ONCE = """\
journey: once
trigger: {event: purchase, reentry: customer}
settings: {category: service}
steps:
  - id: maybe
    send: email
    template: review_request
    when: "order.total > 1000"
  - id: pause
    wait: 2d
"""
BIG = """\
journey: big
trigger: {event: purchase, when: "order.total > 1000"}
settings: {category: service}
steps:
  - {id: pause, wait: 1d}
"""


def test_why_and_simulate_show_the_same_skips_and_refusals(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "once.yaml").write_text(ONCE)
    (journeys / "big.yaml").write_text(BIG)
    purchases = [
        {
            "at": at,
            "type": "purchase",
            "customer": "c1",
            "order": order,
            "channel": "pos",
            "lines": [{"sku": "ROSE-01"}],
        }
        for at, order in (("0d", "o1"), ("1d", "o2"))
    ]
    path = write_scenario(
        tmp_path / "s.yaml",
        customers=[{"id": "c1", "first_name": "Bart", "email": "c1@example.com"}],
        events=purchases,
        until="5d",
    )
    _scenario, result = asyncio.run(run(path, journeys, ROOT / "templates"))
    engine = make_engine(f"sqlite:///{tmp_path / 'sim' / 'simulation.db'}")
    with Session(engine) as session:
        explanation = explain(session, "c1")
    engine.dispose()

    [once] = explanation.runs
    assert [(e.kind, e.step, e.reason, e.expression) for e in once.events] == [
        ("started", None, "purchase event sim-1", None),
        ("skipped", "maybe", "`when` is false", "order.total > 1000"),
        ("completed", None, None, None),
    ]
    assert once.summary == "completed"
    assert [(e.journey, e.kind, e.reason, e.expression) for e in explanation.not_started] == [
        ("big", "not_started", "the trigger condition is false", "order.total > 1000"),
        ("big", "not_started", "the trigger condition is false", "order.total > 1000"),
        (
            "once",
            "not_started",
            f"re-entry guard: run {once.workflow_id} was started by event sim-1 "
            "(re-entry: customer)",
            None,
        ),
    ]
    why_facts = sorted(
        (e.journey, e.kind, e.step or "", e.reason or "", e.expression or "")
        for e in [*once.events, *explanation.not_started]
    )
    simulate_facts = sorted(
        (r.journey, r.outcome, r.step or "", r.reason or "", r.expression or "")
        for r in result.runs
    )
    assert why_facts == simulate_facts

    console = Console(record=True, width=160)
    render(explanation, console)
    text = console.export_text()
    assert "once/maybe  skipped: `when` is false (order.total > 1000)" in text
    assert "big  not started: the trigger condition is false (order.total > 1000)" in text


WAITING = {
    "journey": "waiting",
    "trigger": {"event": "purchase"},
    "settings": {"category": "service"},
    "steps": [{"id": "pause", "wait": "10d"}],
}
BROKEN = {
    "journey": "broken",
    "trigger": {"event": "purchase"},
    "settings": {"category": "service"},
    "steps": [
        {"id": "pause", "wait": "1d"},
        {"id": "check", "branch": [{"if": "1 / 0 > 1", "goto": "pause"}]},
    ],
}


async def test_why_reconciles_run_statuses_with_temporal(tmp_path: Path) -> None:
    """Cancelled and failed runs record it themselves; terminated and timed-out ones cannot,
    so why asks Temporal; a run that never recorded its failure shows Temporal's reason."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from activities.services import Services
    from trouw.language.contracts import CustomerEvent, JourneyInput
    from trouw.language.journey.model import Journey
    from trouw.stack.temporal import binary
    from trouw.stack.worker import build_worker
    from workflows.journey import JourneyWorkflow

    settings = Settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'why.db'}",
        journeys_dir=ROOT / "journeys",
        templates_dir=ROOT / "templates",
        email_provider="outbox",
        sms_provider="outbox",
        signing_keys=["test-key"],
        task_queue="why-reconcile",
    )
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    seed(engine)
    services = Services.from_settings(settings, engine=engine)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )

    def add_run(workflow_id: str, journey: str) -> None:
        with session_scope(engine) as session:
            session.add(
                JourneyRun(
                    workflow_id=workflow_id,
                    customer_id="c1",
                    journey=journey,
                    version="1",
                    reentry_key=workflow_id,
                    event_source_id="c1-o1",
                    started_at=T0,
                )
            )

    async def start(workflow_id: str, definition: dict[str, Any], **options: Any) -> Any:
        journey = Journey.model_validate(definition)
        return await env.client.start_workflow(
            JourneyWorkflow.run,
            JourneyInput(
                customer_id="c1",
                journey=journey.name,
                version="1",
                definition=journey.model_dump(mode="json", by_alias=True),
                trigger=CustomerEvent(id="c1-o1", type="purchase", customer_id="c1", at=T0),
                context={},
                search_attributes=False,
            ),
            id=workflow_id,
            task_queue=settings.task_queue,
            **options,
        )

    try:
        async with build_worker(env.client, services, sandboxed=False):
            for name in ("cancelled", "terminated", "timed-out", "failed"):
                add_run(f"journey:c1:{name}", "broken" if name == "failed" else "waiting")
            cancelled = await start("journey:c1:cancelled", WAITING)
            terminated = await start("journey:c1:terminated", WAITING)
            timed_out = await start(
                "journey:c1:timed-out", WAITING, execution_timeout=timedelta(days=2)
            )
            failed = await start("journey:c1:failed", BROKEN)
            # a run that failed before it could record it (as runs started before this change)
            unrecorded = await start("journey:c1:unrecorded", BROKEN)
            await env.sleep(timedelta(hours=1))
            await cancelled.cancel()
            await terminated.terminate(reason="operator stopped it")
            for handle in (cancelled, timed_out, failed, unrecorded):
                with pytest.raises(WorkflowFailureError):
                    await handle.result()
            add_run("journey:c1:unrecorded", "broken")

            with Session(engine) as session:
                explanation = explain(session, "c1")
            before = {run.workflow_id: run.summary for run in explanation.runs}
            assert before["journey:c1:cancelled"] == "cancelled: cancelled in Temporal"
            assert before["journey:c1:failed"] == (
                "failed: step check: '1 / 0 > 1': division by zero"
            )
            assert before["journey:c1:terminated"] == "running"
            assert before["journey:c1:timed-out"] == "running"
            assert before["journey:c1:unrecorded"] == "running"
            failed_events = next(
                run.events for run in explanation.runs if run.workflow_id == "journey:c1:failed"
            )
            assert (failed_events[-1].kind, failed_events[-1].expression) == ("failed", "1 / 0 > 1")

            reconciled = await reconcile(explanation, env.client)
            after = {run.workflow_id: (run.summary, run.status_source) for run in reconciled.runs}
    finally:
        await env.shutdown()
        engine.dispose()
    assert after["journey:c1:cancelled"] == ("cancelled: cancelled in Temporal", "record")
    assert after["journey:c1:terminated"] == ("terminated: operator stopped it", "temporal")
    assert after["journey:c1:timed-out"] == (
        "timed_out: the run's execution timeout passed",
        "temporal",
    )
    assert after["journey:c1:unrecorded"] == (
        "failed: step check: '1 / 0 > 1': division by zero",
        "temporal",
    )
    assert after["journey:post_purchase:c1:o1"] == ("unknown: not found in Temporal", "temporal")


@pytest.mark.slow
async def test_why_shows_a_run_whose_workflow_task_keeps_failing(tmp_path: Path) -> None:
    """A bug (here: a definition this code cannot read) makes Temporal retry the workflow task
    for ever; the run is "running" in the database but makes no progress: why says so."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from trouw.language.contracts import CustomerEvent, JourneyInput
    from trouw.stack.temporal import binary
    from workflows.journey import JourneyWorkflow

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binary("temporal")),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        client: Client = env.client
        async with Worker(
            client,
            task_queue="why-failing",
            workflows=[JourneyWorkflow],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            await client.start_workflow(
                JourneyWorkflow.run,
                JourneyInput(
                    customer_id="c1",
                    journey="x",
                    version="1",
                    definition={"journey": "x"},
                    trigger=CustomerEvent(id="e1", type="purchase", customer_id="c1", at=T0),
                    context={},
                    search_attributes=False,
                ),
                id="journey:c1:x:e1",
                task_queue="why-failing",
            )
            outcome = None
            for _ in range(100):  # the second attempt comes about a second after the first
                outcome = await temporal_outcome(client, "journey:c1:x:e1")
                if outcome is not None:
                    break
                await asyncio.sleep(0.1)
    finally:
        await env.shutdown()
    assert outcome is not None and outcome.status == "failing"
    assert outcome.reason is not None
    assert outcome.reason.startswith("its workflow task fails (attempt ")
    assert outcome.reason.endswith("): 2 validation errors for Journey")


def test_why_command_says_when_temporal_cannot_be_asked(
    engine: Engine, settings: Settings, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running run is checked with Temporal; unreachable, why says so and shows the ledger."""
    nowhere = settings.model_copy(update={"temporal_address": "127.0.0.1:9"})
    monkeypatch.setattr(gdpr_cli, "_settings", lambda: nowhere)
    monkeypatch.setattr(gdpr_cli, "_engine", lambda _settings: engine)
    result = CliRunner().invoke(_app(), ["why", seeded.customer_id, "--json"])  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    [note] = result.stderr.splitlines()
    assert note.startswith("note: run statuses are the database's; Temporal: cannot reach")
    runs = {run["journey"]: run for run in json.loads(result.stdout)["runs"]}
    assert (runs["post_purchase"]["status"], runs["post_purchase"]["status_source"]) == (
        "running",
        "record",
    )
