"""The report from roll-ups equals the report from the ledgers: random ledgers, writes, periods."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from trouw.domain.db.models import Engagement, JourneyRun, Message, Order, Voucher
from trouw.domain.measure.attribution import (
    Attribution,
    AttributionRules,
    IssuedVoucher,
    OrderToAttribute,
    Touch,
    TouchKind,
    Windows,
    attribute_all,
)
from trouw.domain.measure.report import attribute_orders, journey_report
from trouw.domain.measure.rollup import counts, fold

pytestmark = pytest.mark.slow  # ~35 s over both databases on a busy machine

T0 = datetime(2026, 3, 1, tzinfo=UTC)
JOURNEYS = ("welcome", "winback")
VERSIONS = ("v1", "v2", None)
STEPS = ("a", "b")
KINDS = ("delivered", "opened", "clicked", "bounced")
STATES = ("sent", "suppressed", "failed", "claimed")
REASONS = ("no_consent", "frequency_cap", None)
KIND: dict[str, TouchKind] = {"clicked": "click", "opened": "open", "delivered": "delivery"}


def _when(rng: random.Random) -> datetime:
    """Within 6 days of T0; a fifth of them on a midnight, where off-by-one errors live."""
    day = T0 + timedelta(days=rng.randrange(6))
    if rng.random() < 0.2:
        return day
    return day + timedelta(seconds=rng.randrange(86400))


def _history(rng: random.Random) -> list[dict[str, Any]]:
    history = [{"status": "allowed", "at": T0.isoformat(), "detail": None}]
    if rng.random() < 0.3:
        history.append({"status": "defer", "at": T0.isoformat(), "reason": "quiet_hours"})
    return history


def _fill(engine: Engine, rng: random.Random, n: int) -> list[dict[str, Any]]:
    m, r, e, o = (t.__table__ for t in (Message, JourneyRun, Engagement, Order))  # type: ignore[union-attr]
    messages: list[dict[str, Any]] = []
    with engine.begin() as c:
        for i in range(n):
            journey, version = rng.choice(JOURNEYS), rng.choice(VERSIONS)
            message: dict[str, Any] = {
                "message_key": f"m{i}",
                "customer_id": f"c{rng.randrange(n // 3 + 1)}",
                "journey": journey,
                "journey_version": version,
                "step": rng.choice(STEPS),
                "channel": rng.choice(("email", "sms")),
                "category": "service",
                "template": "t",
                "created_at": _when(rng),
                "decision": rng.choice(("send", "suppress", "pending")),
                "state": rng.choice(STATES),
                "reason": rng.choice(REASONS),
                "status_history": _history(rng),
                "consent_snapshot": {},
                "attempts": 1,
            }
            messages.append(message)
            c.execute(m.insert(), message)
            c.execute(
                r.insert(),
                {
                    "workflow_id": f"w{i}",
                    "customer_id": message["customer_id"],
                    "journey": journey,
                    "version": version or "v0",
                    "reentry_key": str(i),
                    "event_source_id": str(i),
                    "started_at": _when(rng),
                    "status": rng.choice(("running", "converted", "held_out", "completed")),
                },
            )
            # Several rows per message and kind, some on one day, some on several.
            for k in range(rng.choice((0, 1, 1, 2, 4))):
                c.execute(
                    e.insert(),
                    {
                        "key": f"e{i}:{k}",
                        "message_key": message["message_key"],
                        "customer_id": message["customer_id"],
                        "journey": journey,
                        "journey_version": version,
                        "step": message["step"],
                        "channel": message["channel"],
                        "kind": rng.choice(KINDS[:3] if k else KINDS),
                        "at": _when(rng),
                        "source": "sendgrid",
                        "session_id": None,
                    },
                )
        for i in range(n // 2):
            customer = f"c{rng.randrange(n // 3 + 1)}"
            c.execute(
                o.insert(),
                {
                    "id": f"o{i}",
                    "customer_id": customer,
                    "channel": "web",
                    "placed_at": _when(rng),
                    "returned_at": T0 + timedelta(days=9) if rng.random() < 0.1 else None,
                    "total": Decimal(rng.randrange(100, 9000)) / 100,
                    "currency": "EUR",
                },
            )
            if rng.random() < 0.3:  # a voucher, from a message or not, redeemed here or not
                by = rng.choice(messages)
                c.execute(
                    Voucher.__table__.insert(),  # type: ignore[attr-defined]
                    {
                        "code": f"V{i}",
                        "customer_id": customer,
                        "value": Decimal(5),
                        "issued_at": _when(rng),
                        "expires_at": T0 + timedelta(days=60),
                        "journey": by["journey"],
                        "message_key": by["message_key"] if rng.random() < 0.8 else None,
                        "redeemed_order_id": f"o{i}" if rng.random() < 0.7 else None,
                    },
                )
    return messages


def _change(engine: Engine, rng: random.Random, messages: list[dict[str, Any]]) -> None:
    """Updates and deletes, as sends, callbacks, the reconciler and erasure make them."""
    m, r, e = (t.__table__ for t in (Message, JourneyRun, Engagement))  # type: ignore[union-attr]
    with engine.begin() as c:
        for _ in range(len(messages) // 2):
            key = rng.choice(messages)["message_key"]
            match rng.randrange(7):
                case 0:
                    c.execute(
                        m.update()
                        .where(m.c.message_key == key)
                        .values(state=rng.choice(STATES), reason=rng.choice(REASONS))
                    )
                case 1:
                    c.execute(
                        m.update()
                        .where(m.c.message_key == key)
                        .values(status_history=_history(rng))
                    )
                case 2:
                    c.execute(
                        r.update()
                        .where(r.c.workflow_id == "w" + key[1:])
                        .values(status=rng.choice(("exited", "converted", "failed")))
                    )
                case 3:
                    c.execute(e.update().where(e.c.message_key == key).values(at=_when(rng)))
                case 4:
                    c.execute(e.delete().where(e.c.key == f"e{key[1:]}:0"))
                case 5:
                    c.execute(
                        m.update().where(m.c.message_key == key).values(created_at=_when(rng))
                    )
                case _:
                    c.execute(m.delete().where(m.c.message_key == key))
                    c.execute(r.delete().where(r.c.workflow_id == "w" + key[1:]))


def _periods(rng: random.Random) -> list[tuple[datetime, datetime]]:
    out = [(T0, T0 + timedelta(days=6)), (T0 - timedelta(days=3), T0 + timedelta(days=30))]
    for _ in range(6):
        a, b = sorted((_when(rng), _when(rng)))
        out.append((a, b + timedelta(seconds=1)))
    out.append((T0 + timedelta(hours=3), T0 + timedelta(hours=20)))  # within one day
    return out


def _diff(a: Any, b: Any, at: str = "") -> list[str]:
    """Where two report bodies differ (for the failure message)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in a.keys() | b.keys() for d in _diff(a.get(k), b.get(k), f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d for n, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{at}[{n}]")
        ]
    return [] if a == b else [f"{at}: {a!r} != {b!r}"]


