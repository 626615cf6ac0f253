"""`trouw forget`: workflows stopped, personal data cleared in one go, proof and suppressions kept."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
import typer
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from tests.gdpr.conftest import T0, WORDING_V1, Seeded, seed
from trouw.commands import gdpr_cli
from trouw.domain import gdpr
from trouw.domain.consent import ConsentState, address_hash, current_consent
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import (
    ConsentRecord,
    Customer,
    InboundEvent,
    JourneyRun,
    Message,
    Order,
    Suppression,
)
from trouw.domain.ingest import CustomerIn, upsert_customer
from trouw.domain.policy_inputs import recipient_state
from trouw.language.policy import Decision, MessageFacts, PolicyConfig, decide
from trouw.language.vocabulary import Category
from trouw.settings import Settings
from trouw.stack.temporal import TemporalError

ERASED_AT = T0 + timedelta(days=30)


class Canceller:
    """Stands in for Temporal: records the workflow ids it was asked to terminate."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.deletions: list[tuple[str, list[str]]] = []

    async def __call__(self, ids: list[str]) -> Sequence[str] | None:
        self.calls.append(list(ids))
        return ids[:1]  # only the customer workflow was still running


async def test_forget_clears_personal_data_and_keeps_the_tombstone(
    engine: Engine, seeded: Seeded
) -> None:
    with session_scope(engine) as session:
        receipt = session.exec(select(Message).where(Message.journey == "post_purchase")).one()
        receipt.error = f"550 mailbox {seeded.email.upper()} full; Bart Peeters"
        session.add(receipt)
    report = await gdpr.forget(
        engine, customer_id=seeded.customer_id, cancel=Canceller(), now=ERASED_AT
    )
    assert not report.already_erased
    assert report.fields_cleared == [
        "email",
        "phone",
        "first_name",
        "last_name",
        "birthday",
        "attributes",
        "tags",
    ]
    assert (report.suppressions_added, report.orders_kept, report.runs_closed) == (2, 1, 1)
    assert (report.messages_scrubbed, report.events_scrubbed, report.vouchers_kept) == (2, 4, 1)
    assert report.consent_records_kept == 2 and report.consent_withdrawals_added == 2
    assert "2 address suppressions added (reason erased, hash only)" in report.lines()

    with Session(engine) as session:
        customer = session.get(Customer, seeded.customer_id)
        assert customer is not None and customer.erased
        assert customer.updated_at == ERASED_AT
        personal = [customer.email, customer.phone, customer.first_name, customer.last_name]
        assert personal == [None, None, None, None]
        assert (customer.birthday, customer.attributes, customer.tags) == (None, {}, [])

        suppressions = session.exec(select(Suppression).where(Suppression.reason == "erased")).all()
        assert {(s.channel, s.address_hash) for s in suppressions} == {
            ("email", address_hash(seeded.email)),
            ("sms", address_hash(seeded.phone)),
        }

        records = session.exec(
            select(ConsentRecord).order_by(col(ConsentRecord.at), col(ConsentRecord.id))
        ).all()
        assert records[0].wording_text == WORDING_V1  # the proof keeps the wording
        assert [(r.channel, r.scope, r.granted, r.source) for r in records[-2:]] == [
            ("all", "promotional", False, "erasure"),
            ("all", "service", False, "erasure"),
        ]

        messages = session.exec(select(Message)).all()
        assert all(m.subject is None for m in messages)
        assert all(m.consent_snapshot for m in messages)  # what each decision relied on stays
        receipt = next(m for m in messages if m.journey == "post_purchase")
        assert receipt.error == "550 mailbox [erased] full; [erased] [erased]"

        for event in session.exec(select(InboundEvent)).all():
            assert event.payload["erased"] is True
            assert set(event.payload["data"]) <= {"channel", "store"}
        [order] = session.exec(select(Order)).all()
        assert order.customer_id == seeded.customer_id  # bookkeeping keeps the opaque id
        run = session.exec(
            select(JourneyRun).where(JourneyRun.workflow_id == seeded.running_workflow)
        ).one()
        assert (run.status, run.end_reason, run.ended_at) == ("exited", "erased", ERASED_AT)


async def test_forget_terminates_the_customer_and_running_journey_workflows(
    engine: Engine, seeded: Seeded
) -> None:
    cancel = Canceller()
    report = await gdpr.forget(engine, customer_id=seeded.customer_id, cancel=cancel)
    # The finished run (spring_promo) is not asked for: the ledger knows it has ended.
    assert cancel.calls == [["customer:c1", seeded.running_workflow]]
    assert report.workflows == ["customer:c1", seeded.running_workflow]
    assert "1 workflows terminated, 1 already closed or never started" in report.lines()


async def test_forget_twice_is_a_noop(engine: Engine, seeded: Seeded) -> None:
    await gdpr.forget(engine, customer_id=seeded.customer_id, cancel=Canceller(), now=ERASED_AT)
    with Session(engine) as session:
        before = len(session.exec(select(ConsentRecord)).all())
    cancel = Canceller()
    again = await gdpr.forget(engine, customer_id=seeded.customer_id, cancel=cancel)
    assert again.already_erased and cancel.calls == []
    assert again.lines() == [
        f"customer c1 was already erased on {ERASED_AT.isoformat()}; nothing to do"
    ]
    with Session(engine) as session:
        assert len(session.exec(select(ConsentRecord)).all()) == before
        assert len(session.exec(select(Suppression)).all()) == 2


