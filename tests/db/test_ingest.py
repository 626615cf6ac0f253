"""Events in: stored once, applied to the data, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from trouw.domain.consent import current_consent
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import (
    ConsentRecord,
    Customer,
    InboundEvent,
    Order,
    OrderLine,
    ProfileChange,
    Suppression,
)
from trouw.domain.gdpr import erase
from trouw.domain.ingest import (
    CustomerIn,
    EventIn,
    IngestError,
    ProductIn,
    birthday_problem,
    ingest_event,
    pending_events,
    upsert_customer,
    upsert_product,
    wire_event,
)

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def purchase(event_id: str = "e1", **extra: object) -> EventIn:
    data: dict[str, object] = {
        "id": event_id,
        "type": "purchase",
        "customer": "c1",
        "order": "o1",
        "channel": "web",
        "at": AT,
        "lines": [
            {"sku": "LAWN-10", "qty": 2},
            {"sku": "ROSE-01", "qty": 1, "unit_price": "14.50"},
        ],
        "profile": {
            "id": "c1",
            "first_name": "Bart",
            "email": "bart@example.com",
            "opt_in": {"email": True},
        },
    }
    data.update(extra)
    return EventIn.model_validate(data)


def count(engine: Engine, model: type) -> int:
    with session_scope(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def test_purchase_stores_order_lines_customer_and_consent(engine: Engine) -> None:
    with session_scope(engine) as session:
        upsert_product(
            session,
            ProductIn(
                sku="LAWN-10", name="Gazonmest 10 kg", price=Decimal("24.95"), consumption_days=60
            ),
        )
    with session_scope(engine) as session:
        row, new = ingest_event(session, purchase())
        assert new and row.payload["skus"] == ["LAWN-10", "ROSE-01"]
    with session_scope(engine) as session:
        order = session.get(Order, "o1")
        assert order is not None and order.total == Decimal("64.40") and order.placed_at == AT
        lines = session.exec(select(OrderLine).where(OrderLine.order_id == "o1")).all()
        assert [(line.sku, line.qty, line.name) for line in lines] == [
            ("LAWN-10", 2, "Gazonmest 10 kg"),
            ("ROSE-01", 1, "ROSE-01"),
        ]
        customer = session.get(Customer, "c1")
        assert customer is not None and customer.email == "bart@example.com"
        assert current_consent(session, "c1").promotional("email") is True
        assert [e.source_id for e in pending_events(session)] == ["e1"]


def test_same_event_twice_has_one_effect(engine: Engine) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
    with session_scope(engine) as session:
        _row, new = ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
    assert new is False
    assert (
        count(engine, InboundEvent) == 1
        and count(engine, Order) == 1
        and count(engine, OrderLine) == 1
    )


def test_concurrent_duplicates_store_one_event(engine: Engine) -> None:
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def post() -> None:
        try:
            barrier.wait()
            with session_scope(engine) as session:
                _row, new = ingest_event(
                    session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}])
                )
            results.append(new)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [False, False, False, True]
    assert (
        count(engine, InboundEvent) == 1
        and count(engine, Order) == 1
        and count(engine, Customer) == 1
    )


def test_unsubscribe_withdraws_consent_and_suppresses(engine: Engine) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
        ingest_event(
            session, EventIn(id="u1", type="unsubscribe", customer="c1", channel="email", at=AT)
        )
    with session_scope(engine) as session:
        consent = current_consent(session, "c1")
        assert consent.promotional("email") is False and consent.service_objection("email") is True
        reasons = [s.reason for s in session.exec(select(Suppression)).all()]
        assert reasons == ["unsubscribe"]


def test_unsubscribe_keeps_its_wording_as_evidence(engine: Engine) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
        ingest_event(
            session,
            EventIn(
                id="u1",
                type="unsubscribe",
                customer="c1",
                channel="email",
                at=AT,
                source="unsubscribe",
                wording_version="one-click",
                wording_text="one-click unsubscribe link in message m1",
            ),
        )
    with session_scope(engine) as session:
        records = session.exec(
            select(ConsentRecord).where(ConsentRecord.source == "unsubscribe")
        ).all()
        assert sorted(r.scope for r in records) == ["promotional", "service"]
        assert {(r.wording_version, r.wording_text) for r in records} == {
            ("one-click", "one-click unsubscribe link in message m1")
        }


def _erased_c1(engine: Engine) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
    with session_scope(engine) as session:
        erase(session, customer_id="c1", at=AT)


@pytest.mark.parametrize(
    "event",
    [
        {
            "id": "e2",
            "type": "purchase",
            "customer": "c1",
            "order": "o2",
            "channel": "pos",
            "lines": [{"sku": "X", "unit_price": "2.00"}],
        },
        {
            "id": "e2",
            "type": "register",
            "customer": "c1",
            "profile": {"id": "c1", "email": "bart@example.com", "first_name": "Bart"},
        },
        {"id": "e2", "type": "opt_in", "customer": "c1", "channel": "email"},
    ],
)
def test_an_erased_customer_is_never_revived(engine: Engine, event: dict[str, object]) -> None:
    _erased_c1(engine)
    with (
        pytest.raises(IngestError, match=r"customer 'c1' was erased: .*new customer id"),
        session_scope(engine) as session,
    ):
        ingest_event(session, EventIn.model_validate(event))
    assert count(engine, InboundEvent) == 1
    assert count(engine, Order) == 1
    with session_scope(engine) as session:
        customer = session.get(Customer, "c1")
        assert customer is not None and customer.erased
        assert (customer.email, customer.first_name) == (None, None)
        assert pending_events(session) == []


def test_upsert_refuses_an_erased_customer(engine: Engine) -> None:
    _erased_c1(engine)
    with pytest.raises(IngestError, match="was erased"), session_scope(engine) as session:
        upsert_customer(session, CustomerIn(id="c1", email="bart@example.com"), at=AT, source="api")
    with session_scope(engine) as session:
        customer = session.get(Customer, "c1")
        assert customer is not None and customer.erased and customer.email is None


def test_a_profiles_opt_ins_keep_the_wording_they_were_given_under(engine: Engine) -> None:
    # The simulator loads its customers this way (wording "simulation"); the API gives none.
    with session_scope(engine) as session:
        upsert_customer(
            session,
            CustomerIn(id="c1", email="bart@example.com", opt_in={"email": True, "sms": False}),
            at=AT,
            source="import",
            wording_version="simulation",
        )
        upsert_customer(session, CustomerIn(id="c2", opt_in={"email": True}), at=AT, source="api")
    with session_scope(engine) as session:
        records = session.exec(select(ConsentRecord)).all()
        assert sorted(
            (r.customer_id, r.channel, r.granted, r.wording_version) for r in records
        ) == [
            ("c1", "email", True, "simulation"),
            ("c1", "sms", False, "simulation"),
            ("c2", "email", True, None),
        ]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"id": "x", "type": "delivered", "customer": "c1", "order": "nope"},
            "delivered: unknown order 'nope'",
        ),
        ({"id": "x", "type": "delivered", "customer": "ghost"}, "unknown customer 'ghost'"),
        (
            {
                "id": "x",
                "type": "purchase",
                "customer": "c2",
                "channel": "web",
                "lines": [{"sku": "Q"}],
                "order": "o9",
            },
            "line 1: unknown product Q and no unit_price",
        ),
        (
            {
                "id": "x",
                "type": "purchase",
                "customer": "c2",
                "channel": "web",
                "lines": [{"sku": "Q"}],
            },
            "a purchase needs `order`",
        ),
    ],
)
def test_bad_events_are_refused_with_a_reason(
    engine: Engine, event: dict[str, object], message: str
) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
    with (
        pytest.raises(IngestError, match=message.replace("(", r"\(").replace(")", r"\)")),
        session_scope(engine) as session,
    ):
        ingest_event(session, EventIn.model_validate(event))
    assert count(engine, InboundEvent) == 1


def test_an_order_sent_again_under_a_new_event_id_is_the_same_order(engine: Engine) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
    # A till re-sends the order under its own event id, with a corrected quantity.
    with session_scope(engine) as session:
        row, new = ingest_event(
            session, purchase("till-7", lines=[{"sku": "X", "qty": 3, "unit_price": "1.00"}])
        )
        assert new is True
        assert row.type == "order_update"
        assert row.payload["decision"] == (
            "order o1 is already known (first stored as event e1): a re-send under a new "
            "event id, not a new purchase; changes applied: lines, total"
        )
        event = wire_event(row)
        assert (event.type, event.order_id, event.skus) == ("order_update", "o1", ["X"])
    with session_scope(engine) as session:
        order = session.get(Order, "o1")
        assert order is not None and order.total == Decimal("3.00") and order.placed_at == AT
        lines = session.exec(select(OrderLine).where(OrderLine.order_id == "o1")).all()
        assert [(line.sku, line.qty) for line in lines] == [("X", 3)]
    assert count(engine, Order) == 1


def test_an_unchanged_order_sent_again_says_so(engine: Engine) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
    with session_scope(engine) as session:
        row, _new = ingest_event(
            session, purchase("export-1", lines=[{"sku": "X", "unit_price": "1.00"}])
        )
        assert row.type == "order_update"
        assert row.payload["decision"].endswith("not a new purchase; no changes")


def test_an_order_id_of_another_customer_is_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
    other = purchase("e2", customer="c2", profile=None, lines=[{"sku": "X", "unit_price": "1.00"}])
    with (
        pytest.raises(IngestError, match="order o1 belongs to another customer"),
        session_scope(engine) as session,
    ):
        ingest_event(session, other)


def register_events(engine: Engine) -> list[dict[str, object]]:
    with session_scope(engine) as session:
        rows = session.exec(select(InboundEvent).where(InboundEvent.type == "register")).all()
        return [dict(row.payload["data"]) for row in rows]


def test_every_profile_change_is_recorded_with_source_and_time(engine: Engine) -> None:
    with session_scope(engine) as session:
        upsert_customer(session, CustomerIn(id="c1", first_name="Bart"), at=AT, source="pos")
    later = AT.replace(day=9)
    with session_scope(engine) as session:
        update = CustomerIn.model_validate(
            {"id": "c1", "first_name": "Bart", "birthday": "1979-04-24", "clear": []}
        )
        upsert_customer(session, update, at=later, source="import")
    with session_scope(engine) as session:
        upsert_customer(
            session,
            CustomerIn.model_validate({"id": "c1", "clear": ["birthday"]}),
            at=later,
            source="api",
        )
    with session_scope(engine) as session:
        ledger = session.exec(select(ProfileChange).order_by(col(ProfileChange.id))).all()
        assert [(r.field, r.source, r.at) for r in ledger] == [
            ("first_name", "pos", AT),
            ("birthday", "import", later),
            ("birthday", "api", later),
        ]
        customer = session.get(Customer, "c1")
        assert customer is not None and customer.birthday is None
    # A new customer is no change to announce; both changes of a known one are, without values.
    assert register_events(engine) == [{"changed": ["birthday"]}, {"changed": ["birthday"]}]


def test_a_profile_riding_on_a_purchase_announces_its_changes(engine: Engine) -> None:
    with session_scope(engine) as session:
        upsert_product(session, ProductIn(sku="LAWN-10", name="Gazonmest", price=Decimal("9")))
    with session_scope(engine) as session:
        ingest_event(session, purchase())
        ingest_event(
            session,
            purchase("e2", order="o2", profile={"id": "c1", "birthday": "1979-04-24"}),
        )
    assert register_events(engine) == [{"changed": ["birthday"]}]
    with session_scope(engine) as session:
        types = session.exec(select(InboundEvent.type).order_by(col(InboundEvent.id))).all()
    assert types == ["purchase", "register", "purchase"]


@pytest.mark.parametrize(
    ("birthday", "message"),
    [
        ("2999-01-01", "a birthday cannot be in the future"),
        ("1899-12-31", "a birthday before 1900 is not plausible"),
    ],
)
def test_an_impossible_birthday_is_refused(birthday: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CustomerIn.model_validate({"id": "c1", "birthday": birthday})


def test_a_birthday_today_in_kiribati_is_not_in_the_future() -> None:
    # 23:00 UTC on 1 March is already 2 March in Kiribati (UTC+14).
    now = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    assert birthday_problem(date(2026, 3, 2), now=now) is None
    assert birthday_problem(date(2026, 3, 3), now=now) == "future"
    assert birthday_problem(date(1900, 1, 1), now=now) is None


@pytest.mark.parametrize(
    ("channel", "scope", "promotional", "objection", "suppressed"),
    [
        ("email", None, False, True, ["email"]),
        ("email", "all", False, True, ["email"]),
        ("email", "promotional", False, False, []),
        ("email", "service", True, True, []),
        ("all", "promotional", False, False, []),
        ("all", None, False, True, ["email", "sms"]),
    ],
)
def test_an_unsubscribe_carries_its_channel_and_scope(
    engine: Engine,
    channel: str,
    scope: str | None,
    promotional: bool,
    objection: bool,
    suppressed: list[str],
) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
        row, _new = ingest_event(
            session,
            EventIn.model_validate(
                {
                    "id": "u1",
                    "type": "unsubscribe",
                    "customer": "c1",
                    "channel": channel,
                    "scope": scope,
                    "at": AT,
                }
            ),
        )
        assert wire_event(row).data == {"channel": channel, "scope": scope or "all"}
    with session_scope(engine) as session:
        consent = current_consent(session, "c1")
        assert consent.promotional("email") is promotional
        assert consent.service_objection("email") is objection
        assert sorted(s.channel for s in session.exec(select(Suppression)).all()) == suppressed


@pytest.mark.parametrize(
    ("event", "data"),
    [
        ({"type": "opt_out", "channel": "sms"}, {"channel": "sms", "scope": "promotional"}),
        ({"type": "opt_in", "channel": "email"}, {"channel": "email", "scope": "promotional"}),
        ({"type": "sms_stop"}, {"channel": "sms", "scope": "all"}),
    ],
)
def test_every_consent_event_says_what_it_covers(
    engine: Engine, event: dict[str, object], data: dict[str, str]
) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
        row, _new = ingest_event(
            session, EventIn.model_validate({"id": "x1", "customer": "c1", "at": AT, **event})
        )
        assert wire_event(row).data == data


def test_a_scope_on_another_event_is_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        ingest_event(session, purchase(lines=[{"sku": "X", "unit_price": "1.00"}]))
    with (
        pytest.raises(IngestError, match="`scope` belongs to unsubscribe events"),
        session_scope(engine) as session,
    ):
        ingest_event(
            session,
            EventIn(id="x1", type="opt_out", customer="c1", channel="email", scope="service"),
        )
