"""Uplift from stored arms and orders (SQLite and PostgreSQL), and the `trouw report` commands."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from tests.conftest import ROOT
from trouw.commands.cli import app
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.db.models import Order, SplitAssignment
from trouw.domain.measure.splits import uplift_report
from trouw.language.journey.loader import load_journey
from trouw.language.journey.model import SplitStep
from trouw.language.journey.split import choose_arm

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
AB = ROOT / "journeys" / "examples" / "ab_test.yaml"


def _assign(session, customer: str, arm: str, holdout: bool, at: datetime, run: str = "") -> None:
    session.add(
        SplitAssignment(
            workflow_id=f"journey:{customer}:{run or at.isoformat()}",
            customer_id=customer,
            journey="j",
            version="v1",
            step="split",
            arm=arm,
            holdout=holdout,
            at=at,
        )
    )


def _order(session, oid: str, customer: str, at: datetime, total: str, returned: bool = False):
    session.add(
        Order(
            id=oid,
            customer_id=customer,
            channel="web",
            placed_at=at,
            total=Decimal(total),
            returned_at=at + timedelta(days=3) if returned else None,
        )
    )


def test_orders_count_in_the_window_after_the_split_and_returns_do_not(engine: Engine) -> None:
    with session_scope(engine) as s:
        _assign(s, "a", "mail", False, T0)
        _assign(s, "a", "mail", False, T0 + timedelta(days=20), run="2")  # re-entry: counted once
        _assign(s, "b", "mail", False, T0)
        _assign(s, "c", "holdout", True, T0)
        _assign(s, "d", "holdout", True, T0)
        _order(s, "o1", "a", T0 - timedelta(days=100), "80.00")  # pre-period spend
        _order(s, "o2", "a", T0 + timedelta(days=2), "40.00")  # converts
        _order(s, "o3", "b", T0 + timedelta(days=3), "25.00", returned=True)  # returned: no
        _order(s, "o4", "c", T0 + timedelta(days=31), "60.00")  # after the window
        _order(s, "o5", "d", T0 - timedelta(minutes=1), "30.00")  # the trigger order: pre
        _order(s, "o6", "d", T0 + timedelta(days=29), "10.00")  # converts
    with session_scope(engine) as s:
        report = uplift_report(s, journey="j", step="split")
    arms = {a["name"]: a for a in report.to_json()["arms"]}
    assert arms["mail"] == {
        "name": "mail",
        "holdout": False,
        "customers": 2,
        "conversions": 1,
        "revenue": 40.0,
        "conversion_rate": 0.5,
        "revenue_per_customer": 20.0,
    }
    assert (arms["holdout"]["customers"], arms["holdout"]["conversions"]) == (2, 1)
    assert arms["holdout"]["revenue"] == 10.0
    body = report.to_json()
    assert body["reference"] == "holdout" and body["arm"] == "mail"
    assert body["verdict"].startswith("not enough customers yet to tell")
    for key in (
        "conversion_diff",
        "ci95",
        "p_value",
        "revenue_diff",
        "revenue_ci95",
        "revenue_p_value",
        "method",
    ):
        assert key in body
    # With CUPED the difference is the adjusted estimate; without, the raw one.
    with session_scope(engine) as s:
        raw = uplift_report(s, journey="j", step="split", cuped=False).to_json()
    assert raw["method"] == "welch" and body["method"] == "cuped+welch"
    assert raw["conversion_diff"] == 0.0 and raw["revenue_diff"] == pytest.approx(15.0)


def test_a_period_selects_splits_by_their_time(engine: Engine) -> None:
    with session_scope(engine) as s:
        _assign(s, "a", "mail", False, T0)
        _assign(s, "b", "holdout", True, T0 + timedelta(days=10))
    with session_scope(engine) as s:
        report = uplift_report(s, journey="j", step="split", end=T0 + timedelta(days=5))
    assert [a["name"] for a in report.arms] == ["mail"]
    assert report.comparisons == [] and report.reference == "mail"


def _populate(db: Engine, n: int, lift: float) -> None:
    """n customers split by the workflow's own function; the mail arm buys `lift` more often."""
    step = load_journey(AB).journey.step("split")
    assert isinstance(step, SplitStep)
    rng = np.random.default_rng(11)
    with session_scope(db) as s:
        for i in range(n):
            cid = f"c{i}"
            arm = choose_arm(cid, "example_ab_test", step)
            assert arm is not None
            s.add(
                SplitAssignment(
                    workflow_id=f"w{i}",
                    customer_id=cid,
                    journey="example_ab_test",
                    version="v1",
                    step="split",
                    arm=arm.name,
                    holdout=arm.holdout,
                    at=T0,
                )
            )
            pre = rng.lognormal(4, 1) if rng.random() < 0.6 else 0.0
            if pre:
                _order(s, f"p{i}", cid, T0 - timedelta(days=40), f"{pre:.2f}")
            chance = 0.05 + 0.1 * (pre > 0) + (0 if arm.holdout else lift)
            if rng.random() < chance:
                _order(s, f"o{i}", cid, T0 + timedelta(days=4), f"{rng.lognormal(3.5, 0.5):.2f}")


def test_cli_uplift_json_and_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'trouw.db'}"
    db = make_engine(url)
    migrate(db)
    _populate(db, 3000, lift=0.1)
    monkeypatch.setenv("TROUW_DATABASE_URL", url)
    monkeypatch.setenv("TROUW_HOME", str(tmp_path))
    args = ["report", "uplift", "example_ab_test", "--journeys", str(AB.parent)]
    app(args=[*args, "--format", "json"], standalone_mode=False)
    body = json.loads(capsys.readouterr().out)
    assert body["step"] == "split" and body["reference"] == "holdout"
    assert body["method"] == "cuped+welch"
    assert {a["name"] for a in body["arms"]} == {"email_tips", "sms_tips", "holdout"}
    assert sum(a["customers"] for a in body["arms"]) == 3000
    assert len(body["comparisons"]) == 2
    for c in body["comparisons"]:
        assert c["ci95"][0] < 0.1 < c["ci95"][1]
        assert c["p_value"] < 0.001
        assert c["verdict"].startswith(f"arm {c['arm']} adds measurably over the hold-out")
    app(args=args, standalone_mode=False)
    table = capsys.readouterr().out
    assert "email_tips vs holdout (cuped+welch)" in table
    assert "adds measurably" in table


def test_cli_split_plans_the_arms_of_a_customer_list(tmp_path: Path, capsys) -> None:
    listing = tmp_path / "customers.csv"
    listing.write_text("customer_id,email\n" + "".join(f"k{i},k{i}@x.be\n" for i in range(50)))
    app(
        args=[
            "report",
            "split",
            "example_ab_test",
            "split",
            "--customers",
            str(listing),
            "--format",
            "csv",
            "--journeys",
            str(AB.parent),
        ],
        standalone_mode=False,
    )
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    step = load_journey(AB).journey.step("split")
    assert isinstance(step, SplitStep)
    assert len(rows) == 50
    for row in rows:
        arm = choose_arm(row["customer_id"], "example_ab_test", step)
        assert arm is not None and row["arm"] == arm.name
    assert "smallest detectable conversion difference" in captured.err