def _every_order(
    connection: sa.Connection, rules: AttributionRules, start: datetime, end: datetime
) -> list[Attribution]:
    """Attribution over every order, touch and voucher, read plainly: what attribute_orders
    gives while reading only what can earn an order."""
    with Session(bind=connection) as s:
        orders = [
            OrderToAttribute(
                o.id,
                o.customer_id,
                o.placed_at,
                o.total,
                o.total if o.returned_at else Decimal("0"),
                o.store or o.channel,
                tuple(
                    v.code
                    for v in s.exec(select(Voucher).where(Voucher.redeemed_order_id == o.id))
                    if v.message_key
                ),
                o.session_id,
            )
            for o in s.exec(select(Order)).all()
            if start <= o.placed_at < end
        ]
        touches = [
            Touch(t.message_key, t.customer_id, t.journey, KIND[t.kind], t.at, t.session_id)
            for t in s.exec(select(Engagement)).all()
            if t.kind in KIND and t.at < end
        ]
        vouchers = {
            v.code: IssuedVoucher(v.code, v.message_key, v.journey or "", v.issued_at)
            for v in s.exec(select(Voucher)).all()
            if v.message_key
        }
    orders.sort(key=lambda o: (o.placed_at, o.order_id))
    return attribute_all(orders, touches, vouchers, rules)


