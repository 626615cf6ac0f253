"""The consent and contact policy: one pure function says send, suppress (why) or defer (until)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trouw.language.holidays import SUPPORTED_COUNTRIES, is_public_holiday
from trouw.language.vocabulary import Category, Channel

Action = Literal["send", "suppress", "defer"]
SuppressionReason = Literal[
    "unsubscribe",
    "hard_bounce",
    "spam_complaint",
    "sms_stop",
    "invalid_address",
    "erased",
    "operator_pause",
]

# Stable machine codes of Decision.reason; docs/policy.md explains each one.
REASON_CODES: frozenset[str] = frozenset(
    {
        "no_address",
        "suppressed_erased",
        "suppressed_hard_bounce",
        "suppressed_invalid_address",
        "suppressed_spam_complaint",
        "suppressed_sms_stop",
        "suppressed_unsubscribe",
        "suppressed_operator_pause",
        "no_promotional_opt_in",
        "service_objection",
        "service_cutoff_passed",
        "frequency_cap",
        "smart_sending",
        "quiet_hours",
    }
)


@dataclass(frozen=True)
class SendingHours:
    """Local wall-clock times in which a message may go out: from `start` up to, not including,
    `end`; a window may cross midnight, and start == end means any time of any day."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> SendingHours:
        """`always`, or `HH:MM-HH:MM` (e.g. `08:00-21:00`; `21:00-08:00` crosses midnight)."""
        value = text.strip().lower()
        if value == "always":
            return ALWAYS
        parts = value.split("-")
        try:
            if len(parts) != 2:
                raise ValueError
            start, end = (time.fromisoformat(part.strip()) for part in parts)
        except ValueError:
            raise ValueError(
                f"sending hours {text!r}: write HH:MM-HH:MM (e.g. 08:00-21:00) or always"
            ) from None
        return cls(start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0))

    @property
    def always(self) -> bool:
        return self.start == self.end

    def allows(self, clock: time) -> bool:
        start, end = self.start, self.end
        if start == end:
            return True
        if start < end:
            return start <= clock < end
        return clock >= start or clock < end  # the window crosses midnight

    def __str__(self) -> str:
        if self.always:
            return "always"
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


ALWAYS = SendingHours(time(0), time(0))
DAYTIME = SendingHours(time(8), time(21))

# Which categories each suppression stops on its channel. An unsubscribe is a withdrawal of
# consent, not a dead address: a receipt is still owed. So is an erasure: the address outlives
# the erased customer only as a hash, and a person who comes back with it and buys again is
# owed a receipt, never promotions or service mail (docs/gdpr.md). An erased customer's own
# row has no address left, so it gets nothing either way. Everything else either means the
# address does not work (bounce, invalid) or the provider will refuse the message anyway
# (SendGrid drops mail to spam reporters, carriers block SMS after STOP).
SUPPRESSION_STOPS: Mapping[SuppressionReason, frozenset[Category]] = {
    "erased": frozenset({"service", "promotional"}),
    "hard_bounce": frozenset({"transactional", "service", "promotional"}),
    "invalid_address": frozenset({"transactional", "service", "promotional"}),
    "spam_complaint": frozenset({"transactional", "service", "promotional"}),
    "sms_stop": frozenset({"transactional", "service", "promotional"}),
    "unsubscribe": frozenset({"service", "promotional"}),
    # An operator's pause of one customer (a complaint): lifted by a resume, unlike the rest.
    "operator_pause": frozenset({"service", "promotional"}),
}

# When several suppressions apply, the first one here names the reason: the most final first.
_SUPPRESSION_PRECEDENCE: tuple[SuppressionReason, ...] = (
    "erased",
    "hard_bounce",
    "invalid_address",
    "spam_complaint",
    "sms_stop",
    "unsubscribe",
    "operator_pause",
)

# Deferral causes, in the order that names the reason when several apply.
_DEFER_PRECEDENCE = ("frequency_cap", "smart_sending", "quiet_hours")


