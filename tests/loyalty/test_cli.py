"""`trouw loyalty adjust` and `trouw loyalty sweep` against a database of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from trouw.commands.cli import run_command
from trouw.domain.db.engine import get_engine, session_scope
from trouw.domain.db.models import InboundEvent, PointsEntry
from trouw.domain.ingest import CustomerIn, upsert_customer
from trouw.domain.loyalty import vouchers


def test_adjust_and_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'trouw.db'}"
    monkeypatch.setenv("TROUW_HOME", str(tmp_path))
    monkeypatch.setenv("TROUW_DATABASE_URL", url)
    engine = get_engine(url)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        upsert_customer(session, CustomerIn(id="c1"), at=now, source="pos")
        vouchers.issue(
            session,
            customer_id="c1",
            value=Decimal("5"),
            expires_at=now + timedelta(days=3),
            issued_key="cli-1",
            now=now,
        )
    assert run_command(["loyalty", "adjust", "c1", "--points", "40", "--reason", "goodwill"]) == 0
    assert "c1: 40 points, level brons" in capsys.readouterr().out
    assert run_command(["loyalty", "adjust", "c1", "--points", "-50", "--reason", "typo"]) == 1
    assert "would make it negative" in capsys.readouterr().err
    assert run_command(["loyalty", "sweep"]) == 0
    assert "1 loyalty event(s) derived" in capsys.readouterr().out  # the voucher expires in 3 d
    with session_scope(engine) as session:
        entries = session.exec(PointsEntry.__table__.select()).all()  # type: ignore[attr-defined]
        assert [(row.kind, row.points, row.reason) for row in entries] == [
            ("adjust", 40, "goodwill")
        ]
        derived = [row.type for row in session.exec(InboundEvent.__table__.select()).all()]  # type: ignore[attr-defined]
        assert "voucher_expiring" in derived
