"""`trouw why`: every decision of the send ledger explained, with the consent it relied on."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from tests.gdpr.conftest import Seeded
from trouw import gdpr_cli
from trouw.settings import Settings
from trouw.why import UnknownCustomerError, explain, render


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