def _same(engine: Engine, rng: random.Random) -> None:
    rules = AttributionRules(default=Windows(open=timedelta(days=2)))
    with engine.connect() as c:
        for n, (start, end) in enumerate(_periods(rng)[:3]):
            found = attribute_orders(c, rules, start=start, end=end)
            assert found == _every_order(c, rules, start, end)
            if n == 0:  # the whole ledger: every way of earning an order is there
                assert {a.method for a in found} >= {"voucher", "click"}
        for start, end in _periods(rng):
            for journey in (None, "welcome"):
                kw = {"start": start, "end": end, "journey": journey}
                rolled = journey_report(c, rules, **kw).to_json()  # type: ignore[arg-type]
                direct = journey_report(c, rules, rollups=False, **kw).to_json()  # type: ignore[arg-type]
                assert rolled == direct, (start, end, journey, _diff(rolled, direct))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_rolled_up_report_equals_the_ledger_report(engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    messages = _fill(engine, rng, 120)
    _same(engine, rng)  # every change still a delta
    with engine.begin() as c:
        assert sum(fold(c).values()) > 0
    _same(engine, rng)  # folded
    _change(engine, rng, messages)
    _same(engine, rng)  # folded, then deltas on top
    with engine.begin() as c:
        fold(c)
        assert sum(fold(c).values()) == 0  # nothing left to fold
    _same(engine, rng)


def test_a_migration_counts_the_rows_already_there(engine: Engine) -> None:
    # The migration's backfill and the triggers agree: drop the roll-ups, recount them the way
    # the migration does (downgrade, upgrade), compare.
    from alembic import command
    from alembic.config import Config

    from trouw.domain.db.engine import MIGRATIONS_DIR

    rng = random.Random(9)
    messages = _fill(engine, rng, 60)
    _change(engine, rng, messages)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as c:
        config.attributes["connection"] = c
        command.downgrade(config, "0015_worker_presence")
        command.upgrade(config, "head")
    _same(engine, rng)


@pytest.mark.postgres
def test_two_clicks_at_once_on_postgres_count_one_message(engine: Engine) -> None:
    """Two transactions write the same message's click on one day at once: one counts."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite writes one transaction at a time")
    e = Engagement.__table__  # type: ignore[attr-defined]

    where = {"message_key": "m1", "customer_id": "c1", "journey": "welcome"}
    where |= {"journey_version": "v1", "step": "a", "channel": "email"}

    def click(n: int) -> dict[str, Any]:
        at = T0 + timedelta(hours=n)
        return {**where, "key": f"click{n}", "kind": "clicked", "at": at, "source": "redirect"}

    with engine.begin() as c:
        message = {**where, "category": "service", "template": "t", "created_at": T0}
        message |= {"status_history": [], "consent_snapshot": {}}
        c.execute(Message.__table__.insert(), message)  # type: ignore[attr-defined]
    first = engine.connect()
    first.begin()
    first.execute(e.insert(), click(1))  # not committed yet
    second_done = threading.Event()

    def second() -> None:
        with engine.begin() as c:
            c.execute(e.insert(), click(2))  # waits for the first (the message row's lock)
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not second_done.wait(1.0)  # still waiting on the first transaction
    first.commit()
    first.close()
    thread.join(10)
    assert second_done.is_set()
    with engine.connect() as c:
        found = counts(c, start=T0, end=T0 + timedelta(days=1), journey=None)
        rows = c.execute(sa.select(sa.func.count()).select_from(e)).scalar_one()
    assert rows == 2
    assert found.engaged == {("welcome", "v1", "a", "email", "clicked"): 1}
