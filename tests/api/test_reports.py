"""GET /v1/reports/journeys and /v1/reports/journeys/{journey}: the report over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import sqlalchemy as sa

from tests.api.conftest import Api
from tests.measure.test_report import DAY, T0, ledger  # noqa: F401 - fixture used by `api`
from tests.measure.test_split_report import _assign
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import ReportEngagementDelta, ReportMessageDelta, ReportRunDelta
from trouw.domain.measure.rollup import fold_forever

PERIOD = f"from={(T0 - DAY).isoformat()}&to={(T0 + 10 * DAY).isoformat()}".replace("+", "%2B")


def test_journeys_report_is_the_cli_json(api: Api, ledger) -> None:  # noqa: F811
    found = api.get(f"/v1/reports/journeys?{PERIOD}")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["attributed_orders"] == 2 and body["methods"] == {"click": 2}
    [journey] = body["journeys"]
    assert (journey["journey"], journey["entered"], journey["revenue"]) == (
        "post_purchase",
        4,
        40.0,
    )


def test_one_journey_with_its_uplift_and_404_for_none(api: Api, ledger) -> None:  # noqa: F811
    with session_scope(api.engine) as s:
        for n in range(4):
            _assign(s, f"c{n}", "holdout" if n == 2 else "mail", n == 2, T0, run=str(n))
    # _assign files its rows under journey "j": ask for that one.
    found = api.get(f"/v1/reports/journeys/j?{PERIOD}")
    assert found.status_code == 200, found.text
    [uplift] = found.json()["uplift"]
    assert uplift["reference"] == "holdout" and uplift["step"] == "split"
    assert uplift["verdict"].startswith("not enough customers yet to tell")
    assert api.get(f"/v1/reports/journeys/nothing?{PERIOD}").status_code == 404


def test_reports_need_a_read_key_and_an_offset(api: Api) -> None:
    assert api.client.get("/v1/reports/journeys").status_code == 401
    assert api.get("/v1/reports/journeys", scope="ingest").status_code == 403
    naive = api.get("/v1/reports/journeys?from=2026-03-01T00:00:00")
    assert naive.status_code == 422
    late = (T0 + timedelta(days=1)).isoformat().replace("+", "%2B")
    assert api.get(f"/v1/reports/journeys?from={late}&to={late}").status_code == 422


def _pending(api: Api) -> int:
    with api.engine.connect() as connection:
        return sum(
            connection.execute(sa.select(sa.func.count()).select_from(model.__table__)).scalar_one()  # type: ignore[attr-defined]
            for model in (ReportRunDelta, ReportMessageDelta, ReportEngagementDelta)
        )


def test_a_report_reads_the_pending_roll_up_deltas_without_folding_them(
    api: Api,
    ledger,  # noqa: F811
) -> None:
    pending = _pending(api)
    assert pending > 0  # the ledger fixture's rows, not folded yet
    found = api.get(f"/v1/reports/journeys?{PERIOD}")
    assert found.status_code == 200, found.text
    [journey] = found.json()["journeys"]
    assert journey["entered"] == 4  # counted from the deltas
    assert _pending(api) == pending  # and nothing written: the worker folds


async def test_the_worker_folds_the_roll_ups_in_the_background(
    api: Api,
    ledger,  # noqa: F811
) -> None:
    before = api.get(f"/v1/reports/journeys?{PERIOD}").json()
    folding = asyncio.create_task(fold_forever(api.engine, every=0.05))
    try:
        for _ in range(400):  # until the first round has folded (a liveness wait, not a timing)
            if _pending(api) == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        folding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await folding
    assert _pending(api) == 0
    assert api.get(f"/v1/reports/journeys?{PERIOD}").json() == before
