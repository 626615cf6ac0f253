"""The journey report: funnel per journey, version and step, and orders attributed to messages.

Reads the ledgers (journey runs, messages, engagement, orders, vouchers) with aggregate SQL
where it can and feeds the pure attribution (trouw.domain.measure.attribution) with plain tuples, so
a year of a shop (a million messages, 200,000 orders) reports in seconds on SQLite too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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
from trouw.domain.measure.goals import goal_totals
from trouw.domain.measure.messages import by_key
from trouw.domain.measure.segments import segment_funnel, segments_json
from trouw.settings import AttributionWindows, Settings

_TOUCH: dict[str, TouchKind] = {"clicked": "click", "opened": "open", "delivered": "delivery"}


def _days(value: float | None) -> timedelta | None:
    """Days as a window; None or 0 switch the touch off."""
    return timedelta(days=value) if value else None


def _windows(w: AttributionWindows) -> Windows:
    return Windows(_days(w.click_days), _days(w.open_days), _days(w.delivery_days))


def attribution_rules(settings: Settings) -> AttributionRules:
    """The attribution windows the settings describe (config/trouw.toml, "measurement")."""
    return AttributionRules(
        default=Windows(
            _days(settings.attribution_click_days),
            _days(settings.attribution_open_days),
            _days(settings.attribution_delivery_days),
        ),
        shops={name: _windows(w) for name, w in settings.attribution_shops.items()},
        journeys={name: _windows(w) for name, w in settings.attribution_journeys.items()},
    )


def _longest(rules: AttributionRules) -> timedelta:
    every = [rules.default, *rules.shops.values(), *rules.journeys.values()]
    spans = [w for ws in every for w in (ws.click, ws.open, ws.delivery) if w is not None]
    return max(spans, default=timedelta(0))


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite's text, read raw (see _raw)
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _raw(connection: Connection, column: Any) -> Any:
    """A time column without the per-row type decorator: on SQLite its stored text (parsed by
    _aware, several times faster over 200,000 orders), elsewhere the driver's datetime."""
    if connection.dialect.name == "sqlite":
        return sa.type_coerce(column, sa.String)
    return column


def _kinds(rules: AttributionRules) -> tuple[str, ...]:
    """The engagement kinds some rule counts: clicks alone unless opens or deliveries are on."""
    every = [rules.default, *rules.shops.values(), *rules.journeys.values()]
    on = {
        kind
        for w in every
        for kind, window in (("clicked", w.click), ("opened", w.open), ("delivered", w.delivery))
        if window is not None
    }
    return tuple(sorted(on | {"clicked"}))  # clicks always: their session is an exact link


