"""Templates own their category: after a promotional opt-out, no shipped journey's promotional
content reaches the customer (on the time-skipping server, with the shipped journeys)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.workflows.scenario import START, run, write_scenario
from trouw.domain.render import TemplateStore

pytestmark = pytest.mark.slow


def test_promotional_opt_out_stops_every_promotional_message(tmp_path: Path) -> None:
    customer = {
        "id": "ilse",
        "first_name": "Ilse",
        "email": "ilse@example.com",
        "locale": "nl-BE",
        "birthday": "1979-03-10",
        "opt_in": {"email": True},
    }
    events = [
        {
            "at": "0d",
            "type": "purchase",
            "customer": "ilse",
            "order": "o1",
            "channel": "pos",
            "lines": [{"sku": "LAWN-10"}, {"sku": "ROSE-01"}],
        },
        {"at": "10d", "type": "opt_out", "customer": "ilse", "channel": "email"},
    ]
    path = write_scenario(tmp_path / "s.yaml", customers=[customer], events=events)
    _scenario, result = asyncio.run(run(path, ROOT / "journeys", ROOT / "templates"))
    store = TemplateStore(ROOT / "templates")
    opted_out = datetime.fromisoformat(START).replace(day=12)

    def promotional(entry: object) -> bool:
        return store.category(entry.channel, entry.template) == "promotional"  # type: ignore[attr-defined]

    before = [e for e in result.timeline if datetime.fromisoformat(e.at) < opted_out]
    after = [e for e in result.timeline if datetime.fromisoformat(e.at) >= opted_out]
    # With consent the birthday voucher went out; it started the voucher reminder.
    assert [(e.journey, e.outcome) for e in before if promotional(e)] == [("birthday", "sent")]
    decided = [(e.journey, e.category, e.outcome, e.reason) for e in after if promotional(e)]
    assert decided == [("voucher_expiry", "promotional", "suppressed", "no_promotional_opt_in")]
    assert [e for e in after if promotional(e) and e.outcome == "sent"] == []
