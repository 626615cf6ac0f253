"""`trouw export`: one JSON document with every section, the consent wording and the proof."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from tests.gdpr.conftest import WORDING_V1, WORDING_V2, Seeded
from trouw.commands import gdpr_cli
from trouw.domain import gdpr
from trouw.settings import Settings

SECTIONS = {
    "profile",
    "orders",
    "consent_records",
    "profile_changes",
    "proof",
    "suppressions",
    "messages",
    "journey_runs",
    "journey_run_events",
    "vouchers",
    "inbound_events",
}


def test_export_has_every_section_and_the_consent_wording(engine: Engine, seeded: Seeded) -> None:
    with Session(engine) as session:
        document = gdpr.export(session, customer_id=seeded.customer_id)
    assert SECTIONS <= document.keys()
    json.dumps(document)  # JSON-ready as it is: no Decimal, no datetime left
    assert document["profile"]["email"] == seeded.email
    assert document["profile"]["first_name"] == "Bart"
    [order] = document["orders"]
    assert order["total"] == "49.90"
    assert order["lines"] == [
        {"line_no": 1, "sku": "LAWN-10", "name": "Gazonmest 10 kg", "qty": 2, "unit_price": "24.95"}
    ]
    wordings = [(r["wording_version"], r["wording_text"]) for r in document["consent_records"]]
    assert ("newsletter-v1", WORDING_V1) in wordings
    assert ("newsletter-v2", WORDING_V2) in wordings
    assert {m["journey"] for m in document["messages"]} == {"post_purchase", "spring_promo"}
    promo = next(m for m in document["messages"] if m["journey"] == "spring_promo")
    assert promo["reason"] == "no_promotional_opt_in"
    assert promo["consent_snapshot"]["consent"]["email:promotional"]["granted"] is False
    assert {r["journey"] for r in document["journey_runs"]} == {"post_purchase", "spring_promo"}
    assert [v["code"] for v in document["vouchers"]] == ["TROUW-ABC123"]
    assert {e["type"] for e in document["inbound_events"]} == {
        "register",
        "opt_in",
        "purchase",
        "opt_out",
    }


def test_export_proof_names_the_record_the_current_state_rests_on(
    engine: Engine, seeded: Seeded
) -> None:
    with Session(engine) as session:
        proof = gdpr.export(session, customer_id=seeded.customer_id)["proof"]
    email = proof["email:promotional"]
    assert email["state"] == "withdrawn"
    assert email["record"]["wording_version"] == "newsletter-v2"
    assert email["record"]["wording_text"] == WORDING_V2
    assert proof["sms:promotional"] == {"state": "no record", "record": None, "suppressed_by": []}
    assert proof["email:service"]["state"] == "no objection recorded"


def test_export_unknown_customer(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(gdpr.UnknownCustomerError):
        gdpr.export(session, customer_id="nobody")


def test_export_command_writes_a_private_file(
    engine: Engine,
    settings: Settings,
    seeded: Seeded,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gdpr_cli, "_settings", lambda: settings)
    monkeypatch.setattr(gdpr_cli, "_engine", lambda _settings: engine)
    app = typer.Typer()
    app.command("export")(gdpr_cli.export)
    app.command("noop")(lambda: None)  # two commands: typer then keeps the command name
    out = tmp_path / "exports" / "c1.json"
    result = CliRunner().invoke(app, ["export", seeded.customer_id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert SECTIONS <= json.loads(out.read_text()).keys()
    assert out.stat().st_mode & 0o077 == 0
    to_stdout = CliRunner().invoke(app, ["export", seeded.customer_id])
    assert json.loads(to_stdout.stdout)["customer_id"] == seeded.customer_id
    missing = CliRunner().invoke(app, ["export", "nobody"])
    assert missing.exit_code == 1