class PolicySettings(Protocol):
    """The policy fields of trouw.settings.Settings (a protocol, so this module stays pure)."""

    @property
    def service_cutoff_days(self) -> int: ...
    @property
    def smart_sending_hours(self) -> float: ...
    @property
    def promotional_cap_count(self) -> int: ...
    @property
    def promotional_cap_days(self) -> int: ...
    @property
    def sending_hours_email_transactional(self) -> str: ...
    @property
    def sending_hours_email_service(self) -> str: ...
    @property
    def sending_hours_email_promotional(self) -> str: ...
    @property
    def sending_hours_sms_transactional(self) -> str: ...
    @property
    def sending_hours_sms_service(self) -> str: ...
    @property
    def sending_hours_sms_promotional(self) -> str: ...
    @property
    def quiet_on_sundays(self) -> bool: ...
    @property
    def quiet_on_holidays(self) -> bool: ...


@dataclass(frozen=True)
class PolicyConfig:
    """The policy's knobs; defaults equal the TROUW_* setting defaults."""

    service_cutoff_days: int = 180
    smart_sending_hours: float = 16.0
    promotional_cap_count: int = 2
    promotional_cap_days: int = 7
    # Per channel and category, in the customer's own zone; a receipt by email goes out at once.
    sending_hours_email_transactional: SendingHours = ALWAYS
    sending_hours_email_service: SendingHours = DAYTIME
    sending_hours_email_promotional: SendingHours = DAYTIME
    sending_hours_sms_transactional: SendingHours = DAYTIME
    sending_hours_sms_service: SendingHours = DAYTIME
    sending_hours_sms_promotional: SendingHours = DAYTIME
    quiet_on_sundays: bool = False  # on these days only messages sent `always` go out
    quiet_on_holidays: bool = False

    def sending_hours(self, channel: Channel, category: Category) -> SendingHours:
        hours: SendingHours = getattr(self, f"sending_hours_{channel}_{category}")
        return hours

    @classmethod
    def from_settings(cls, settings: PolicySettings) -> PolicyConfig:
        return cls(
            service_cutoff_days=settings.service_cutoff_days,
            smart_sending_hours=settings.smart_sending_hours,
            promotional_cap_count=settings.promotional_cap_count,
            promotional_cap_days=settings.promotional_cap_days,
            sending_hours_email_transactional=SendingHours.parse(
                settings.sending_hours_email_transactional
            ),
            sending_hours_email_service=SendingHours.parse(settings.sending_hours_email_service),
            sending_hours_email_promotional=SendingHours.parse(
                settings.sending_hours_email_promotional
            ),
            sending_hours_sms_transactional=SendingHours.parse(
                settings.sending_hours_sms_transactional
            ),
            sending_hours_sms_service=SendingHours.parse(settings.sending_hours_sms_service),
            sending_hours_sms_promotional=SendingHours.parse(
                settings.sending_hours_sms_promotional
            ),
            quiet_on_sundays=settings.quiet_on_sundays,
            quiet_on_holidays=settings.quiet_on_holidays,
        )


@dataclass(frozen=True)
class MessageFacts:
    """The message about to be sent, as the journey step describes it."""

    category: Category
    channel: Channel
    journey: str
    triggered_at: datetime  # the purchase or event that started this journey run
    service_cutoff_days: int | None = None  # the journey's own cutoff; overrides the config
    promotional_when_busy: Literal["skip", "defer"] = "skip"
    defer_deadline: datetime | None = None  # a promotional message is never deferred past this


@dataclass(frozen=True)
class Suppression:
    """A recorded, permanent stop on a channel (or on all channels)."""

    channel: Channel | Literal["all"]
    reason: SuppressionReason
    at: datetime


@dataclass(frozen=True)
class RecipientState:
    """What the policy needs to know about the customer, read at send time."""

    email: str | None
    phone: str | None
    timezone: str  # IANA name, e.g. Europe/Brussels
    country: str | None  # BE, NL or FR (from the locale) for public holidays; others have none
    promotional_opt_in: Mapping[Channel, bool]
    service_objection: Mapping[Channel, bool]  # unsubscribed from service messages on a channel
    suppressions: Sequence[Suppression] = ()


