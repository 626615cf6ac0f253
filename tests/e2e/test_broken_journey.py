"""Live on the dev server: broken journey files dropped into journeys/ while purchases flow stop
nothing; every purchase still gets its confirmation."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from tests.conftest import ROOT
from tests.e2e.test_slice import e2e_settings, outbox_entries, wait_for
from trouw.domain.db.models import JourneyRun
from trouw.language.journey.catalog import STATE_FILE, read_state
from trouw.stack.runtime import Stack, run_stack

pytestmark = pytest.mark.slow

# A YAML syntax error, and a journey that validates but whose trigger fails on real data.
BROKEN_YAML = "journey: broken\ntrigger: {event: purchase\nsteps: []\n"
FAILS_AT_RUN_TIME = """\
journey: spoiler
trigger: {event: purchase, when: "order.total > 'a lot'"}
steps:
  - {id: done, exit: done}
"""


def purchase(n: int) -> dict[str, Any]:
    return {
        "id": f"till-{n}",
        "type": "purchase",
        "customer": f"k-{n}",
        "order": f"P-{n}",
        "channel": "pos",
        "lines": [{"sku": "LAWN-10", "qty": 1, "unit_price": "24.95", "name": "Gazonmest"}],
        "profile": {"id": f"k-{n}", "first_name": "Test", "email": f"k{n}@example.com"},
    }


async def test_broken_journey_files_stop_no_confirmation(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    for path in (ROOT / "journeys").glob("*.yaml"):
        shutil.copy(path, journeys / path.name)
    settings = e2e_settings(tmp_path).model_copy(update={"journeys_dir": journeys})
    stop = asyncio.Event()
    seen: dict[str, Any] = {}

    def confirmations() -> list[str]:
        return sorted(
            e["to"]
            for e in outbox_entries(settings)
            if e["message_key"].endswith(":confirmation:email")
        )

    async def scenario(stack: Stack) -> None:
        try:
            from trouw.domain.db.engine import session_scope
            from trouw.ways_in.api.auth import ensure_key

            with session_scope(stack.services.engine) as session:
                key = ensure_key(session, "e2e", ["ingest", "read"])
            async with httpx.AsyncClient(
                base_url=stack.api_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
            ) as http:
                product = {"sku": "LAWN-10", "name": "Gazonmest", "price": "24.95"}
                product["consumption_days"] = 60  # so that refill starts a run per purchase
                assert (await http.post("/v1/products", json=product)).status_code == 200
                assert (await http.post("/v1/events", json=purchase(1))).status_code in (200, 202)
                await wait_for(lambda: len(confirmations()) == 1)
                # Mid-flow: a syntax error in a shipped journey, a new unparsable file, and a
                # journey whose trigger fails on every purchase.
                refill = journeys / "refill.yaml"
                refill.write_text(refill.read_text() + "  - id: oops\n    wait: [3d\n")
                (journeys / "broken.yaml").write_text(BROKEN_YAML)
                (journeys / "spoiler.yaml").write_text(FAILS_AT_RUN_TIME)
                for n in range(2, 7):
                    response = await http.post("/v1/events", json=purchase(n))
                    assert response.status_code in (200, 202)
                await wait_for(lambda: len(confirmations()) == 6, within=90)
                seen["confirmations"] = confirmations()
                with Session(stack.services.engine) as session:
                    runs = session.exec(select(JourneyRun)).all()
                seen["runs"] = [(r.customer_id, r.journey, r.status) for r in runs]
        finally:
            stop.set()

    await asyncio.wait_for(run_stack(settings, stop=stop, on_ready=scenario), timeout=240)
    assert seen["confirmations"] == sorted(f"k{n}@example.com" for n in range(1, 7))
    runs = seen["runs"]
    assert ("k-1", "refill", "running") in runs
    for n in range(2, 7):
        # refill keeps running its last good version; spoiler fails alone, in the ledger.
        assert (f"k-{n}", "refill", "running") in runs
        assert (f"k-{n}", "spoiler", "failed") in runs
        assert (f"k-{n}", "post_purchase", "running") in runs
    found = read_state(settings.home / STATE_FILE)
    assert found is not None
    assert sorted(Path(item.file).name for item in found[0].refused) == [
        "broken.yaml",
        "refill.yaml",
    ]
