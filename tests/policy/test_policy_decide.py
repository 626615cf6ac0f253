"""decide(): the whole rule table, DST edges, quiet days, deferrals and their limits."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from trouw.language.policy import (
    REASON_CODES,
    SUPPRESSION_STOPS,
    Decision,
    MessageFacts,
    PolicyConfig,
    RecentMessage,
    RecipientState,
    SendingHours,
    Suppression,
    decide,
    is_quiet,
    next_sending_time,
)

POLICY_DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
BRUSSELS = ZoneInfo("Europe/Brussels")
CONFIG = PolicyConfig()
SMS_HOURS = CONFIG.sending_hours("sms", "transactional")
# A Wednesday, well clear of DST changes and holidays.
DAY_TIME = datetime(2026, 3, 4, 14, 0, tzinfo=BRUSSELS)
NIGHT_TIME = datetime(2026, 3, 4, 22, 30, tzinfo=BRUSSELS)
SUPPRESSIONS = (
    None,
    "unsubscribe",
    "hard_bounce",
    "spam_complaint",
    "sms_stop",
    "invalid_address",
    "erased",
    "operator_pause",
)


def recipient(**changes: object) -> RecipientState:
    base = RecipientState(
        email="bart@example.com",
        phone="+32470000001",
        timezone="Europe/Brussels",
        country="BE",
        promotional_opt_in={"email": True, "sms": True},
        service_objection={},
        suppressions=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def message(
    category: str = "promotional", channel: str = "email", **changes: object
) -> MessageFacts:
    base = MessageFacts(
        category=category,  # type: ignore[arg-type]
        channel=channel,  # type: ignore[arg-type]
        journey="after_purchase",
        triggered_at=DAY_TIME - timedelta(days=10),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- the table -----------------------------------------------------------------------------

CASES = list(
    itertools.product(
        ("transactional", "service", "promotional"),
        ("email", "sms"),
        (True, False),  # consent: opted in to promotional, no objection to service
        SUPPRESSIONS,
        (False, True),  # service cutoff passed
        (False, True),  # promotional cap reached
        (False, True),  # a non-transactional message on this channel two hours ago
        (False, True),  # now is outside sending hours (22:30)
    )
)


def expected(category, channel, consent, suppression, cutoff_passed, capped, smart, quiet):
    """The rules of docs/policy.md, written as plainly as possible."""
    if suppression is not None:
        on_this_channel = suppression != "sms_stop" or channel == "sms"
        stops = (
            suppression not in ("unsubscribe", "erased", "operator_pause")
            or category != "transactional"
        )
        if on_this_channel and stops:
            return "suppress", f"suppressed_{suppression}"
    if category == "promotional" and not consent:
        return "suppress", "no_promotional_opt_in"
    if category == "service" and not consent:
        return "suppress", "service_objection"
    if category == "service" and cutoff_passed:
        return "suppress", "service_cutoff_passed"
    if category == "promotional" and capped:
        return "suppress", "frequency_cap"
    if category != "transactional" and smart:
        return ("suppress" if category == "promotional" else "defer"), "smart_sending"
    if quiet and (channel, category) != ("email", "transactional"):
        return "defer", "quiet_hours"
    return "send", None


@pytest.mark.parametrize(
    ("category", "channel", "consent", "suppression", "cutoff_passed", "capped", "smart", "quiet"),
    CASES,
)
def test_decision_table(
    category, channel, consent, suppression, cutoff_passed, capped, smart, quiet
):
    now = NIGHT_TIME if quiet else DAY_TIME
    recent = []
    if capped:
        recent += [
            RecentMessage(now - timedelta(days=3), "email", "promotional"),
            RecentMessage(now - timedelta(days=4), "sms", "promotional"),
        ]
    if smart:
        recent.append(RecentMessage(now - timedelta(hours=2), channel, "service"))
    suppressions = ()
    if suppression is not None:
        on = "sms" if suppression == "sms_stop" else channel
        suppressions = (Suppression(on, suppression, now - timedelta(days=1)),)
    person = recipient(
        promotional_opt_in={"email": consent, "sms": consent},
        service_objection={"email": not consent, "sms": not consent},
        suppressions=suppressions,
    )
    days_ago = 200 if cutoff_passed else 10
    facts = message(category, channel, triggered_at=now - timedelta(days=days_ago))

    decision = decide(facts, person, recent, now, CONFIG)

    action, code = expected(
        category, channel, consent, suppression, cutoff_passed, capped, smart, quiet
    )
    assert (decision.action, decision.code) == (action, code), decision.text
    assert decision.reason == decision.code
    assert code is None or code in REASON_CODES
    if action == "defer":
        assert decision.until is not None and decision.until > now
        assert decision.until.tzinfo is not None
        hours = CONFIG.sending_hours(channel, category)
        assert not is_quiet(decision.until, "Europe/Brussels", "BE", hours, CONFIG)
        # Re-deciding at the deferred moment sends: the deferral was to a real opening.
        assert decide(facts, person, recent, decision.until, CONFIG).action == "send"
    else:
        assert decision.until is None


def documented_suppression_stops() -> dict[str, set[str]]:
    """The suppression table of docs/policy.md: for each kind, the categories it stops."""
    lines = [line.strip() for line in POLICY_DOC.read_text(encoding="utf-8").splitlines()]
    header = next(i for i, line in enumerate(lines) if line.startswith("| suppression |"))
    columns = [cell.strip() for cell in lines[header].strip("|").split("|")]
    categories = columns[1:4]
    assert categories == ["transactional", "service", "promotional"], columns
    table: dict[str, set[str]] = {}
    for row in itertools.takewhile(lambda line: line.startswith("|"), lines[header + 2 :]):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        verdicts = [cell.strip("*") for cell in cells[1:4]]
        assert set(verdicts) <= {"send", "suppress"}, row
        kind = cells[0].strip("`")
        table[kind] = {c for c, v in zip(categories, verdicts, strict=True) if v == "suppress"}
    return table


def test_the_documented_suppression_table_is_the_one_built() -> None:
    documented = documented_suppression_stops()
    assert documented, "no suppression table found in docs/policy.md"
    assert documented == {reason: set(stops) for reason, stops in SUPPRESSION_STOPS.items()}


# --- texts and deferral moments -------------------------------------------------------------


def test_transactional_sms_in_quiet_hours_is_deferred_to_the_morning_not_dropped():
    decision = decide(message("transactional", "sms"), recipient(), [], NIGHT_TIME, CONFIG)
    assert decision == Decision(
        "defer",
        "quiet_hours",
        datetime(2026, 3, 5, 8, 0, tzinfo=BRUSSELS),
        "transactional sms only 08:00–21:00 Europe/Brussels; deferred to 2026-03-05 08:00 +01:00",
    )
    assert decision.explain() == decision.text


def test_transactional_email_ignores_quiet_hours_caps_and_smart_sending():
    recent = [
        RecentMessage(NIGHT_TIME - timedelta(minutes=m), "email", "promotional") for m in (1, 2, 3)
    ]
    decision = decide(message("transactional", "email"), recipient(), recent, NIGHT_TIME, CONFIG)
    assert decision == Decision("send")
    assert decision.reason is None


def test_email_deferred_by_smart_sending_into_the_night_waits_for_the_morning():
    # The reproduction: a service email at 09:00 after one at 08:00 was deferred to 00:00 and
    # went out at night. It now waits for the email sending hours.
    morning = datetime(2026, 3, 4, 9, 0, tzinfo=BRUSSELS)
    recent = [RecentMessage(morning - timedelta(hours=1), "email", "service")]
    decision = decide(message("service", "email"), recipient(), recent, morning, CONFIG)
    assert (decision.action, decision.code) == ("defer", "smart_sending")
    assert decision.until == datetime(2026, 3, 5, 8, 0, tzinfo=BRUSSELS)
    assert decision.text == (
        "smart sending: last email at 2026-03-04 08:00 +01:00, 16 h between non-transactional "
        "messages; service email only 08:00–21:00 Europe/Brussels; "
        "deferred to 2026-03-05 08:00 +01:00"
    )


def test_service_message_is_deferred_to_the_end_of_the_smart_sending_window():
    recent = [RecentMessage(DAY_TIME - timedelta(hours=2), "email", "promotional")]
    config = replace(CONFIG, sending_hours_email_service=SendingHours.parse("always"))
    decision = decide(message("service", "email"), recipient(), recent, DAY_TIME, config)
    assert decision.action == "defer"
    assert decision.until == DAY_TIME + timedelta(hours=14)
    assert "smart sending: last email at 2026-03-04 12:00 +01:00, 16 h" in decision.text


def test_smart_sending_then_quiet_hours_defers_to_the_morning_with_the_first_cause():
    recent = [RecentMessage(DAY_TIME - timedelta(hours=2), "sms", "service")]  # free at 04:00
    decision = decide(message("service", "sms"), recipient(), recent, DAY_TIME, CONFIG)
    assert (decision.action, decision.code) == ("defer", "smart_sending")
    assert decision.until == datetime(2026, 3, 5, 8, 0, tzinfo=BRUSSELS)
    assert "service sms only 08:00–21:00" in decision.text


def test_smart_sending_is_per_channel():
    recent = [RecentMessage(DAY_TIME - timedelta(hours=1), "sms", "service")]
    assert (
        decide(message("service", "email"), recipient(), recent, DAY_TIME, CONFIG).action == "send"
    )


def test_transactional_messages_do_not_count_for_smart_sending_or_the_cap():
    recent = [
        RecentMessage(DAY_TIME - timedelta(hours=h), "email", "transactional") for h in (1, 2, 3)
    ]
    assert (
        decide(message("promotional", "email"), recipient(), recent, DAY_TIME, CONFIG).action
        == "send"
    )


def test_messages_after_now_are_ignored():
    recent = [RecentMessage(DAY_TIME + timedelta(hours=1), "email", "promotional")]
    assert (
        decide(message("service", "email"), recipient(), recent, DAY_TIME, CONFIG).action == "send"
    )


def test_smart_sending_of_zero_hours_is_off():
    recent = [RecentMessage(DAY_TIME, "email", "service")]
    config = replace(CONFIG, smart_sending_hours=0)
    assert (
        decide(message("service", "email"), recipient(), recent, DAY_TIME, config).action == "send"
    )


# --- service cutoff -------------------------------------------------------------------------


def test_service_cutoff_is_inclusive_and_the_journey_may_override_it():
    triggered = DAY_TIME - timedelta(days=30)
    on_the_day = message("service", "email", triggered_at=triggered, service_cutoff_days=30)
    assert decide(on_the_day, recipient(), [], DAY_TIME, CONFIG).action == "send"
    late = decide(on_the_day, recipient(), [], DAY_TIME + timedelta(seconds=1), CONFIG)
    assert (late.action, late.code) == ("suppress", "service_cutoff_passed")
    assert "service cutoff of 30 days after 2026-02-02 14:00 +01:00" in late.text


def test_service_deferral_past_the_cutoff_is_suppressed():
    facts = message("service", "email", triggered_at=DAY_TIME - timedelta(days=179, hours=20))
    recent = [RecentMessage(DAY_TIME - timedelta(hours=1), "email", "service")]
    decision = decide(facts, recipient(), recent, DAY_TIME, CONFIG)
    assert (decision.action, decision.code) == ("suppress", "service_cutoff_passed")
    assert "after the service cutoff" in decision.text


def test_service_sms_pushed_past_the_cutoff_by_quiet_hours_is_suppressed():
    facts = message(
        "service", "sms", triggered_at=NIGHT_TIME - timedelta(days=180) + timedelta(hours=1)
    )
    decision = decide(facts, recipient(), [], NIGHT_TIME, CONFIG)
    assert (decision.action, decision.code) == ("suppress", "service_cutoff_passed")


# --- promotional: cap and busy modes --------------------------------------------------------


def test_cap_window_is_rolling_and_a_message_exactly_cap_days_old_has_left_it():
    recent = [
        RecentMessage(DAY_TIME - timedelta(days=7), "email", "promotional"),
        RecentMessage(DAY_TIME - timedelta(days=2), "sms", "promotional"),
    ]
    assert decide(message(), recipient(), recent, DAY_TIME, CONFIG).action == "send"
    earlier = DAY_TIME - timedelta(seconds=1)
    assert decide(message(), recipient(), recent, earlier, CONFIG).code == "frequency_cap"


def test_cap_of_zero_suppresses_every_promotional_message_even_when_deferring():
    config = replace(CONFIG, promotional_cap_count=0)
    facts = message(promotional_when_busy="defer")
    decision = decide(facts, recipient(), [], DAY_TIME, config)
    assert (decision.action, decision.code) == ("suppress", "frequency_cap")


def test_promotional_defer_mode_waits_for_room_under_the_cap():
    recent = [
        RecentMessage(DAY_TIME - timedelta(days=3), "email", "promotional"),
        RecentMessage(DAY_TIME - timedelta(days=6), "sms", "promotional"),
    ]
    facts = message("promotional", "email", promotional_when_busy="defer")
    decision = decide(facts, recipient(), recent, DAY_TIME, CONFIG)
    assert (decision.action, decision.code) == ("defer", "frequency_cap")
    assert decision.until == DAY_TIME + timedelta(days=1)


def test_promotional_defer_mode_respects_its_deadline():
    recent = [RecentMessage(DAY_TIME - timedelta(hours=2), "email", "service")]
    in_time = message(promotional_when_busy="defer", defer_deadline=DAY_TIME + timedelta(days=1))
    decision = decide(in_time, recipient(), recent, DAY_TIME, CONFIG)
    assert (decision.action, decision.code, decision.until) == (
        "defer",
        "smart_sending",
        DAY_TIME + timedelta(hours=18),  # free at 04:00, sent at 08:00
    )
    too_late = replace(in_time, defer_deadline=DAY_TIME + timedelta(hours=13))
    decision = decide(too_late, recipient(), recent, DAY_TIME, CONFIG)
    assert (decision.action, decision.code) == ("suppress", "smart_sending")
    assert "after the deadline" in decision.text


def test_promotional_sms_in_quiet_hours_is_deferred_even_in_skip_mode():
    decision = decide(message("promotional", "sms"), recipient(), [], NIGHT_TIME, CONFIG)
    assert (decision.action, decision.code) == ("defer", "quiet_hours")
    deadline = message("promotional", "sms", defer_deadline=NIGHT_TIME + timedelta(hours=1))
    assert decide(deadline, recipient(), [], NIGHT_TIME, CONFIG).action == "suppress"


def test_skip_mode_judges_smart_sending_at_the_end_of_quiet_hours():
    # Free at 03:00, quiet until 08:00: by the time the SMS may go, nothing is busy.
    recent = [RecentMessage(NIGHT_TIME - timedelta(hours=11, minutes=30), "sms", "promotional")]
    decision = decide(message("promotional", "sms"), recipient(), recent, NIGHT_TIME, CONFIG)
    assert (decision.action, decision.code) == ("defer", "quiet_hours")


# --- suppressions, addresses, consent -------------------------------------------------------


def test_an_all_channel_suppression_applies_to_both_channels():
    stop = (Suppression("all", "unsubscribe", DAY_TIME),)
    for channel in ("email", "sms"):
        decision = decide(
            message("service", channel), recipient(suppressions=stop), [], DAY_TIME, CONFIG
        )
        assert decision.code == "suppressed_unsubscribe"
        assert "since 2026-03-04 14:00 +01:00" in decision.text


def test_a_suppression_on_the_other_channel_does_not_apply():
    stop = (Suppression("sms", "hard_bounce", DAY_TIME),)
    assert decide(message(), recipient(suppressions=stop), [], DAY_TIME, CONFIG).action == "send"


def test_the_most_final_suppression_names_the_reason():
    both = (Suppression("email", "unsubscribe", DAY_TIME), Suppression("all", "erased", DAY_TIME))
    decision = decide(message(), recipient(suppressions=both, email=None), [], DAY_TIME, CONFIG)
    assert decision.code == "suppressed_erased"


def test_a_suppression_recorded_a_moment_after_now_still_applies():
    stop = (Suppression("email", "unsubscribe", DAY_TIME + timedelta(seconds=5)),)
    assert (
        decide(message(), recipient(suppressions=stop), [], DAY_TIME, CONFIG).action == "suppress"
    )


@pytest.mark.parametrize(
    ("channel", "changes"),
    [
        ("email", {"email": None}),
        ("email", {"email": "  "}),
        ("email", {"email": "not-an-address"}),
        ("sms", {"phone": None}),
        ("sms", {"phone": ""}),
    ],
)
def test_no_usable_address_suppresses_even_transactional(channel, changes):
    decision = decide(message("transactional", channel), recipient(**changes), [], DAY_TIME, CONFIG)
    assert (decision.action, decision.code) == ("suppress", "no_address")


def test_opt_in_is_per_channel():
    person = recipient(promotional_opt_in={"email": True})
    assert decide(message("promotional", "email"), person, [], DAY_TIME, CONFIG).action == "send"
    assert (
        decide(message("promotional", "sms"), person, [], DAY_TIME, CONFIG).code
        == "no_promotional_opt_in"
    )


def test_service_needs_no_opt_in():
    person = recipient(promotional_opt_in={})
    assert decide(message("service", "email"), person, [], DAY_TIME, CONFIG).action == "send"


# --- quiet hours, days and DST --------------------------------------------------------------


def test_sending_hours_open_on_the_day_clocks_spring_forward():
    night = datetime(2026, 3, 28, 23, 0, tzinfo=BRUSSELS)
    decision = decide(message("transactional", "sms"), recipient(), [], night, CONFIG)
    assert decision.until == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # 08:00 CEST
    assert decision.text.endswith("deferred to 2026-03-29 08:00 +02:00")


def test_sending_hours_open_on_the_day_clocks_fall_back():
    night = datetime(2026, 10, 24, 23, 0, tzinfo=BRUSSELS)
    decision = decide(message("transactional", "sms"), recipient(), [], night, CONFIG)
    assert decision.until == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)  # 08:00 CET
    assert decision.text.endswith("deferred to 2026-10-25 08:00 +01:00")


def test_sending_hours_starting_inside_the_spring_gap_open_at_the_jump():
    hours = SendingHours(time(2, 30), time(21))
    night = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET, quiet
    until = next_sending_time(night, "Europe/Brussels", "BE", hours, CONFIG)
    assert until == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )  # 03:00 CEST, the clock jumped over 02:30


def test_sending_hours_starting_in_the_repeated_autumn_hour_open_at_its_second_pass():
    hours = SendingHours(time(2, 30), time(21))
    second_pass = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET, after 02:59 CEST
    assert is_quiet(second_pass, "Europe/Brussels", "BE", hours, CONFIG)
    until = next_sending_time(second_pass, "Europe/Brussels", "BE", hours, CONFIG)
    assert until == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET


def test_quiet_hours_follow_the_customers_own_timezone():
    person = recipient(timezone="America/New_York", country=None)
    at = datetime(2026, 3, 4, 22, 30, tzinfo=BRUSSELS)  # 16:30 in New York
    assert decide(message("transactional", "sms"), person, [], at, CONFIG).action == "send"
    at = datetime(2026, 3, 5, 12, 0, tzinfo=BRUSSELS)  # 06:00 in New York
    decision = decide(message("transactional", "sms"), person, [], at, CONFIG)
    assert decision.until == datetime(2026, 3, 5, 8, 0, tzinfo=ZoneInfo("America/New_York"))


def test_email_has_sending_hours_except_receipts():
    promotional = decide(message("promotional", "email"), recipient(), [], NIGHT_TIME, CONFIG)
    assert (promotional.action, promotional.code) == ("defer", "quiet_hours")
    assert promotional.until == datetime(2026, 3, 5, 8, 0, tzinfo=BRUSSELS)
    receipt = decide(message("transactional", "email"), recipient(), [], NIGHT_TIME, CONFIG)
    assert receipt.action == "send"


def test_sending_hours_are_per_channel_and_category():
    config = replace(
        CONFIG,
        sending_hours_email_promotional=SendingHours.parse("10:00-18:00"),
        sending_hours_sms_transactional=SendingHours.parse("always"),
    )
    nine = datetime(2026, 3, 4, 9, 0, tzinfo=BRUSSELS)
    promotional = decide(message("promotional", "email"), recipient(), [], nine, config)
    assert promotional.until == datetime(2026, 3, 4, 10, 0, tzinfo=BRUSSELS)
    assert decide(message("service", "email"), recipient(), [], nine, config).action == "send"
    receipt = decide(message("transactional", "sms"), recipient(), [], NIGHT_TIME, config)
    assert receipt.action == "send"


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("08:00-21:00", SendingHours(time(8), time(21))),
        (" 21:30 - 07:15 ", SendingHours(time(21, 30), time(7, 15))),
        ("always", SendingHours(time(0), time(0))),
        ("ALWAYS", SendingHours(time(0), time(0))),
    ],
)
def test_sending_hours_parse_and_print(text: str, hours: SendingHours) -> None:
    assert SendingHours.parse(text) == hours
    assert SendingHours.parse(str(hours)) == hours


@pytest.mark.parametrize("text", ["", "8-21", "08:00", "08:00-21:00-22:00", "25:00-08:00", "night"])
def test_bad_sending_hours_are_refused_with_the_format(text: str) -> None:
    with pytest.raises(ValueError, match=r"write HH:MM-HH:MM \(e\.g\. 08:00-21:00\) or always"):
        SendingHours.parse(text)


def test_a_bad_sending_hours_setting_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from trouw.settings import SettingsError, load_settings

    monkeypatch.setenv("TROUW_SENDING_HOURS_EMAIL_SERVICE", "8-21")
    with pytest.raises(SettingsError, match="TROUW_SENDING_HOURS_EMAIL_SERVICE: .*HH:MM-HH:MM"):
        load_settings()


def test_quiet_sundays_skip_to_monday_morning():
    config = replace(CONFIG, quiet_on_sundays=True)
    saturday_night = datetime(2026, 3, 7, 22, 0, tzinfo=BRUSSELS)
    decision = decide(message("transactional", "sms"), recipient(), [], saturday_night, config)
    assert decision.until == datetime(2026, 3, 9, 8, 0, tzinfo=BRUSSELS)
    assert ", not on Sundays" in decision.text


def test_quiet_sunday_and_easter_monday_skip_to_tuesday():
    config = replace(CONFIG, quiet_on_sundays=True, quiet_on_holidays=True)
    easter_noon = datetime(2026, 4, 5, 12, 0, tzinfo=BRUSSELS)
    decision = decide(message("service", "sms"), recipient(), [], easter_noon, config)
    assert decision.until == datetime(2026, 4, 7, 8, 0, tzinfo=BRUSSELS)
    assert "public holidays (BE)" in decision.text


def test_holidays_follow_the_customers_country():
    config = replace(CONFIG, quiet_on_holidays=True)
    kings_day = datetime(2026, 4, 27, 12, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    dutch = recipient(timezone="Europe/Amsterdam", country="nl")
    assert decide(message("service", "sms"), dutch, [], kings_day, config).action == "defer"
    belgian = recipient(timezone="Europe/Amsterdam", country="BE")
    assert decide(message("service", "sms"), belgian, [], kings_day, config).action == "send"
    unknown = recipient(timezone="Europe/Amsterdam", country="DE")
    assert decide(message("service", "sms"), unknown, [], kings_day, config).action == "send"


def test_sending_hours_across_midnight_and_equal_bounds():
    night_shift = SendingHours(time(14), time(12))  # quiet only 12:00-14:00
    assert is_quiet(
        datetime(2026, 3, 4, 13, 0, tzinfo=BRUSSELS), "Europe/Brussels", None, night_shift, CONFIG
    )
    for hour in (14, 23, 3):
        moment = datetime(2026, 3, 4, hour, 0, tzinfo=BRUSSELS)
        assert not is_quiet(moment, "Europe/Brussels", None, night_shift, CONFIG)
    always = SendingHours(time(8), time(8))
    sundays = replace(CONFIG, quiet_on_sundays=True)
    sunday_night = datetime(2026, 3, 8, 23, 0, tzinfo=BRUSSELS)
    assert not is_quiet(sunday_night, "Europe/Brussels", None, always, sundays)


def test_sending_hours_start_inclusive_and_end_exclusive():
    def quiet_at(hour: int, minute: int) -> bool:
        moment = datetime(2026, 3, 4, hour, minute, tzinfo=BRUSSELS)
        return is_quiet(moment, "Europe/Brussels", None, SMS_HOURS, CONFIG)

    assert quiet_at(21, 0) and quiet_at(7, 59)
    assert not quiet_at(20, 59) and not quiet_at(8, 0)


# --- inputs and settings --------------------------------------------------------------------


def test_naive_times_and_unknown_zones_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(message(), recipient(), [], datetime(2026, 3, 4, 12), CONFIG)
    with pytest.raises(ValueError, match="unknown time zone"):
        decide(message(), recipient(timezone="Mars/Olympus"), [], DAY_TIME, CONFIG)


def test_config_defaults_equal_the_settings_defaults():
    from trouw.settings import Settings

    for name, value in vars(PolicyConfig()).items():
        default = Settings.model_fields[name].default
        assert default == (str(value) if isinstance(value, SendingHours) else value), name


def test_config_from_settings_copies_every_policy_field():
    from trouw.settings import Settings

    settings = Settings.model_construct(
        service_cutoff_days=90,
        smart_sending_hours=4.5,
        promotional_cap_count=3,
        promotional_cap_days=14,
        sending_hours_email_transactional="07:00-22:00",
        sending_hours_email_service="09:00-20:00",
        sending_hours_email_promotional="10:00-19:00",
        sending_hours_sms_transactional="always",
        sending_hours_sms_service="09:30-20:30",
        sending_hours_sms_promotional="10:30-18:30",
        quiet_on_sundays=True,
        quiet_on_holidays=True,
    )
    hours = SendingHours.parse
    assert PolicyConfig.from_settings(settings) == PolicyConfig(
        90,
        4.5,
        3,
        14,
        hours("07:00-22:00"),
        hours("09:00-20:00"),
        hours("10:00-19:00"),
        hours("always"),
        hours("09:30-20:30"),
        hours("10:30-18:30"),
        True,
        True,
    )


def documented_sending_hours() -> dict[tuple[str, str], str]:
    """The default sending hours table of docs/policy.md, by (channel, category)."""
    lines = [line.strip() for line in POLICY_DOC.read_text(encoding="utf-8").splitlines()]
    header = next(i for i, line in enumerate(lines) if line.startswith("| channel |"))
    columns = [cell.strip() for cell in lines[header].strip("|").split("|")]
    assert columns[1:] == ["transactional", "service", "promotional"], columns
    table = {}
    for row in itertools.takewhile(lambda line: line.startswith("|"), lines[header + 2 :]):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for category, value in zip(columns[1:], cells[1:], strict=True):
            table[(cells[0], category)] = value
    return table


def test_the_documented_sending_hours_are_the_defaults_and_the_shipped_config() -> None:
    import tomllib

    expected = {
        (channel, category): str(CONFIG.sending_hours(channel, category))
        for channel in ("email", "sms")
        for category in ("transactional", "service", "promotional")
    }
    assert documented_sending_hours() == expected
    shipped = tomllib.loads((POLICY_DOC.parents[1] / "config" / "trouw.toml").read_text())
    assert {
        (channel, category): shipped[f"sending_hours_{channel}_{category}"]
        for channel, category in expected
    } == expected