@dataclass(frozen=True)
class RecentMessage:
    """A message actually sent to this customer before now."""

    at: datetime
    channel: Channel
    category: Category


@dataclass(frozen=True)
class Decision:
    """The verdict: `reason` is a stable code (None when sent), `text` a sentence with figures.

    `until` is in UTC (see next_sending_time); `text` shows it in the customer's zone.
    """

    action: Action
    reason: str | None = None
    until: datetime | None = None
    text: str = "allowed"

    @property
    def code(self) -> str | None:
        return self.reason

    def explain(self) -> str:
        return self.text


def decide(
    message: MessageFacts,
    recipient: RecipientState,
    recent: Sequence[RecentMessage],
    now: datetime,
    config: PolicyConfig,
) -> Decision:
    """Send, suppress or defer one message; pure: every fact, including `now`, is passed in.

    Checks run in this order, so the reason given is the most useful one: suppression, address,
    consent, service cutoff, frequency cap, smart sending, sending hours (docs/policy.md).
    """
    _require_aware(now, "now")
    _require_aware(message.triggered_at, "message.triggered_at")
    if message.defer_deadline is not None:
        _require_aware(message.defer_deadline, "message.defer_deadline")
    for item in recent:
        _require_aware(item.at, "recent message time")
    zone = _zone(recipient.timezone)
    now = now.astimezone(UTC)
    category, channel = message.category, message.channel

    blocking = _blocking_suppression(recipient.suppressions, channel, category)
    if blocking is not None:
        when = _fmt(blocking.at, zone) if blocking.at.tzinfo else blocking.at.isoformat()
        return _suppress(
            f"suppressed_{blocking.reason}",
            f"{channel} suppressed since {when} ({blocking.reason.replace('_', ' ')}); "
            f"no {category} {channel} is sent",
        )

    address = recipient.email if channel == "email" else recipient.phone
    if not _usable_address(channel, address):
        return _suppress("no_address", f"no valid {_address_name(channel)} for this customer")

    if category == "promotional" and not recipient.promotional_opt_in.get(channel, False):
        return _suppress("no_promotional_opt_in", f"no recorded opt-in for promotional {channel}")
    if category == "service" and recipient.service_objection.get(channel, False):
        return _suppress(
            "service_objection", f"the customer objected to service messages by {channel}"
        )

    cutoff: datetime | None = None
    if category == "service":
        days = message.service_cutoff_days
        days = config.service_cutoff_days if days is None else days
        cutoff = message.triggered_at.astimezone(UTC) + timedelta(days=days)
        if now > cutoff:
            return _suppress(
                "service_cutoff_passed",
                f"service cutoff of {days} days after {_fmt(message.triggered_at, zone)} "
                f"passed on {_fmt(cutoff, zone)}",
            )

    if category == "transactional":
        hours = config.sending_hours(channel, category)
        until = next_sending_time(now, recipient.timezone, recipient.country, hours, config)
        if until == now:
            return Decision("send")
        return _defer(
            "quiet_hours", until, _quiet_text(config, hours, message, recipient, zone, until)
        )

    return _decide_busy(message, recipient, recent, now, config, zone, cutoff)