async def test_forget_erases_nothing_when_temporal_is_unreachable(
    engine: Engine, seeded: Seeded
) -> None:
    async def down(ids: list[str]) -> None:
        raise TemporalError("cannot reach Temporal")

    with pytest.raises(TemporalError):
        await gdpr.forget(engine, customer_id=seeded.customer_id, cancel=down)
    with Session(engine) as session:
        customer = session.get(Customer, seeded.customer_id)
        assert customer is not None and not customer.erased and customer.email == seeded.email


async def test_forget_unknown_customer(engine: Engine) -> None:
    with pytest.raises(gdpr.UnknownCustomerError):
        await gdpr.forget(engine, customer_id="nobody", cancel=Canceller())


def _reimport(engine: Engine, email: str) -> tuple[ConsentState, Decision, Decision]:
    """A new customer c9 signs up with the erased address and an email opt-in (an import)."""
    now = ERASED_AT + timedelta(days=1)
    with session_scope(engine) as session:
        upsert_customer(
            session,
            CustomerIn(id="c9", email=email, first_name="Bart", opt_in={"email": True}),
            at=now,
            source="import",
        )
    with Session(engine) as session:
        customer = session.get(Customer, "c9")
        assert customer is not None
        consent = current_consent(session, "c9")
        state = recipient_state(customer, consent)

    def verdict(category: Category) -> Decision:
        return decide(
            MessageFacts(category=category, channel="email", journey="j", triggered_at=now),
            state,
            [],
            now,
            PolicyConfig(),
        )

    return consent, verdict("promotional"), verdict("transactional")


async def test_erased_address_reimported_gets_no_promotions(engine: Engine) -> None:
    seed(engine, "c1", "x@example.com")
    await gdpr.forget(engine, customer_id="c1", cancel=Canceller(), now=ERASED_AT)
    consent, promotional, _ = _reimport(engine, "x@example.com")
    assert consent.promotional("email")  # the import's opt-in is recorded...
    erased = [s for s in consent.suppressions if s.reason == "erased"]
    assert [(s.channel, s.customer_id, s.address_hash) for s in erased] == [
        ("email", "c1", address_hash("x@example.com"))
    ]
    assert promotional.action == "suppress"  # ...and overruled by the erasure
    assert promotional.reason == "suppressed_erased"


async def test_erased_address_reimported_still_gets_its_receipts(engine: Engine) -> None:
    seed(engine, "c1", "x@example.com")
    await gdpr.forget(engine, customer_id="c1", cancel=Canceller(), now=ERASED_AT)
    _, _, transactional = _reimport(engine, "x@example.com")
    assert transactional.action == "send"


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def app(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> tuple[typer.Typer, Canceller]:
    cancel = Canceller()
    monkeypatch.setattr(gdpr_cli, "_settings", lambda: settings)
    monkeypatch.setattr(gdpr_cli, "_engine", lambda _settings: engine)
    monkeypatch.setattr(gdpr, "temporal_canceller", lambda _settings: cancel)

    async def delete(customer_id: str, known: list[str]) -> gdpr.HistoryDeletion:
        cancel.deletions.append((customer_id, known))
        return gdpr.HistoryDeletion(deleted=len(known))

    monkeypatch.setattr(gdpr, "temporal_deleter", lambda _settings: delete)
    application = typer.Typer()
    application.command("forget")(gdpr_cli.forget)
    application.command("noop")(lambda: None)
    return application, cancel


def test_forget_command_refuses_without_yes_when_not_interactive(
    app: tuple[typer.Typer, Canceller], engine: Engine, seeded: Seeded
) -> None:
    result = CliRunner().invoke(app[0], ["forget", seeded.customer_id])
    assert result.exit_code == 1
    assert "pass --yes" in result.stderr
    with Session(engine) as session:
        customer = session.get(Customer, seeded.customer_id)
        assert customer is not None and not customer.erased


def test_forget_command_asks_and_reports_counts(
    app: tuple[typer.Typer, Canceller],
    seeded: Seeded,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gdpr_cli, "_interactive", lambda: True)
    declined = CliRunner().invoke(app[0], ["forget", seeded.customer_id], input="n\n")
    assert declined.exit_code == 1 and "nothing erased" in declined.stderr
    result = CliRunner().invoke(app[0], ["forget", seeded.customer_id], input="y\n")
    assert result.exit_code == 0, result.output
    assert "customer c1 erased at" in result.stdout
    assert "2 address suppressions added" in result.stdout
    assert app[1].calls == [["customer:c1", seeded.running_workflow]]
    # Every workflow the ledger knows, closed ones too, goes to the history deletion.
    known = ["customer:c1", seeded.running_workflow, seeded.finished_workflow]
    assert [(c, sorted(ids)) for c, ids in app[1].deletions] == [("c1", sorted(known))]
    assert "3 closed workflow executions deleted from Temporal" in result.stdout
    again = CliRunner().invoke(app[0], ["forget", seeded.customer_id, "--yes"])
    assert again.exit_code == 0
    assert "was already erased" in again.stdout
    missing = CliRunner().invoke(app[0], ["forget", "nobody", "--yes"])
    assert missing.exit_code == 1 and "unknown customer 'nobody'" in missing.stderr


def test_forget_command_reports_temporal_failure(
    app: tuple[typer.Typer, Canceller], seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(ids: list[str]) -> None:
        raise TemporalError("cannot reach Temporal at 127.0.0.1:7233")

    monkeypatch.setattr(gdpr, "temporal_canceller", lambda _settings: down)
    result = CliRunner().invoke(app[0], ["forget", seeded.customer_id, "--yes"])
    assert result.exit_code == 1
    assert "nothing was erased" in result.stderr
