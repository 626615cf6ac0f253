"""Locale-aware money, date and number filters give the exact strings each locale expects."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel.numbers import format_currency
from hypothesis import given
from hypothesis import strategies as st

from trouw.domain.render import TemplateStore, sample_context
from trouw.domain.render.environment import babel_locale, html_environment, line_environment

NBSP, NNBSP = "\u00a0", "\u202f"


def render(source: str, locale: str, **values: object) -> str:
    return line_environment().from_string(source).render(locale=locale, **values)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("nl-BE", f"€{NBSP}24,95"),
        ("nl-NL", f"€{NBSP}24,95"),
        ("fr-BE", f"24,95{NBSP}€"),
        ("en", "€24.95"),
    ],
)
def test_money_per_locale(locale: str, expected: str) -> None:
    assert render("{{ total|money }}", locale, total=Decimal("24.95")) == expected


def test_money_thousands_and_other_currency() -> None:
    assert render("{{ v|money }}", "nl-BE", v=Decimal("1234.5")) == f"€{NBSP}1.234,50"
    assert render("{{ v|money }}", "fr-BE", v=Decimal("1234.5")) == f"1{NNBSP}234,50{NBSP}€"
    assert render("{{ v|money('USD') }}", "en", v=Decimal("3")) == "$3.00"
    assert render("{{ v|money }}", "en", v="24.95") == "€24.95"  # values arriving as JSON text


@pytest.mark.parametrize(
    ("locale", "long", "medium"),
    [
        ("nl-BE", "24 april 2026", "24 apr 2026"),
        ("nl-NL", "24 april 2026", "24 apr 2026"),
        ("fr-BE", "24 avril 2026", "24 avr. 2026"),
        ("en", "April 24, 2026", "Apr 24, 2026"),
    ],
)
def test_date_per_locale(locale: str, long: str, medium: str) -> None:
    day = date(2026, 4, 24)
    assert render("{{ d|date }}", locale, d=day) == long
    assert render("{{ d|date('medium') }}", locale, d=day) == medium
    assert render("{{ d|date }}", locale, d="2026-04-24") == long


def test_datetime_is_shown_in_the_customers_timezone() -> None:
    late = datetime(2026, 4, 24, 23, 30, tzinfo=ZoneInfo("UTC"))
    customer = {"timezone": "Europe/Brussels"}
    assert render("{{ t|date }}", "nl-BE", t=late, customer=customer) == "25 april 2026"
    assert render("{{ t|time }}", "nl-BE", t=late, customer=customer) == "01:30"


def test_number_per_locale() -> None:
    assert render("{{ n|number }}", "nl-BE", n=1234.5) == "1.234,5"
    assert render("{{ n|number }}", "en", n=1234.5) == "1,234.5"
    assert render("{{ n|number(2) }}", "fr-BE", n=3) == "3,00"


def test_filters_follow_the_render_locale_not_the_process() -> None:
    env = html_environment()
    template = env.from_string("{{ v|money }} {{ d|date }}")
    day, value = date(2026, 4, 24), Decimal("24.95")
    assert template.render(locale="fr-BE", v=value, d=day) == f"24,95{NBSP}€ 24 avril 2026"
    assert template.render(locale="en", v=value, d=day) == "€24.95 April 24, 2026"


@given(
    value=st.decimals(min_value=0, max_value=10_000_000, places=3, allow_nan=False),
    locale=st.sampled_from(["nl-BE", "nl-NL", "fr-BE", "en", "de-DE"]),
    currency=st.sampled_from(["EUR", "USD", "GBP", "JPY"]),
)
def test_fast_money_matches_babel(value: Decimal, locale: str, currency: str) -> None:
    expected = format_currency(value, currency, locale=babel_locale(locale))
    assert render("{{ v|money(c) }}", locale, v=value, c=currency) == expected


def test_amounts_and_dates_follow_the_customers_own_locale(store: TemplateStore) -> None:
    context = sample_context("delivery_notice", "en")
    context["order"] = {**context["order"], "delivered_at": date(2026, 4, 24)}
    # en-GB reads the English copy with British dates; de-BE reads English, Belgian style.
    british = store.render_email("delivery_notice", "en-GB", context)
    assert "24 April 2026" in british.text and british.locale == "en-GB"
    american = store.render_email("delivery_notice", "en-US", context)
    assert "April 24, 2026" in american.text
    german_belgian = store.render_email("delivery_notice", "de-BE", context)
    assert german_belgian.locale == "en" and "24 April 2026" in german_belgian.text
    sms = store.render_sms("refill_reminder", "fr-FR", sample_context("refill_reminder", "fr"))
    assert sms.locale == "fr-BE" and sms.text.startswith("Bonjour")
