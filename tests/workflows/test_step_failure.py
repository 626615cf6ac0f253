"""A send that fails at run time is recorded and the run goes on, or ends, as the journey says."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlmodel import select

from tests.conftest import ROOT
from tests.workflows.scenario import of, run, write_scenario
from trouw.domain.db.engine import make_engine, session_scope
from trouw.domain.db.models import JourneyRun, Message

JOURNEY = """\
journey: failing
trigger: {event: purchase}
settings: {category: service}
steps:
  - id: tips
    send: email
    template: care_tips
    on_error: ON_ERROR
  - id: review
    send: email
    template: review_request
"""


@pytest.mark.parametrize("on_error", ["continue", "exit"])
def test_template_error_is_recorded_and_the_journey_decides(tmp_path: Path, on_error: str) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    body = templates / "email/care_tips/body.mjml"
    # fails only on real data, for a first order (validation renders with sample data and
    # refuses unknown names before anything runs)
    body.write_text(
        body.read_text().replace(
            "</mj-body>",
            "<mj-raw>{{ 10 / (history.orders - 1) }}</mj-raw></mj-body>",
            1,
        )
    )
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "failing.yaml").write_text(JOURNEY.replace("ON_ERROR", on_error))
    customers = [
        {
            "id": "f1",
            "first_name": "Fien",
            "email": "f1@example.com",
            "locale": "nl-BE",
            "birthday": "1980-01-01",
        },
        {
            "id": "f2",
            "first_name": "Gert",
            "email": "f2@example.com",
            "locale": "nl-BE",
            "birthday": "1980-01-01",
        },
    ]
    events = [
        {
            "at": "0d",
            "type": "purchase",
            "customer": c,
            "order": f"o-{c}",
            "channel": "pos",
            "lines": [{"sku": "ROSE-01"}],
        }
        for c in ("f1", "f2")
    ]
    path = write_scenario(tmp_path / "s.yaml", customers=customers, events=events, until="3d")
    _scenario, result = asyncio.run(run(path, journeys, templates))
    for customer in ("f1", "f2"):  # every customer gets the same treatment: nobody else is affected
        tips = of(result, customer, step="tips")
        assert [(e.outcome) for e in tips] == ["suppressed"]
        assert tips[0].reason is not None and "care_tips/body.mjml" in tips[0].reason
        assert "division by zero" in tips[0].reason
        reviews = of(result, customer, step="review")
        assert [e.outcome for e in reviews] == (["sent"] if on_error == "continue" else [])
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        failed = session.exec(select(Message).where(Message.step == "tips")).all()
        runs = session.exec(select(JourneyRun).where(JourneyRun.journey == "failing")).all()
    assert all(m.state == "failed" and m.error and "division by zero" in m.error for m in failed)
    expected = "completed" if on_error == "continue" else "exited"
    assert {r.status for r in runs} == {expected}
