"""Properties of decide() that must hold for every input hypothesis can think of."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trouw.language.holidays import is_public_holiday
from trouw.language.policy import (
    REASON_CODES,
    MessageFacts,
    PolicyConfig,
    RecentMessage,
    RecipientState,
    SendingHours,
    Suppression,
    decide,
    next_sending_time,
)
from trouw.language.vocabulary import CATEGORIES, CHANNELS

# Zones with ordinary, half-hour and 30-minute-DST offsets, north and south.
ZONES = (
    "Europe/Brussels",
    "Europe/Amsterdam",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
    "UTC",
)
REASONS = ("unsubscribe", "hard_bounce", "spam_complaint", "sms_stop", "invalid_address", "erased")

# Whole minutes from 2024 to 2028: plain integers draw far faster than st.datetimes.
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
instants = st.integers(0, 5 * 366 * 24 * 60).map(lambda m: EPOCH + timedelta(minutes=m))
wall_times = st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60))

sending_hours = st.one_of(
    st.just(SendingHours(time(8), time(21))),
    st.just(SendingHours(time(0), time(0))),
    st.builds(SendingHours, wall_times, wall_times),
)
configs = st.builds(
    PolicyConfig,
    service_cutoff_days=st.integers(1, 400),
    smart_sending_hours=st.sampled_from([0.0, 0.5, 4.0, 16.0, 48.0]),
    promotional_cap_count=st.integers(0, 4),
    promotional_cap_days=st.integers(1, 14),
    sending_hours_email_transactional=sending_hours,
    sending_hours_email_service=sending_hours,
    sending_hours_email_promotional=sending_hours,
    sending_hours_sms_transactional=sending_hours,
    sending_hours_sms_service=sending_hours,
    sending_hours_sms_promotional=sending_hours,
    quiet_on_sundays=st.booleans(),
    quiet_on_holidays=st.booleans(),
)


@st.composite
def situations(draw):
    now = draw(instants)
    config = draw(configs)
    category = draw(st.sampled_from(CATEGORIES))
    channel = draw(st.sampled_from(CHANNELS))
    deadline_hours = draw(st.one_of(st.none(), st.integers(0, 24 * 10)))
    facts = MessageFacts(
        category=category,
        channel=channel,
        journey="j",
        triggered_at=now - timedelta(hours=draw(st.integers(0, 24 * 400))),
        service_cutoff_days=draw(st.one_of(st.none(), st.integers(1, 200))),
        promotional_when_busy=draw(st.sampled_from(["skip", "defer"])),
        defer_deadline=None if deadline_hours is None else now + timedelta(hours=deadline_hours),
    )
    suppressions = draw(
        st.lists(
            st.builds(
                Suppression,
                channel=st.sampled_from(["email", "sms", "all"]),
                reason=st.sampled_from(REASONS),
                at=st.just(now - timedelta(days=1)),
            ),
            max_size=3,
        )
    )
    recipient = RecipientState(
        email=draw(st.sampled_from(["a@example.com", None])),
        phone=draw(st.sampled_from(["+32470000001", None])),
        timezone=draw(st.sampled_from(ZONES)),
        country=draw(st.sampled_from(["BE", "NL", "FR", None, "DE"])),
        promotional_opt_in={c: draw(st.booleans()) for c in CHANNELS},
        service_objection={c: draw(st.booleans()) for c in CHANNELS},
        suppressions=suppressions,
    )
    recent = draw(
        st.lists(
            st.builds(
                RecentMessage,
                at=st.integers(0, 60 * 24 * 10).map(lambda m: now - timedelta(minutes=m)),
                channel=st.sampled_from(CHANNELS),
                category=st.sampled_from(CATEGORIES),
            ),
            max_size=6,
        )
    )
    return facts, recipient, recent, now, config


def quiet(
    moment: datetime, recipient: RecipientState, config: PolicyConfig, channel: str, category: str
) -> bool:
    """Outside sending hours, written independently of the module under test."""
    hours = getattr(config, f"sending_hours_{channel}_{category}")
    start, end = hours.start, hours.end
    if start == end:
        return False  # any time, any day
    local = moment.astimezone(ZoneInfo(recipient.timezone))
    if config.quiet_on_sundays and local.weekday() == 6:
        return True
    country = recipient.country
    if config.quiet_on_holidays and country in ("BE", "NL", "FR"):
        if is_public_holiday(country, local.date()):
            return True
    clock = local.time()
    if start < end:
        return not start <= clock < end
    return end <= clock < start


# No example database: the suite must leave no files behind in a shared checkout.
PROPERTY = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY
@given(situations())
def test_no_promotional_message_is_sent_without_opt_in(situation):
    facts, recipient, recent, now, config = situation
    decision = decide(facts, recipient, recent, now, config)
    if facts.category == "promotional" and not recipient.promotional_opt_in[facts.channel]:
        assert decision.action == "suppress"


@PROPERTY
@given(situations())
def test_only_transactional_email_passes_an_unsubscribe_and_nothing_passes_a_stop(situation):
    facts, recipient, recent, now, config = situation
    decision = decide(facts, recipient, recent, now, config)
    applying = {s.reason for s in recipient.suppressions if s.channel in (facts.channel, "all")}
    passable = {"unsubscribe", "erased"}  # both still let a receipt through
    if applying - passable:
        assert decision.action == "suppress"
    if applying & passable and facts.category != "transactional":
        assert decision.action == "suppress"
    if decision.action != "suppress" and applying:
        assert applying <= passable and facts.category == "transactional"


@PROPERTY
@given(situations())
def test_a_deferral_is_later_in_sending_hours_and_then_sends(situation):
    facts, recipient, recent, now, config = situation
    decision = decide(facts, recipient, recent, now, config)
    assert decision.reason is None or decision.reason in REASON_CODES
    if decision.action != "defer":
        assert decision.until is None
        return
    assert decision.until is not None and decision.until > now
    assert not quiet(decision.until, recipient, config, facts.channel, facts.category)
    assert decide(facts, recipient, recent, decision.until, config).action == "send"


@PROPERTY
@given(situations())
def test_nothing_is_sent_outside_its_sending_hours(situation):
    facts, recipient, recent, now, config = situation
    decision = decide(facts, recipient, recent, now, config)
    if decision.action == "send":
        assert not quiet(now, recipient, config, facts.channel, facts.category)


@PROPERTY
@given(situations())
def test_service_after_its_cutoff_never_sends_or_defers_past_it(situation):
    facts, recipient, recent, now, config = situation
    decision = decide(facts, recipient, recent, now, config)
    if facts.category != "service":
        return
    days = facts.service_cutoff_days or config.service_cutoff_days
    cutoff = facts.triggered_at + timedelta(days=days)
    if now > cutoff:
        # Suppressed; the reason may be an earlier check (suppression, address, objection).
        assert decision.action == "suppress"
    if decision.action == "defer":
        assert decision.until is not None and decision.until <= cutoff


@PROPERTY
@given(situations())
def test_transactional_is_never_stopped_by_caps_or_smart_sending(situation):
    facts, recipient, recent, now, config = situation
    decision = decide(facts, recipient, recent, now, config)
    if facts.category == "transactional":
        assert decision.reason not in {"frequency_cap", "smart_sending", "service_cutoff_passed"}
        assert decision.reason not in {"no_promotional_opt_in", "service_objection"}


@PROPERTY
@given(situations())
def test_a_promotional_deferral_never_passes_its_deadline(situation):
    facts, recipient, recent, now, config = situation
    decision = decide(facts, recipient, recent, now, config)
    if facts.category == "promotional" and decision.action == "defer" and facts.defer_deadline:
        assert decision.until is not None and decision.until <= facts.defer_deadline


@settings(max_examples=60, deadline=None, database=None)
@given(
    instants,
    st.sampled_from(ZONES),
    st.sampled_from(["BE", "NL", "FR", None]),
    configs,
    st.sampled_from(CHANNELS),
    st.sampled_from(CATEGORIES),
)
def test_the_next_sending_time_is_the_first_allowed_minute(
    at, zone, country, config, channel, category
):
    recipient = RecipientState(None, None, zone, country, {}, {})
    hours = config.sending_hours(channel, category)
    until = next_sending_time(at, zone, country, hours, config)
    assert until >= at and not quiet(until, recipient, config, channel, category)
    # Every minute before it is quiet: nothing earlier was allowed. (Zones and settings here
    # change on whole minutes, so a minute grid finds every opening.)
    moment = at
    while moment < until:
        assert quiet(moment, recipient, config, channel, category), moment
        moment += timedelta(minutes=1)
