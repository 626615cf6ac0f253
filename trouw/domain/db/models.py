"""Database tables (SQLModel): customers, consent ledger, catalogue, orders, events, send ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which forgets zones) and PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: every time in Trouw carries its zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json(**kwargs: Any) -> Any:
    return Field(sa_column=sa.Column(sa.JSON, nullable=False), **kwargs)


def _when(*, nullable: bool = False, index: bool = False, **kwargs: Any) -> Any:
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index), **kwargs)


class Customer(SQLModel, table=True):
    """One customer across shop and webshop: the retailer's own customer id."""

    id: str = Field(primary_key=True, max_length=64)
    email: str | None = Field(default=None, index=True, max_length=320)
    phone: str | None = Field(default=None, index=True, max_length=32)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    locale: str = Field(
        default="nl-BE", max_length=35
    )  # a BCP 47 tag, as given (trouw.language.locales)
    timezone: str = Field(default="Europe/Brussels", max_length=64)
    birthday: date | None = None
    preferred_channel: str | None = Field(default=None, max_length=8)  # email | sms
    attributes: dict[str, Any] = _json(default_factory=dict)
    tags: list[str] = _json(default_factory=list)
    email_invalid: bool = False
    phone_invalid: bool = False
    erased: bool = False
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)


class ConsentRecord(SQLModel, table=True):
    """Append-only consent ledger: who said yes or no, to what, when, how and to which wording."""

    __tablename__ = "consent_record"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(index=True, max_length=64)
    channel: str = Field(max_length=8)  # email | sms
    scope: str = Field(max_length=16)  # promotional | service
    granted: bool
    at: datetime = _when()
    source: str = Field(max_length=16)  # pos | web | api | import | email | sms
    wording_version: str | None = Field(default=None, max_length=64)
    wording_text: str | None = None


class ProfileChange(SQLModel, table=True):
    """Append-only record of profile changes: which field, when and through which path.

    The value itself lives only on the customer, so a correction leaves no copy of the wrong one.
    """

    __tablename__ = "profile_change"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(index=True, max_length=64)
    field: str = Field(max_length=80)  # birthday, first_name, attributes.points, ...
    at: datetime = _when()
    source: str = Field(max_length=32)  # preferences | api | import | shopify | pos | ...


class Suppression(SQLModel, table=True):
    """An address that must not be mailed: kept as a hash so it outlives erasure."""

    id: int | None = Field(default=None, primary_key=True)
    address_hash: str = Field(index=True, max_length=64)
    customer_id: str | None = Field(default=None, index=True, max_length=64)
    channel: str = Field(max_length=8)  # email | sms | all
    reason: str = Field(max_length=32)
    at: datetime = _when()
    source: str | None = Field(default=None, max_length=32)


class Product(SQLModel, table=True):
    """A catalogue item; consumption_days drives refill reminders, care the usage tips."""

    sku: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    category: str = Field(default="general", max_length=64)
    price: Decimal = Field(default=Decimal("0"), max_digits=10, decimal_places=2)
    consumption_days: int | None = None
    care: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    warranty_months: int | None = None


