"""On the time-skipping server: a condition that fails on real data fails that run alone, with
its reason in the ledger, while the customer's other journeys go on."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlmodel import Session, select

from tests.conftest import ROOT
from tests.workflows.scenario import of, run, write_scenario
from trouw.domain.db.engine import make_engine
from trouw.domain.db.models import JourneyRun

pytestmark = pytest.mark.slow

FAILS_MID_RUN = """\
journey: fragile
trigger: {event: purchase}
steps:
  - id: pause
    wait: 1d
  - id: choose
    branch:
      - if: "order.total > 'a lot'"
        goto: done
  - id: done
    exit: done
"""


def test_failing_condition_fails_its_run_alone_and_says_why(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    shutil.copy(ROOT / "journeys/post_purchase.yaml", journeys)
    (journeys / "fragile.yaml").write_text(FAILS_MID_RUN)
    customer = {"id": "c1", "first_name": "An", "email": "an@example.com", "locale": "nl-BE"}
    events = [
        {
            "at": "0d",
            "type": "purchase",
            "customer": "c1",
            "order": "o1",
            "channel": "web",
            "lines": [{"sku": "ROSE-01"}],
        },
        {"at": "2d", "type": "delivered", "customer": "c1", "order": "o1"},
    ]
    path = write_scenario(tmp_path / "s.yaml", customers=[customer], events=events, until="12d")
    _scenario, result = asyncio.run(run(path, journeys, ROOT / "templates"))
    sent = [(e.template, e.outcome) for e in of(result, "c1", journey="post_purchase")]
    assert ("order_confirmation", "sent") in sent and ("delivery_notice", "sent") in sent
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with Session(engine) as session:
        runs = {r.journey: (r.status, r.end_reason) for r in session.exec(select(JourneyRun))}
    engine.dispose()
    assert runs["fragile"] == (
        "failed",
        "step choose: \"order.total > 'a lot'\": '>' not supported between instances of "
        "'float' and 'str'",
    )