def _decide_busy(
    message: MessageFacts,
    recipient: RecipientState,
    recent: Sequence[RecentMessage],
    now: datetime,
    config: PolicyConfig,
    zone: ZoneInfo,
    cutoff: datetime | None,
) -> Decision:
    """Frequency cap, smart sending and sending hours for service and promotional messages."""
    category, channel = message.category, message.channel
    hours = config.sending_hours(channel, category)
    skip_when_busy = category == "promotional" and message.promotional_when_busy == "skip"
    sent = [m for m in recent if m.at.astimezone(UTC) <= now]

    cap_free = now
    cap_text = ""
    if category == "promotional":
        cap_text = (
            f"frequency cap of {config.promotional_cap_count} promotional messages "
            f"per {config.promotional_cap_days} days reached"
        )
        free = _cap_free_at(sent, now, config)
        if free is None:
            return _suppress("frequency_cap", cap_text)
        cap_free = free

    last = max(
        (
            m.at.astimezone(UTC)
            for m in sent
            if m.channel == channel and m.category != "transactional"
        ),
        default=None,
    )
    smart_free = now if last is None else last + timedelta(hours=config.smart_sending_hours)
    smart_text = (
        f"smart sending: last {channel} at {_fmt(last, zone)}, "
        f"{config.smart_sending_hours:g} h between non-transactional messages"
        if last is not None
        else ""
    )

    # Move t forward until every constraint holds. Cap and smart sending, once met, stay met
    # as t grows; sending hours are re-applied after each move, so two rounds reach a fixed
    # point. A "skip" promotional message is judged at the first moment in sending hours, because
    # a deferral there would find it free: decide(until) must agree with decide(now).
    causes: list[str] = []
    t = now
    for _ in range(8):
        start = t
        q = next_sending_time(t, recipient.timezone, recipient.country, hours, config)
        if q > t:
            causes.append("quiet_hours")
            t = q
        if cap_free > t:
            if skip_when_busy:
                return _suppress("frequency_cap", cap_text)
            causes.append("frequency_cap")
            t = cap_free
        if smart_free > t:
            if skip_when_busy:
                return _suppress("smart_sending", smart_text)
            causes.append("smart_sending")
            t = smart_free
        if t == start:
            break

    if t == now:
        return Decision("send")

    code = next(c for c in _DEFER_PRECEDENCE if c in causes)
    parts = []
    if "frequency_cap" in causes:
        parts.append(cap_text)
    if "smart_sending" in causes:
        parts.append(smart_text)
    if "quiet_hours" in causes:
        parts.append(_quiet_text(config, hours, message, recipient, zone, None))
    why = "; ".join(parts)

    if cutoff is not None and t > cutoff:
        return _suppress(
            "service_cutoff_passed",
            f"{why}; the next allowed moment {_fmt(t, zone)} is after the service cutoff "
            f"{_fmt(cutoff, zone)}",
        )
    deadline = message.defer_deadline
    if category == "promotional" and deadline is not None and t > deadline.astimezone(UTC):
        return _suppress(
            code,
            f"{why}; the next allowed moment {_fmt(t, zone)} is after the deadline "
            f"{_fmt(deadline, zone)}",
        )
    return _defer(code, t, f"{why}; deferred to {_fmt(t, zone)}")


def _cap_free_at(
    sent: Sequence[RecentMessage], now: datetime, config: PolicyConfig
) -> datetime | None:
    """The first moment >= now with room under the promotional cap; None if never (cap 0)."""
    if config.promotional_cap_count <= 0:
        return None
    window = timedelta(days=config.promotional_cap_days)
    # Rolling window (now - window, now], over all channels.
    in_window = sorted(
        (m.at.astimezone(UTC) for m in sent if m.category == "promotional"),
        reverse=True,
    )
    in_window = [at for at in in_window if at > now - window]
    if len(in_window) < config.promotional_cap_count:
        return now
    # Room opens once the cap-th most recent message leaves the window.
    return in_window[config.promotional_cap_count - 1] + window


def is_quiet(
    at: datetime, timezone: str, country: str | None, hours: SendingHours, config: PolicyConfig
) -> bool:
    """Whether `at` is outside `hours` (or on a quiet day) in the customer's zone."""
    _require_aware(at, "at")
    return _is_quiet_local(at.astimezone(_zone(timezone)), country, hours, config)


