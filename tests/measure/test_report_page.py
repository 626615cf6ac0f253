"""`trouw report --html`: the page a marketer opens, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlmodel import select

from tests.measure.test_report import DAY, T0
from tests.measure.test_split_report import _populate
from trouw.commands.cli import app
from trouw.domain.db.engine import make_engine, migrate, session_scope
from trouw.domain.db.models import Engagement, JourneyRun, Message, SplitAssignment

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _runs_messages_and_clicks(db: object) -> None:
    """A run per split customer, a message per mail arm, deliveries, opens and clicks."""
    with session_scope(db) as s:  # type: ignore[arg-type]
        arms = s.exec(select(SplitAssignment)).all()
        for n, a in enumerate(arms):
            status = "held_out" if a.holdout else "completed"
            s.add(
                JourneyRun(
                    workflow_id=a.workflow_id,
                    customer_id=a.customer_id,
                    journey=a.journey,
                    version="v1",
                    reentry_key="o",
                    event_source_id="e",
                    started_at=T0,
                    status=status,
                )
            )
            if a.holdout:
                continue
            key = f"{a.workflow_id}:tips"
            channel = "email" if a.arm == "email_tips" else "sms"
            s.add(
                Message(
                    message_key=key,
                    customer_id=a.customer_id,
                    journey=a.journey,
                    journey_version="v1",
                    step=f"tips_{channel}",
                    channel=channel,
                    category="service",
                    template="care_tips",
                    created_at=T0,
                    decision="send",
                    state="sent",
                )
            )
            kinds = ["delivered"] + (["opened"] if n % 2 else []) + (["clicked"] if n % 3 else [])
            for kind in kinds:
                s.add(
                    Engagement(
                        key=f"{key}:{kind}",
                        message_key=key,
                        customer_id=a.customer_id,
                        journey=a.journey,
                        journey_version="v1",
                        step=f"tips_{channel}",
                        channel=channel,
                        kind=kind,
                        at=T0 + DAY,
                        source="sendgrid",
                    )
                )


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "chromium is not installed"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_report_page_shows_funnel_revenue_and_uplift_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'trouw.db'}"
    db = make_engine(url)
    migrate(db)
    _populate(db, 2000, lift=0.05)  # split arms and orders of example_ab_test
    _runs_messages_and_clicks(db)
    monkeypatch.setenv("TROUW_DATABASE_URL", url)
    monkeypatch.setenv("TROUW_HOME", str(tmp_path))
    out = tmp_path / "html"
    app(
        args=[
            "report",
            "--from",
            "2026-02-01",
            "--to",
            "2026-04-30",
            "--html",
            str(out),
            "--format",
            "json",
        ],
        standalone_mode=False,
    )
    page = out / "report.html"
    text = page.read_text(encoding="utf-8")
    # Nothing is fetched: no script, no stylesheet or image from elsewhere.
    assert "<script" not in text
    assert not re.search(r'(src|href)="https?://', text)
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    assert dom.count("<svg") == 3  # funnel, revenue over time, uplift
    assert "Uplift: example_ab_test" in dom
    assert "adds measurably over the hold-out" in dom or "not enough customers" in dom
    shot = tmp_path / "report.png"
    _chromium("--window-size=1000,2400", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 20_000
    keep = Path(__file__).parent / "screenshots"
    if keep.is_dir():  # look at it: tests/measure/screenshots/ (not committed)
        shutil.copy(shot, keep / "report.png")
