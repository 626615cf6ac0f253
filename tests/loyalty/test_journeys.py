"""The shipped loyalty journeys in the simulator, over a year (journeys/scenarios/loyalty.yaml)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio
from sqlmodel import select

from tests.conftest import ROOT
from tests.workflows.scenario import of, run
from trouw.commands.simulate import SimulationResult
from trouw.domain.db.engine import make_engine, session_scope
from trouw.domain.db.models import PointsEntry, Voucher


@pytest_asyncio.fixture(scope="module")
async def result(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    folder = tmp_path_factory.mktemp("loyalty")
    path = Path(shutil.copy(ROOT / "journeys" / "scenarios" / "loyalty.yaml", folder))
    _scenario, outcome = await run(path, ROOT / "journeys", ROOT / "templates")
    return outcome


def sent(result: SimulationResult, customer: str, template: str) -> list[str]:
    return [e.at for e in of(result, customer, template=template, outcome="sent")]


def test_every_new_member_is_welcomed_once_with_a_gift(result: SimulationResult) -> None:
    for customer in ("m1", "m2", "m3"):
        assert len(sent(result, customer, "loyalty_welcome")) == 1, customer
    assert of(result, "m4", journey="loyalty_welcome") == []  # no card: not a member
    welcome = of(result, "m3", template="loyalty_welcome")[0]
    assert welcome.category == "service" and welcome.subject == "Welkom bij onze klantenpas, Emma"


def test_level_reached_is_service_and_sent_once(result: SimulationResult) -> None:
    [level] = of(result, "m1", template="loyalty_level")
    assert (level.category, level.outcome) == ("service", "sent")
    assert level.subject == "Proficiat, Bart: je bent nu zilver-lid"
    assert level.at == "2026-03-17T09:00:00+01:00"


def test_level_reached_issues_the_levels_gift_and_the_mail_shows_it(
    result: SimulationResult,
) -> None:
    # zilver's gift (config: voucher = 5, voucher_days 60), issued by the level's run.
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        gift = session.get(Voucher, "NIVEAU-M1-1")
        assert gift is not None
        assert (gift.value, gift.journey, gift.reason) == (
            Decimal("5.00"),
            "loyalty_level",
            "level zilver reached",
        )
        assert gift.expires_at - gift.issued_at == timedelta(days=60)
        assert gift.message_key is not None and "loyalty_level" in gift.message_key
    engine.dispose()
    [html] = [
        path
        for folder in {result.outbox_dir, *result.outbox_dirs}
        for path in folder.rglob("*loyalty_level_zilver*congratulate*.html")
    ]
    text = html.read_text()
    assert "NIVEAU-M1-1" in text and "tegoedbon van € 5,00" in text.replace("\xa0", " ")


def test_referral_invitation_is_promotional_and_both_sides_are_rewarded(
    result: SimulationResult,
) -> None:
    [invite] = of(result, "m1", template="referral_invite")
    assert (invite.category, invite.outcome, invite.at) == (
        "promotional",
        "sent",
        "2026-03-03T09:00:00+01:00",
    )
    assert of(result, "m3", template="referral_invite") == []  # no opt-in: not even tried
    assert len(sent(result, "m1", "referral_reward")) == 1
    assert len(sent(result, "m2", "referral_reward")) == 1


def test_a_redeemed_welcome_gift_gets_no_expiry_reminder(result: SimulationResult) -> None:
    # m1 redeemed WELKOM-M1-1 on order p2: the sweep derives no voucher_expiring for it.
    reminders = of(result, "m1", template="voucher_expiry", outcome="sent")
    assert [e.subject for e in reminders] == [
        "Je tegoedbon vervalt op 16 mei 2026",  # NIVEAU, the level's gift
        "Je tegoedbon vervalt op 6 juni 2026",  # VRIEND
        "Je tegoedbon vervalt op 13 oktober 2026",  # TERUG, the win-back voucher
    ]
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        voucher = session.get(Voucher, "WELKOM-M1-1")
        assert voucher is not None and voucher.redeemed_order_id == "p2"
        assert voucher.message_key is not None and "loyalty_welcome" in voucher.message_key
        codes = sorted(session.exec(select(Voucher.code)).all())
    engine.dispose()
    assert codes == [
        "NIVEAU-M1-1",
        "TERUG-M1-1",
        "TERUG-M4-1",
        "TERUG-M4-2",  # m4 lapsed again after p8
        "VRIEND-M1-1",
        "VRIEND-M2-1",
        "WELKOM-M1-1",
        "WELKOM-M2-1",
        "WELKOM-M3-1",
    ]


def test_an_expiring_voucher_is_reminded_at_once_when_the_sweep_derives_it(
    result: SimulationResult,
) -> None:
    # voucher_expiring comes voucher_expiring_days (7) before the end; the run sends at once.
    # VRIEND-M1-1 was issued to m1 (the referrer) while m2 was simulated; WELKOM-M3-1 at m3's
    # purchase, with no later event of m3's before its expiry: both are swept at their moment.
    starts = [
        (e.customer, e.at, e.reason)
        for e in result.runs
        if e.journey == "voucher_expiry" and e.outcome == "started"
    ]
    assert sorted(starts) == [
        ("m1", "2026-05-09T10:00:00+02:00", "voucher_expiring event voucher_expiring:NIVEAU-M1-1"),
        ("m1", "2026-05-30T10:00:00+02:00", "voucher_expiring event voucher_expiring:VRIEND-M1-1"),
        ("m1", "2026-10-06T10:00:00+02:00", "voucher_expiring event voucher_expiring:TERUG-M1-1"),
        ("m2", "2026-04-29T10:00:00+02:00", "voucher_expiring event voucher_expiring:WELKOM-M2-1"),
        ("m2", "2026-05-30T10:00:00+02:00", "voucher_expiring event voucher_expiring:VRIEND-M2-1"),
        ("m3", "2026-04-25T10:00:00+02:00", "voucher_expiring event voucher_expiring:WELKOM-M3-1"),
        ("m4", "2027-03-30T10:00:00+02:00", "voucher_expiring event voucher_expiring:TERUG-M4-2"),
    ]
    assert [(e.at, e.outcome) for e in of(result, "m1", template="voucher_expiry")] == [
        ("2026-05-09T10:00:00+02:00", "sent"),
        ("2026-05-30T10:00:00+02:00", "sent"),
        ("2026-10-06T10:00:00+02:00", "sent"),
    ]
    # Without a promotional opt-in the reminder is refused, as before.
    assert [e.reason for e in of(result, "m3", template="voucher_expiry")] == [
        "no_promotional_opt_in"
    ]


def test_a_lapsed_customer_who_opted_in_gets_a_win_back_voucher(result: SimulationResult) -> None:
    # m1 (opted in): 180 days after the last purchase, a TERUG voucher in a promotional mail,
    # reminded a week before it expires; m3 (no opt-in): the plain service message, no voucher.
    [winback] = of(result, "m1", template="winback")
    assert (winback.category, winback.outcome, winback.at) == (
        "promotional",
        "sent",
        "2026-09-13T10:00:00+02:00",
    )
    assert winback.subject == "We missen je, Bart: een tegoedbon om terug te komen"
    assert of(result, "m1", template="reactivation") == []
    assert [e.category for e in of(result, "m3", template="reactivation")] == [
        "service",
        "service",
    ]
    assert of(result, "m3", template="winback") == []
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        gift = session.get(Voucher, "TERUG-M1-1")
        assert gift is not None and gift.value == Decimal("10.00")
        assert gift.message_key == winback.message_key
        assert session.get(Voucher, "TERUG-M3-1") is None
        # m4 redeemed its win-back voucher online a week later: the order is attributed to it.
        redeemed = session.get(Voucher, "TERUG-M4-1")
        assert redeemed is not None and redeemed.redeemed_order_id == "p8"
    engine.dispose()
    reminders = [(e.subject, e.at) for e in of(result, "m1", template="voucher_expiry")]
    assert ("Je tegoedbon vervalt op 13 oktober 2026", "2026-10-06T10:00:00+02:00") in reminders
    # TERUG-M4-1, redeemed before its reminder was due: the sweep derived nothing, no run
    # started; only the next lapse's voucher (TERUG-M4-2, after p8) is reminded.
    assert [e.reason for e in result.runs if e.customer == "m4" and e.journey == "voucher_expiry"][
        :1
    ] == ["voucher_expiring event voucher_expiring:TERUG-M4-2"]
    assert [e.subject for e in of(result, "m4", template="voucher_expiry")] == [
        "Your voucher expires on April 6, 2027"
    ]


def test_points_expiring_reminder_thirty_days_before(result: SimulationResult) -> None:
    [first, *_] = of(result, "m3", template="points_expiring")
    assert first.at == "2027-02-01T10:00:00+01:00" and first.category == "service"
    assert first.subject == "49 van je punten vervallen op 3 maart 2027"
    assert of(result, "m1", template="points_expiring")[0].subject.startswith("49 ")


def test_a_partial_return_takes_back_the_points_of_its_units(result: SimulationResult) -> None:
    engine = make_engine(f"sqlite:///{result.workdir / 'simulation.db'}")
    with session_scope(engine) as session:
        rows = session.exec(
            select(PointsEntry).where(PointsEntry.customer_id == "m1", PointsEntry.order_id == "p7")
        ).all()
    engine.dispose()
    assert sorted((row.kind, row.points) for row in rows) == [("earn", 598), ("return", -299)]