def next_sending_time(
    at: datetime, timezone: str, country: str | None, hours: SendingHours, config: PolicyConfig
) -> datetime:
    """The first moment >= `at` within `hours` and not on a quiet day; `at` itself when allowed.

    The result is in UTC: a local time in the repeated autumn hour carries fold=1, and Python
    then calls it unequal to every other zone's reading of the same instant (PEP 495).
    """
    _require_aware(at, "at")
    zone = _zone(timezone)
    at = at.astimezone(UTC)
    if not _is_quiet_local(at.astimezone(zone), country, hours, config):
        return at
    # Allowed stretches can only begin at local midnight, at the start of sending hours, or at a
    # DST jump over one of them; try those in order, day by day (holidays never last a year).
    first_day = at.astimezone(zone).date()
    for offset in range(0, 400):
        day = first_day + timedelta(days=offset)
        candidates = sorted(
            {
                instant
                for wall in (time(0, 0), hours.start)
                for instant in _instants_at_or_after_wall(day, wall, zone)
            }
        )
        for instant in candidates:
            if instant > at and not _is_quiet_local(
                instant.astimezone(zone), country, hours, config
            ):
                return instant
    raise ValueError("no moment in sending hours within 400 days; check the quiet settings")


def _is_quiet_local(
    local: datetime, country: str | None, hours: SendingHours, config: PolicyConfig
) -> bool:
    if hours.always:
        return False
    if _is_quiet_day(local.date(), country, config):
        return True
    return not hours.allows(local.time())


def _is_quiet_day(day: date, country: str | None, config: PolicyConfig) -> bool:
    if config.quiet_on_sundays and day.weekday() == 6:
        return True
    if config.quiet_on_holidays and country is not None:
        code = country.upper()
        if code in SUPPORTED_COUNTRIES and is_public_holiday(code, day):
            return True
    return False


def _instants_at_or_after_wall(day: date, wall: time, zone: ZoneInfo) -> set[datetime]:
    """UTC instants at which the local clock first reads >= day+wall (both folds; DST gaps)."""
    naive = datetime.combine(day, wall)
    readings = {naive.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
    found = {instant for instant in readings if _wall(instant, zone) >= naive}
    if len(found) == len(readings):
        return found
    # `wall` falls in a DST gap: the clock jumps over it, so the first instant reading >= wall
    # is the jump itself, between the two fold readings. Transitions fall on whole seconds.
    low, high = int(min(readings).timestamp()), int(max(readings).timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= naive:
            high = middle
        else:
            low = middle
    return {*found, datetime.fromtimestamp(high, UTC)}


def _wall(instant: datetime, zone: tzinfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _blocking_suppression(
    suppressions: Sequence[Suppression], channel: Channel, category: Category
) -> Suppression | None:
    # Every listed suppression counts, whatever its `at`: the list is read at send time, and a
    # clock a few seconds behind must never let a message through after an unsubscribe.
    applying = [
        s
        for s in suppressions
        if s.channel in (channel, "all") and category in SUPPRESSION_STOPS[s.reason]
    ]
    for reason in _SUPPRESSION_PRECEDENCE:
        for suppression in applying:
            if suppression.reason == reason:
                return suppression
    return None


def _usable_address(channel: Channel, address: str | None) -> bool:
    if address is None or not address.strip():
        return False
    return "@" in address if channel == "email" else True


def _address_name(channel: Channel) -> str:
    return "email address" if channel == "email" else "phone number"


def _quiet_text(
    config: PolicyConfig,
    hours: SendingHours,
    message: MessageFacts,
    recipient: RecipientState,
    zone: ZoneInfo,
    until: datetime | None,
) -> str:
    start, end = hours.start.strftime("%H:%M"), hours.end.strftime("%H:%M")
    text = f"{message.category} {message.channel} only {start}–{end} {zone.key}"
    days = []
    if config.quiet_on_sundays:
        days.append("Sundays")
    if config.quiet_on_holidays and recipient.country:
        days.append(f"public holidays ({recipient.country.upper()})")
    if days:
        text += ", not on " + " or ".join(days)
    if until is not None:
        text += f"; deferred to {_fmt(until, zone)}"
    return text


def _fmt(moment: datetime | None, zone: ZoneInfo) -> str:
    """`2026-03-03 08:00 +01:00` in the customer's zone."""
    if moment is None:
        return "never"
    local = moment.astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


def _suppress(code: str, text: str) -> Decision:
    return Decision("suppress", code, None, text)


def _defer(code: str, until: datetime, text: str) -> Decision:
    return Decision("defer", code, until, text)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
