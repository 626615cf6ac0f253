"""Every split and hold-out arm a run takes is stored with the run, from the workflow's choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from tests.conftest import ROOT
from tests.workflows.scenario import write_scenario
from trouw.commands.simulate import load_scenario, simulate
from trouw.domain.db.engine import make_engine, session_scope
from trouw.domain.db.models import JourneyRun, SplitAssignment
from trouw.language.journey.loader import load_journey
from trouw.language.journey.model import SplitStep
from trouw.language.journey.split import choose_arm

JOURNEY = """\
journey: ab
trigger: {event: purchase, reentry: order}
settings: {category: service}
steps:
  - id: ab
    split:
      - {name: sms, weight: 2, goto: tip}
      - {name: nothing, weight: 1, goto: done}
      - {name: holdout, weight: 1, holdout: true}
  - {id: tip, send: sms, template: delivery_notice}
  - {id: done, exit: finished}
"""


@pytest.mark.slow
async def test_each_run_stores_the_arm_the_workflow_took(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "ab.yaml").write_text(JOURNEY, encoding="utf-8")
    ids = [f"s{n}" for n in range(12)]
    customers = [
        {"id": cid, "first_name": "Ann", "phone": f"+324700001{n:02d}"} for n, cid in enumerate(ids)
    ]
    events = [
        {
            "at": "0d",
            "type": "purchase",
            "customer": cid,
            "order": f"o-{cid}",
            "channel": "pos",
            "lines": [{"sku": "ROSE-01"}],
        }
        for cid in ids
    ]
    path = write_scenario(
        tmp_path / "scenario.yaml", customers=customers, events=events, until="2d"
    )
    result = await simulate(
        load_scenario(path),
        journeys_dir=journeys,
        templates_dir=ROOT / "templates",
        workdir=tmp_path / "sim",
    )
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        rows = session.exec(select(SplitAssignment)).all()
        runs = {r.workflow_id: r for r in session.exec(select(JourneyRun)).all()}
    step = load_journey(journeys / "ab.yaml").journey.step("ab")
    assert isinstance(step, SplitStep)
    assert sorted(r.customer_id for r in rows) == sorted(ids)
    for row in rows:
        arm = choose_arm(row.customer_id, "ab", step)
        assert arm is not None
        assert (row.journey, row.step, row.arm, row.holdout) == ("ab", "ab", arm.name, arm.holdout)
        run = runs[row.workflow_id]
        assert row.version == run.version
        assert (run.status == "held_out") == arm.holdout
    # The twelve customers cover every arm, so each path (noted arm, hold-out) is exercised.
    assert {r.arm for r in rows} == {"sms", "nothing", "holdout"}
