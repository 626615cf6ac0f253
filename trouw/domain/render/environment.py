"""The sandboxed Jinja2 environments and the locale-aware filters (money, date, number)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_currency, format_decimal, get_currency_precision
from jinja2 import StrictUndefined, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Filters a marketer must never reach: `safe` would switch autoescaping off for customer data.
FORBIDDEN_FILTERS = ("safe",)
# Globals with no use in a message, and cycler/joiner carry objects worth probing: gone.
FORBIDDEN_GLOBALS = ("lipsum", "cycler", "joiner")
# Tags that reach other files; a template sees only what the store hands it (mj-include).
FORBIDDEN_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
)


class UnsafeValueError(ValueError):
    """A value would put a line break into a subject line or an SMS."""


@lru_cache(maxsize=64)
def babel_locale(locale: str) -> Locale:
    """Babel's Locale for 'nl-BE', falling back to the language and then English."""
    tag = locale.replace("-", "_")
    for candidate in (tag, tag.split("_")[0], "en"):
        try:
            return Locale.parse(candidate)
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse("en")


def _locale_of(ctx: Context) -> Locale:
    value = ctx.get("locale")
    return babel_locale(value if isinstance(value, str) else "en")


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    try:
        # str() first: Decimal(24.95) would carry the binary float's noise.
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def _as_date_or_datetime(value: Any) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"not a date: {value!r}")


def _in_customer_zone(ctx: Context, value: datetime) -> datetime:
    """Show an aware datetime in the customer's own timezone, as they live it."""
    if value.tzinfo is None:
        return value
    customer = ctx.get("customer")
    zone = customer.get("timezone") if isinstance(customer, Mapping) else None
    if not zone:
        return value
    try:
        return value.astimezone(_zone(str(zone)))
    except ZoneInfoNotFoundError:
        return value


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


class _MoneyFormat:
    """Babel's currency pattern for one locale and currency, applied without Babel's overhead.

    format_currency costs ~70 µs (plural rules, currency names) and was half of a render; this
    learns prefix, suffix and separators from one Babel result and checks itself against Babel.
    """

    def __init__(self, locale: Locale, currency: str) -> None:
        self.locale, self.currency = locale, currency
        self.digits = get_currency_precision(currency)
        self.quantum = Decimal(1).scaleb(-self.digits)
        probe = Decimal("1234567.891")
        sample = format_currency(probe, currency, locale=locale)
        self.group = locale.number_symbols.get("latn", locale.number_symbols).get("group", ",")
        self.decimal = locale.number_symbols.get("latn", locale.number_symbols).get("decimal", ".")
        number = self._number(probe)
        self.prefix, found, self.suffix = sample.partition(number)
        self.fast = bool(found) and self(Decimal("-0.5")) == format_currency(
            Decimal("-0.5"), currency, locale=locale
        )

    def _number(self, value: Decimal) -> str:
        plain = f"{abs(value).quantize(self.quantum):,.{self.digits}f}"
        return plain.replace(",", "\0").replace(".", self.decimal).replace("\0", self.group)

    def __call__(self, value: Decimal) -> str:
        if value < 0 or not getattr(self, "fast", True):
            return format_currency(value, self.currency, locale=self.locale)
        return f"{self.prefix}{self._number(value)}{self.suffix}"


@lru_cache(maxsize=256)
def _money_format(locale: Locale, currency: str) -> _MoneyFormat:
    return _MoneyFormat(locale, currency)


@pass_context
def money_filter(ctx: Context, value: Any, currency: str = "EUR") -> str:
    """{{ order.total|money(order.currency) }} -> '€ 24,95' (nl), '24,95 €' (fr), '€24.95' (en)."""
    return _money_format(_locale_of(ctx), str(currency))(_as_decimal(value))


@pass_context
def number_filter(ctx: Context, value: Any, decimals: int | None = None) -> str:
    """{{ 1234.5|number }} -> '1.234,5' (nl); number(2) fixes the decimals."""
    amount = _as_decimal(value)
    if decimals is None:
        return format_decimal(amount, locale=_locale_of(ctx))
    pattern = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    return format_decimal(amount, format=pattern, locale=_locale_of(ctx))


@pass_context
def date_filter(ctx: Context, value: Any, fmt: str = "long") -> str:
    """{{ voucher.expires_at|date }} -> '24 april 2026'; fmt: short, medium, long, full, pattern."""
    when = _as_date_or_datetime(value)
    if isinstance(when, datetime):
        when = _in_customer_zone(ctx, when).date()
    return _format_date(when, fmt, _locale_of(ctx))


@lru_cache(maxsize=4096)
def _format_date(day: date, fmt: str, locale: Locale) -> str:
    # Messages of one day share a handful of dates; Babel's formatting is the slow part.
    return format_date(day, format=fmt, locale=locale)


@pass_context
def datetime_filter(ctx: Context, value: Any, fmt: str = "medium") -> str:
    """{{ order.placed_at|datetime('short') }} in the customer's timezone."""
    when = _as_date_or_datetime(value)
    if not isinstance(when, datetime):
        # A bare date means midnight where the customer lives; naive on purpose.
        when = datetime(when.year, when.month, when.day)  # noqa: DTZ001
    return format_datetime(_in_customer_zone(ctx, when), format=fmt, locale=_locale_of(ctx))


@pass_context
def time_filter(ctx: Context, value: Any, fmt: str = "short") -> str:
    """{{ order.delivered_at|time }} -> '14:30' in the customer's timezone."""
    when = _as_date_or_datetime(value)
    if not isinstance(when, datetime):
        raise ValueError(f"not a datetime: {value!r}")
    return format_time(_in_customer_zone(ctx, when), format=fmt, locale=_locale_of(ctx))


def _refuse_line_breaks(value: Any) -> Any:
    if isinstance(value, str) and ("\r" in value or "\n" in value):
        raise UnsafeValueError(f"a value contains a line break: {value[:40]!r}")
    return value


def _build(autoescape: bool, **options: Any) -> ImmutableSandboxedEnvironment:
    # Immutable: templates cannot append to or pop from the lists and dicts they are given.
    env = ImmutableSandboxedEnvironment(
        autoescape=autoescape,
        undefined=StrictUndefined,
        auto_reload=False,
        cache_size=0,
        **options,
    )
    for name in FORBIDDEN_FILTERS:
        env.filters.pop(name, None)
    for name in FORBIDDEN_GLOBALS:
        env.globals.pop(name, None)
    env.filters.update(
        money=money_filter,
        number=number_filter,
        date=date_filter,
        datetime=datetime_filter,
        time=time_filter,
    )
    return env


def html_environment() -> ImmutableSandboxedEnvironment:
    """For MJML/HTML bodies: every {{ value }} is HTML-escaped."""
    return _build(autoescape=True)


def text_environment() -> ImmutableSandboxedEnvironment:
    """For the plain-text part: no escaping."""
    return _build(autoescape=False)


def line_environment() -> ImmutableSandboxedEnvironment:
    """For subject, preheader and SMS: no escaping, and no value may carry CR or LF."""
    return _build(autoescape=False, finalize=_refuse_line_breaks)