class Order(SQLModel, table=True):
    """A purchase in the shop (pos) or online (web), always linked to one customer."""

    __tablename__ = "purchase_order"

    id: str = Field(primary_key=True, max_length=64)
    # The shop's own name for the order, as the customer knows it (Shopify "#1001", WooCommerce
    # "727"); customers never see our id, which carries the source ("shopify:450789469").
    name: str | None = Field(default=None, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    channel: str = Field(max_length=8)  # pos | web
    store: str | None = Field(default=None, max_length=100)
    placed_at: datetime = _when(index=True)
    delivered_at: datetime | None = _when(nullable=True, default=None)
    returned_at: datetime | None = _when(nullable=True, default=None)
    total: Decimal = Field(default=Decimal("0"), max_digits=12, decimal_places=2)
    currency: str = Field(default="EUR", max_length=3)  # ISO 4217, what the customer paid in
    # The tracked click (`trouw_click` on the landing URL) the webshop session came from: an
    # exact link from the order to the message that was clicked (docs/measurement.md).
    session_id: str | None = Field(default=None, index=True, max_length=100)


class OrderLine(SQLModel, table=True):
    """One line of an order."""

    __tablename__ = "order_line"
    __table_args__ = (sa.UniqueConstraint("order_id", "line_no"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(index=True, max_length=64)
    line_no: int
    sku: str = Field(index=True, max_length=64)
    name: str = Field(max_length=200)
    qty: int = 1
    unit_price: Decimal = Field(default=Decimal("0"), max_digits=10, decimal_places=2)


class InboundEvent(SQLModel, table=True):
    """Every event that came in, once (unique source id), and whether it reached Temporal."""

    __tablename__ = "inbound_event"

    id: int | None = Field(default=None, primary_key=True)
    source_id: str = Field(unique=True, max_length=200)
    type: str = Field(index=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    occurred_at: datetime = _when()
    received_at: datetime = _when(default_factory=utcnow)
    payload: dict[str, Any] = _json(default_factory=dict)
    relayed_at: datetime | None = _when(nullable=True, index=True, default=None)
    # When match_journeys answered it (the runs it starts recorded in that transaction); set
    # only for types a journey starts on. The relay signals a type only runs listen to when
    # its customer has such an event unanswered: the run may be starting (docs/decisions.md).
    matched_at: datetime | None = _when(nullable=True, default=None)
    # A hand-off that fails is retried with backoff, then parked with its error: one bad event
    # (a payload Temporal refuses) never blocks the events behind it.
    relay_attempts: int = Field(default=0)
    relay_next_at: datetime | None = _when(nullable=True, default=None)
    relay_error: str | None = Field(default=None, max_length=500)
    parked_at: datetime | None = _when(nullable=True, index=True, default=None)


class JourneyRun(SQLModel, table=True):
    """One journey run per customer, journey and re-entry key: the durable re-entry guard."""

    __tablename__ = "journey_run"
    # The relay asks which versions have live runs (status running) every round.
    __table_args__ = (sa.Index("ix_journey_run_status_version", "status", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(unique=True, max_length=300)
    customer_id: str = Field(index=True, max_length=64)
    journey: str = Field(index=True, max_length=64)
    version: str = Field(max_length=64)
    reentry_key: str = Field(max_length=200)
    event_source_id: str = Field(max_length=200)
    started_at: datetime = _when()
    status: str = Field(
        default="running", max_length=16
    )  # running | completed | exited | converted | held_out | failed | cancelled
    ended_at: datetime | None = _when(nullable=True, default=None)
    end_reason: str | None = None


class JourneyVersion(SQLModel, table=True):
    """What the runs of one journey version listen to (exits, goals, waits): written with the
    version's first run, read by the relay, which signals only events someone listens to."""

    __tablename__ = "journey_version"

    version: str = Field(primary_key=True, max_length=64)
    journey: str = Field(max_length=64)
    listens: list[str] = _json(default_factory=list)


class JourneyRunEvent(SQLModel, table=True):
    """What a journey run did (branch, skip, tag, end and why), or why an event started none.

    Written by the workflow (through an activity) and by match_journeys, never re-derived:
    `trouw why` and `trouw simulate` read the same rows.
    """

    __tablename__ = "journey_run_event"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)  # makes a retried record a no-op
    customer_id: str = Field(index=True, max_length=64)
    journey: str = Field(index=True, max_length=64)
    workflow_id: str | None = Field(default=None, index=True, max_length=300)  # None: no run
    at: datetime = _when()
    kind: str = Field(max_length=16)  # one of trouw.language.contracts.RunEventKind
    step: str | None = Field(default=None, max_length=64)
    reason: str | None = None
    expression: str | None = None


class GoalConversion(SQLModel, table=True):
    """A run that reached one of its journey's goals: which goal, when, and what it was worth.

    Written by record_run when a run ends converted (a goal rule's event, or a `goal:` step);
    the value is the total of the goal event's order, or a custom event's `value` property.
    """

    __tablename__ = "goal_conversion"

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(unique=True, max_length=300)  # a run converts once
    customer_id: str = Field(index=True, max_length=64)
    journey: str = Field(index=True, max_length=64)
    version: str = Field(max_length=64)
    goal: str = Field(max_length=64)
    event_type: str | None = Field(default=None, max_length=64)  # None: a `goal:` step
    event_id: str | None = Field(default=None, max_length=200)
    order_id: str | None = Field(default=None, max_length=64)
    at: datetime = _when(index=True)
    value: Decimal | None = Field(default=None, max_digits=12, decimal_places=2)


class SplitAssignment(SQLModel, table=True):
    """The arm of a split (or hold-out) a run took: written from the workflow's own choice.

    Reports count arms from these rows, never by re-hashing, so a report and the workflow can
    never disagree; `trouw report split` uses the same function only to plan ahead.
    """

    __tablename__ = "split_assignment"
    __table_args__ = (sa.UniqueConstraint("workflow_id", "step"),)

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(max_length=300)
    customer_id: str = Field(index=True, max_length=64)
    journey: str = Field(index=True, max_length=64)
    version: str = Field(max_length=64)
    step: str = Field(max_length=64)
    arm: str = Field(max_length=64)
    holdout: bool = False
    at: datetime = _when(index=True)


class Engagement(SQLModel, table=True):
    """The engagement ledger: a message delivered, opened, clicked, bounced, complained about or
    unsubscribed from, once per provider event or tracked click (`key`), with its journey.

    Written by the provider callbacks (SendGrid events, Twilio status) and the click redirect;
    funnels and attribution read it (trouw/domain/measure), never the messages' status history.
    """

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=200)
    message_key: str = Field(index=True, max_length=300)
    customer_id: str = Field(index=True, max_length=64)
    journey: str = Field(index=True, max_length=64)
    journey_version: str | None = Field(default=None, max_length=64)
    step: str = Field(max_length=64)
    channel: str = Field(max_length=8)
    kind: str = Field(max_length=16)  # one of trouw.domain.measure.engagement.EngagementKind
    at: datetime = _when(index=True)
    source: str = Field(max_length=16)  # sendgrid | twilio | redirect
    link: str | None = Field(default=None, max_length=2000)  # clicks: the link's target
    session_id: str | None = Field(default=None, max_length=100)  # clicks: the webshop session


class TrackedLink(SQLModel, table=True):
    """A link of one message, behind `/c/{code}`: the only places the redirect leads to."""

    __tablename__ = "tracked_link"

    code: str = Field(primary_key=True, max_length=32)
    message_key: str = Field(index=True, max_length=300)
    url: str = Field(max_length=2000)
    created_at: datetime = _when()
    expires_at: datetime = _when()


class Message(SQLModel, table=True):
    """The send ledger: one row per message key, claimed before any provider call."""

    id: int | None = Field(default=None, primary_key=True)
    message_key: str = Field(unique=True, max_length=300)
    customer_id: str = Field(index=True, max_length=64)
    journey: str = Field(index=True, max_length=64)
    journey_version: str | None = Field(default=None, max_length=64)
    workflow_id: str | None = Field(default=None, max_length=300)
    step: str = Field(max_length=64)
    channel: str = Field(max_length=8)
    category: str = Field(max_length=16)
    template: str = Field(max_length=100)
    locale: str | None = Field(default=None, max_length=35)  # the template locale used
    subject: str | None = None
    decision: str = Field(default="pending", max_length=16)  # pending | send | suppress | defer
    reason: str | None = Field(default=None, max_length=64)
    reason_text: str | None = None
    consent_snapshot: dict[str, Any] = _json(default_factory=dict)
    state: str = Field(
        default="claimed", max_length=16
    )  # claimed|in_flight|reconciling|sent|suppressed|failed|unknown
    status: str | None = Field(default=None, max_length=32)  # provider-side status, never backwards
    status_history: list[dict[str, Any]] = _json(default_factory=list)
    provider: str | None = Field(default=None, max_length=32)
    provider_id: str | None = Field(default=None, index=True, max_length=200)
    attempts: int = 0
    error: str | None = None
    created_at: datetime = _when()
    decided_at: datetime | None = _when(nullable=True, default=None)
    sent_at: datetime | None = _when(nullable=True, index=True, default=None)


class MessageCopy(SQLModel, table=True):
    """The HTML of a sent email as the customer got it, for its "view in browser" link.

    zlib-compressed (a rendered email is 20-30 KB of repetitive table markup); beside the
    ledger rather than in it, so the many reads of message rows never load it.
    """

    __tablename__ = "message_copy"

    message_key: str = Field(primary_key=True, max_length=300)
    customer_id: str = Field(index=True, max_length=64)
    html_zlib: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = _when()
    expires_at: datetime = _when(index=True)


class Voucher(SQLModel, table=True):
    """A unique voucher code, one account across shop and webshop: issued by a journey or an
    operator, looked up and redeemed by the till and the webshop (trouw/domain/loyalty/vouchers.py)."""

    code: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    value: Decimal = Field(max_digits=10, decimal_places=2)
    currency: str = Field(default="EUR", max_length=3)
    issued_at: datetime = _when()
    expires_at: datetime = _when()
    redeemed_at: datetime | None = _when(nullable=True, default=None)  # the till's own clock
    journey: str | None = Field(default=None, max_length=64)
    # The first message that showed the code (measurement attributes orders through it).
    message_key: str | None = Field(default=None, max_length=300)
    workflow_id: str | None = Field(default=None, index=True, max_length=300)  # issuing run
    # Who asked for it, once: a journey's call key, or an operator's request id.
    issued_key: str | None = Field(default=None, unique=True, max_length=300)
    issued_by: str = Field(default="journey", max_length=16)  # journey | operator
    reason: str | None = Field(default=None, max_length=200)
    min_order_total: Decimal | None = Field(default=None, max_digits=10, decimal_places=2)
    voided_at: datetime | None = _when(nullable=True, default=None)
    # The redemption, once: a second till with another receipt is refused (trouw/domain/loyalty).
    redeemed_receipt: str | None = Field(default=None, max_length=200)
    redeemed_order_id: str | None = Field(default=None, index=True, max_length=64)
    redeemed_channel: str | None = Field(default=None, max_length=8)  # pos | web
    redeemed_store: str | None = Field(default=None, max_length=100)
    redeemed_recorded_at: datetime | None = _when(nullable=True, default=None)  # server clock


class PointsEntry(SQLModel, table=True):
    """Append-only points ledger: every earning, return, adjustment and expiry, with its reason.

    The balance and level are computed from it (trouw/domain/loyalty/rules.py); `key` makes each
    entry once (a re-sent purchase or a retried sweep adds nothing).
    """

    __tablename__ = "points_entry"
    __table_args__ = (sa.Index("ix_points_entry_customer_at", "customer_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)
    customer_id: str = Field(max_length=64)
    at: datetime = _when()
    kind: str = Field(max_length=8)  # earn | bonus | return | adjust | expire
    points: int
    expires_at: datetime | None = _when(nullable=True, default=None)  # a lot's end (points > 0)
    # The entry a negative one takes first (indexed: the sweep's "is this lot's expiry written").
    lot: str | None = Field(default=None, index=True, max_length=300)
    order_id: str | None = Field(default=None, index=True, max_length=64)
    line_no: int | None = None
    qty: int | None = None  # the units a line entry covers (returns take shares of them)
    reason: str | None = Field(default=None, max_length=500)
    source: str = Field(default="rules", max_length=32)  # rules | operator | sweep | referral


class LoyaltyAccount(SQLModel, table=True):
    """A loyalty member: since when, their referral code, and who referred them."""

    __tablename__ = "loyalty_account"

    customer_id: str = Field(primary_key=True, max_length=64)
    joined_at: datetime = _when()
    referral_code: str = Field(unique=True, max_length=32)
    referred_by: str | None = Field(default=None, index=True, max_length=64)
    referral_converted_at: datetime | None = _when(nullable=True, default=None)


class CallbackEvent(SQLModel, table=True):
    """Provider callback events already applied (SendGrid sg_event_id, Twilio sid+status)."""

    __tablename__ = "callback_event"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=200)
    provider: str = Field(max_length=16)
    received_at: datetime = _when(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    """An API key, stored only as a hash, with its scopes (ingest, read, admin)."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    key_hash: str = Field(unique=True, max_length=64)
    scopes: list[str] = _json(default_factory=list)
    created_at: datetime = _when(default_factory=utcnow)
    revoked_at: datetime | None = _when(nullable=True, default=None)


class CustomerInsightRecord(SQLModel, table=True):
    """What the last insight refresh knows about one customer (trouw.domain.insight computes it).

    One row per customer, replaced by each refresh; journeys and templates read it as
    `insight.*`. The history of segment changes is kept in insight_segment_change.
    """

    __tablename__ = "customer_insight"

    customer_id: str = Field(primary_key=True, max_length=64)
    refresh_id: str = Field(max_length=100)
    as_of: datetime = _when()
    horizon_days: int
    orders: int
    first_order_at: datetime = _when()
    last_order_at: datetime = _when()
    recency_days: int
    frequency: int
    monetary_total: float
    monetary_avg: float
    r: int
    f: int
    m: int
    segment: str = Field(index=True, max_length=32)
    # When the customer entered the segment they are in (the refresh that first saw it).
    segment_since: datetime = _when()
    p_active: float
    p_order: float
    expected_orders: float
    expected_next_order_at: datetime | None = _when(nullable=True, default=None)
    # The expected next order last announced by a next_order_expected event: a model's small
    # daily drift is no news; a move of insight_next_order_shift_days is.
    announced_next_order_at: datetime | None = _when(nullable=True, default=None)
    expected_value: float
    weekday: int
    hour: int
    season: str = Field(max_length=16)
    sale_buyer: bool
    favourite_category: str | None = Field(default=None, max_length=64)
    breadth: str = Field(max_length=16)
    model: str = Field(max_length=64)
    # Ranked skus from trouw.domain.insight.recommend (what the customer did not buy yet).
    recommendations: list[str] = _json(default_factory=list)


class InsightSegmentChange(SQLModel, table=True):
    """A customer's move from one segment to another, as one refresh saw it (append-only)."""

    __tablename__ = "insight_segment_change"
    __table_args__ = (sa.UniqueConstraint("customer_id", "refresh_id"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(index=True, max_length=64)
    refresh_id: str = Field(max_length=100)
    at: datetime = _when(index=True)
    segment: str = Field(max_length=32)
    previous_segment: str | None = Field(default=None, max_length=32)


class InsightRefresh(SQLModel, table=True):
    """One insight refresh: when, as of which moment, how many customers, how long it took."""

    __tablename__ = "insight_refresh"

    id: str = Field(primary_key=True, max_length=100)
    as_of: datetime = _when()
    horizon_days: int
    started_at: datetime = _when()
    scored_at: datetime | None = _when(nullable=True, default=None)
    finished_at: datetime | None = _when(nullable=True, default=None)
    status: str = Field(default="running", max_length=16)  # running | done
    # The first refresh of a database records segments without emitting events (see
    # trouw/domain/insight/store.py): years of imported history must not start a journey for everyone.
    baseline: bool = False
    customers: int = 0
    changes: int = 0
    # Best sellers at the refresh: the recommendations of a customer the refresh did not know.
    popular: list[str] = _json(default_factory=list)
    # Which model answered expected orders and P(order), why, and the backtest's scores
    # (trouw.domain.insight.choice.ModelChoice.as_dict(); {} for refreshes before it was recorded).
    models: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False, server_default="{}")
    )


class InsightStage(SQLModel, table=True):
    """Scores of a running refresh, waiting to be applied chunk by chunk (then deleted)."""

    __tablename__ = "insight_stage"

    refresh_id: str = Field(primary_key=True, max_length=100)
    customer_id: str = Field(primary_key=True, max_length=64)
    data: dict[str, Any] = _json(default_factory=dict)


class JourneyControl(SQLModel, table=True):
    """Append-only ledger of an operator's pauses and resumes of a journey; the latest row is
    its state. A paused journey starts no runs, and its running runs hold their next message."""

    __tablename__ = "journey_control"

    id: int | None = Field(default=None, primary_key=True)
    journey: str = Field(index=True, max_length=64)
    paused: bool
    at: datetime = _when()
    by: str = Field(max_length=100)  # cli:<user> or api:<key name>
    reason: str | None = Field(default=None, max_length=500)


class ContactPause(SQLModel, table=True):
    """Append-only ledger of an operator's pauses of one customer's non-transactional messages
    (a complaint), kept like the consent ledger; the latest row is the state."""

    __tablename__ = "contact_pause"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(index=True, max_length=64)
    paused: bool
    at: datetime = _when()
    by: str = Field(max_length=100)  # cli:<user> or api:<key name>
    reason: str | None = Field(default=None, max_length=500)


class SyncMark(SQLModel, table=True):
    """How far a background reader has come (the run-record reconciler's close-time mark)."""

    __tablename__ = "sync_mark"

    name: str = Field(primary_key=True, max_length=64)
    at: datetime = _when()


class ContentBundle(SQLModel, table=True):
    """One published version of the journeys and templates (immutable; the newest row runs)."""

    __tablename__ = "content_bundle"

    id: int | None = Field(default=None, primary_key=True)
    # trouw.domain.content.bundle_digest of the files: the same value trouw_content_info shows.
    digest: str = Field(index=True, max_length=64)
    published_at: datetime = _when(default_factory=utcnow)
    published_by: str = Field(max_length=200)
    files: int
    # zlib of a JSON object {"journeys/x.yaml": base64, "templates/...": base64}.
    payload: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class WorkerPresence(SQLModel, table=True):
    """One running worker: where it runs, the content digest it has loaded, its last heartbeat."""

    __tablename__ = "worker_presence"

    # The Temporal client identity (pid@host), as the task queue's pollers show it.
    identity: str = Field(primary_key=True, max_length=200)
    host: str = Field(max_length=200)
    pid: int
    task_queue: str = Field(max_length=200)
    # The digest of the journeys and templates it runs (trouw_content_info); None before loading.
    digest: str | None = Field(default=None, max_length=64)
    started_at: datetime = _when(default_factory=utcnow)
    seen_at: datetime = _when(default_factory=utcnow, index=True)
    # The event types its relay hands to Temporal (trouw.language.journey.interest), written by
    # the relay when they change; None: every type (not computed yet). The API hands off only
    # these at once and leaves the rest to the relay, which judges them itself.
    event_types: list[str] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))


# --- Report roll-ups (trouw/domain/measure/rollup.py) -------------------------------------------------
# Counts per UTC day, kept by database triggers (migration 0016_report_rollup) as journey runs,
# messages and engagement are written: each write appends a +1/-1 row to a *_delta table (an
# append never waits on another writer), and trouw.domain.measure.rollup.fold adds them into the *_day
# table. A report sums both. Nullable ledger columns are stored as "" (a key column cannot be
# NULL in a primary key).


class _RunKeys(SQLModel):
    day: date
    journey: str = Field(max_length=64)
    version: str = Field(max_length=64)
    status: str = Field(max_length=16)


class _StepKeys(SQLModel):
    day: date
    journey: str = Field(max_length=64)
    journey_version: str = Field(max_length=64)
    step: str = Field(max_length=64)
    channel: str = Field(max_length=8)


class _MessageKeys(_StepKeys):
    state: str = Field(max_length=16)
    decision: str = Field(max_length=16)
    reason: str = Field(max_length=64)
    deferred: bool


class _EngagedKeys(_StepKeys):
    kind: str = Field(max_length=16)


def _keyed_by(keys: type[SQLModel]) -> tuple[sa.PrimaryKeyConstraint]:
    return (sa.PrimaryKeyConstraint(*keys.model_fields),)


class ReportRunDay(_RunKeys, table=True):
    """Journey runs started per UTC day, journey, version and status."""

    __tablename__ = "report_run_day"
    __table_args__ = _keyed_by(_RunKeys)

    runs: int


class ReportRunDelta(_RunKeys, table=True):
    """A change to report_run_day not yet folded in (written by the journey_run triggers)."""

    __tablename__ = "report_run_delta"

    id: int | None = Field(default=None, primary_key=True)
    n: int


class ReportMessageDay(_MessageKeys, table=True):
    """Messages created per UTC day and journey, version, step, channel, outcome, deferral."""

    __tablename__ = "report_message_day"
    __table_args__ = _keyed_by(_MessageKeys)

    messages: int


class ReportMessageDelta(_MessageKeys, table=True):
    """A change to report_message_day not yet folded in (written by the message triggers)."""

    __tablename__ = "report_message_delta"

    id: int | None = Field(default=None, primary_key=True)
    n: int


class ReportEngagementDay(_EngagedKeys, table=True):
    """Messages with engagement of a kind on a UTC day (each message once per kind and day)."""

    __tablename__ = "report_engagement_day"
    __table_args__ = _keyed_by(_EngagedKeys)

    messages: int


class ReportEngagementDelta(_EngagedKeys, table=True):
    """A change to report_engagement_day not yet folded in (written by the engagement triggers)."""

    __tablename__ = "report_engagement_delta"

    id: int | None = Field(default=None, primary_key=True)
    n: int


class ReportEngagementMultiday(SQLModel, table=True):
    """A message with engagement of one kind on more than one UTC day: a report over several
    days counts it once, so it reads the engagement of those whose days meet its period
    (never removed nor narrowed: a message listed here that no longer spans those days is
    still counted right, only read)."""

    __tablename__ = "report_engagement_multiday"

    message_key: str = Field(primary_key=True, max_length=300)
    kind: str = Field(primary_key=True, max_length=16)
    first_day: date  # UTC days of its first and last engagement of this kind (or wider)
    last_day: date = Field(index=True)


# Kept by the triggers from the ledgers: a copy of the ledgers' rows brings its own roll-ups.
ROLLUP_TABLES = frozenset(
    model.__tablename__
    for model in (
        ReportRunDay,
        ReportRunDelta,
        ReportMessageDay,
        ReportMessageDelta,
        ReportEngagementDay,
        ReportEngagementDelta,
        ReportEngagementMultiday,
    )
)