def attribute_orders(
    connection: Connection,
    rules: AttributionRules,
    *,
    start: datetime,
    end: datetime,
    journey: str | None = None,
) -> list[Attribution]:
    """Orders placed in [start, end), each attributed to at most one message (or none).

    Reads only what can earn an order: the touches in the windows, the vouchers messages issued
    that were redeemed on an order, and the orders of customers with such a touch or voucher or
    carrying a touched click's session (any other order has nothing to be attributed to:
    `attribute` gives None for it).
    """
    e = Engagement.__table__  # type: ignore[attr-defined]
    v = Voucher.__table__  # type: ignore[attr-defined]
    o = Order.__table__  # type: ignore[attr-defined]
    in_window = [
        e.c.kind.in_(_kinds(rules)),
        e.c.at >= start - max(_longest(rules), timedelta(days=90)),
        e.c.at < end,
    ]
    touched: Any = connection.execute(
        sa.select(
            e.c.message_key,
            e.c.customer_id,
            e.c.journey,
            e.c.kind,
            _raw(connection, e.c.at),
            e.c.session_id,
        ).where(*in_window)
    ).all()
    touches = [
        Touch(key, customer, j, _TOUCH[kind], _aware(at), session)
        for key, customer, j, kind, at, session in touched
    ]
    redeemed_from_messages = [v.c.message_key.is_not(None), v.c.redeemed_order_id.is_not(None)]
    issued_rows: Any = connection.execute(
        sa.select(
            v.c.code,
            v.c.message_key,
            v.c.journey,
            _raw(connection, v.c.issued_at),
            v.c.redeemed_order_id,
        ).where(*redeemed_from_messages)
    ).all()
    vouchers: dict[str, IssuedVoucher] = {}
    redeemed: dict[str, list[str]] = defaultdict(list)  # order id -> codes redeemed on it
    for code, key, j, issued, order_id in issued_rows:
        vouchers[code] = IssuedVoucher(code, key, j or "", _aware(issued))
        redeemed[order_id].append(code)
    rows: Any = connection.execute(
        sa.select(
            o.c.id,
            o.c.customer_id,
            _raw(connection, o.c.placed_at),
            o.c.total,
            o.c.returned_at.is_not(None),
            o.c.store,
            o.c.channel,
            o.c.session_id,
        ).where(
            o.c.placed_at >= start,
            o.c.placed_at < end,
            sa.or_(
                o.c.customer_id.in_(sa.select(e.c.customer_id).where(*in_window)),
                o.c.id.in_(sa.select(v.c.redeemed_order_id).where(*redeemed_from_messages)),
                # A clicked session links whoever ordered: a guest checkout after the click.
                o.c.session_id.in_(
                    sa.select(e.c.session_id).where(*in_window, e.c.session_id.is_not(None))
                ),
            ),
        )
    ).all()
    orders: list[OrderToAttribute] = []
    for oid, customer, placed, total, returned, store, channel, session in rows:
        total = Decimal(total)
        orders.append(
            OrderToAttribute(
                order_id=oid,
                customer_id=customer,
                placed_at=_aware(placed),
                revenue=total,
                # The order model knows whole returns only: all of its revenue goes back.
                returned=total if returned else Decimal("0"),
                shop=store or channel,
                session_id=session,
                # Loyalty records the order each code was redeemed on (till or webshop): an
                # exact link.
                vouchers=tuple(redeemed.get(oid, ())),
            )
        )
    # One order of the sums, whatever order the database returned the rows in.
    orders.sort(key=lambda order: (order.placed_at, order.order_id))
    found = attribute_all(orders, touches, vouchers, rules)
    if journey is not None:
        found = [a for a in found if a.journey == journey]
    return found


@dataclass
class StepFunnel:
    journey: str
    version: str | None
    step: str
    channel: str
    eligible: int = 0  # messages the run reached (each one decided by the policy)
    sent: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)  # by reason
    deferred: int = 0  # messages deferred at least once (quiet hours, caps)
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    complained: int = 0
    unsubscribed: int = 0
    orders: int = 0  # orders attributed to this step's messages
    revenue: float = 0.0  # their attributed revenue


@dataclass
class JourneyFunnel:
    journey: str
    version: str | None
    entered: int = 0  # runs started in the period
    converted: int = 0  # runs that reached a goal
    held_out: int = 0
    orders: int = 0
    revenue: float = 0.0
    steps: list[StepFunnel] = field(default_factory=list)
    # Goal conversions that happened in the period, per goal: {goal, conversions, valued, value}
    goals: list[dict[str, Any]] = field(default_factory=list)
    goal_value: float = 0.0  # their value in all


@dataclass
class Report:
    start: datetime
    end: datetime
    journeys: list[JourneyFunnel]
    revenue_by_day: list[tuple[str, float]]  # attributed revenue per day of the order
    attributed_orders: int
    methods: dict[str, int]  # how many orders each attribution method earned
    # The funnel per customer segment (trouw.domain.measure.segments), when asked for: None otherwise.
    segments: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "attributed_orders": self.attributed_orders,
            "methods": self.methods,
            "revenue_by_day": [{"day": d, "revenue": r} for d, r in self.revenue_by_day],
            "journeys": [asdict(j) for j in self.journeys],
            "segments": self.segments,
        }


RunKey = tuple[str, str | None, str]  # journey, version, status
# journey, version, step, channel, state, decision, reason, deferred
MessageKey = tuple[str, str | None, str, str, str, str, str | None, bool]
EngagedKey = tuple[str, str | None, str, str, str]  # journey, version, step, channel, kind


@dataclass
class Counts:
    """The funnel's counts over a period: runs started, messages created, messages engaged."""

    runs: Counter[RunKey] = field(default_factory=Counter)
    messages: Counter[MessageKey] = field(default_factory=Counter)
    engaged: Counter[EngagedKey] = field(default_factory=Counter)  # distinct messages


def _sortable(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple("" if v is None else v for v in key)


def run_counts(
    connection: Connection, *, start: datetime, end: datetime, journey: str | None
) -> Counter[RunKey]:
    """Runs started in [start, end) per journey, version and status, from the run records."""
    r = JourneyRun.__table__  # type: ignore[attr-defined]
    keys = [r.c.journey, r.c.version, r.c.status]
    query = sa.select(*keys, sa.func.count()).where(r.c.started_at >= start, r.c.started_at < end)
    if journey is not None:
        query = query.where(r.c.journey == journey)
    found: Counter[RunKey] = Counter()
    rows: Any = connection.execute(query.group_by(*keys))
    for j, version, status, count in rows:
        found[(j, version, status)] += count
    return found


def message_counts(
    connection: Connection, *, start: datetime, end: datetime, journey: str | None
) -> Counter[MessageKey]:
    """Messages created in [start, end) per step, outcome and deferral, from the send ledger."""
    m = Message.__table__  # type: ignore[attr-defined]
    where = [m.c.created_at >= start, m.c.created_at < end]
    if journey is not None:
        where.append(m.c.journey == journey)
    # The same test as the roll-up's trigger (migration 0016): a deferral in the history.
    deferred = sa.cast(m.c.status_history, sa.Text).like('%"status": "defer"%')
    keys = [
        m.c.journey,
        m.c.journey_version,
        m.c.step,
        m.c.channel,
        m.c.state,
        m.c.decision,
        m.c.reason,
        deferred,
    ]
    found: Counter[MessageKey] = Counter()
    rows: Any = connection.execute(sa.select(*keys, sa.func.count()).where(*where).group_by(*keys))
    for j, version, s, channel, state, decision, reason, was_deferred, count in rows:
        found[(j, version, s, channel, state, decision, reason, bool(was_deferred))] += count
    return found


def engagement_counts(
    connection: Connection, *, start: datetime, end: datetime, journey: str | None
) -> Counter[EngagedKey]:
    """Messages with engagement of each kind in [start, end), each message once per kind."""
    e = Engagement.__table__  # type: ignore[attr-defined]
    # The ledger carries each message's journey, version, step and channel: no join with the
    # million-row message table. Engagement counts in the period in which it happened.
    keys = [e.c.journey, e.c.journey_version, e.c.step, e.c.channel, e.c.kind]
    where = [e.c.at >= start, e.c.at < end]
    if journey is not None:
        where.append(e.c.journey == journey)
    found: Counter[EngagedKey] = Counter()
    rows: Any = connection.execute(
        sa.select(*keys, sa.func.count(sa.distinct(e.c.message_key))).where(*where).group_by(*keys)
    )
    for j, version, s, channel, kind, count in rows:
        found[(j, version, s, channel, kind)] += count
    return found


def ledger_counts(
    connection: Connection, *, start: datetime, end: datetime, journey: str | None
) -> Counts:
    """The funnel's counts read from the ledgers themselves (every row of the period)."""
    return Counts(
        run_counts(connection, start=start, end=end, journey=journey),
        message_counts(connection, start=start, end=end, journey=journey),
        engagement_counts(connection, start=start, end=end, journey=journey),
    )


def journey_report(
    connection: Connection,
    rules: AttributionRules,
    *,
    start: datetime,
    end: datetime,
    journey: str | None = None,
    segments: bool = False,
    rollups: bool = True,
) -> Report:
    """The funnel of every journey (or one) over [start, end), with attributed orders; with
    `segments`, also split by the customers' insight segment.

    `rollups` reads the counts from the per-day roll-ups (trouw.domain.measure.rollup), False from the
    ledgers themselves: the same numbers (tests/measure/test_rollup.py), the first much faster.
    """
    funnels: dict[tuple[str, str | None], JourneyFunnel] = {}

    def of(j: str, version: str | None) -> JourneyFunnel:
        return funnels.setdefault((j, version), JourneyFunnel(j, version))

    if rollups:
        from trouw.domain.measure import rollup

        counts = rollup.counts(connection, start=start, end=end, journey=journey)
    else:
        counts = ledger_counts(connection, start=start, end=end, journey=journey)
    for (j, version, status), count in sorted(counts.runs.items()):
        f = of(j, version)
        f.entered += count
        if status == "converted":
            f.converted += count
        elif status == "held_out":
            f.held_out += count
    steps: dict[tuple[str, str | None, str, str], StepFunnel] = {}

    def step(j: str, version: str | None, s: str, channel: str) -> StepFunnel:
        key = (j, version, s, channel)
        if key not in steps:
            steps[key] = StepFunnel(j, version, s, channel)
            of(j, version).steps.append(steps[key])
        return steps[key]

    for key, count in sorted(counts.messages.items(), key=lambda kv: _sortable(kv[0])):
        j, version, s, channel, state, decision, reason, was_deferred = key
        sf = step(j, version, s, channel)
        sf.eligible += count
        if state == "sent":
            sf.sent += count
        elif state == "suppressed" or decision == "suppress":
            label = reason or "unknown"
            sf.suppressed[label] = sf.suppressed.get(label, 0) + count
        if was_deferred:
            sf.deferred += count
    for (j, version, s, channel, kind), count in sorted(
        counts.engaged.items(), key=lambda kv: _sortable(kv[0])
    ):
        sf = step(j, version, s, channel)
        setattr(sf, kind, getattr(sf, kind) + count)
    m = Message.__table__  # type: ignore[attr-defined]
    attributed = attribute_orders(connection, rules, start=start, end=end, journey=journey)
    if attributed:
        placed: dict[str, tuple[str, str | None, str, str]] = {}
        for key, j, version, s, channel in by_key(
            connection,
            {a.message_key for a in attributed},
            m.c.journey,
            m.c.journey_version,
            m.c.step,
            m.c.channel,
        ):
            placed[key] = (j, version, s, channel)
        for a in attributed:
            if a.message_key not in placed:
                continue  # a voucher from a message no longer in the ledger
            j, version, s, channel = placed[a.message_key]
            st = step(j, version, s, channel)
            st.orders += 1
            st.revenue += float(a.revenue)
            fj = of(j, version)
            fj.orders += 1
            fj.revenue += float(a.revenue)
    for (j, version), goals in goal_totals(
        connection, start=start, end=end, journey=journey
    ).items():
        fj = of(j, version)
        fj.goals = goals
        fj.goal_value = round(sum(g["value"] for g in goals), 2)
    by_day: dict[str, float] = defaultdict(float)
    methods: dict[str, int] = defaultdict(int)
    for a in attributed:
        by_day[a.placed_at.date().isoformat()] += float(a.revenue)
        methods[a.method] += 1
    for fj in funnels.values():
        fj.steps.sort(key=lambda st: (st.step, st.channel))
        fj.revenue = round(fj.revenue, 2)
        for st in fj.steps:
            st.revenue = round(st.revenue, 2)
    return Report(
        start=start,
        end=end,
        journeys=sorted(funnels.values(), key=lambda f: (f.journey, f.version or "")),
        revenue_by_day=sorted((d, round(v, 2)) for d, v in by_day.items()),
        attributed_orders=len(attributed),
        methods=dict(methods),
        segments=segments_json(
            segment_funnel(connection, start=start, end=end, attributed=attributed, journey=journey)
        )
        if segments
        else None,
    )
