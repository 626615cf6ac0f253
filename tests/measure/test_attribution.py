"""Attribution edge cases: exact links first, last touch in a window, one message per order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trouw.domain.measure.attribution import (
    AttributionRules,
    IssuedVoucher,
    OrderToAttribute,
    Touch,
    Windows,
    attribute,
    attribute_all,
)

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
DAY = timedelta(days=1)
RULES = AttributionRules()


def _order(at: datetime, **kw: object) -> OrderToAttribute:
    fields: dict[str, object] = {
        "order_id": "o1",
        "customer_id": "c1",
        "placed_at": at,
        "revenue": Decimal("50.00"),
    }
    fields.update(kw)
    return OrderToAttribute(**fields)  # type: ignore[arg-type]


def _click(key: str, at: datetime, journey: str = "post_purchase", **kw: object) -> Touch:
    return Touch(key, "c1", journey, "click", at, **kw)  # type: ignore[arg-type]


def test_two_messages_clicked_before_one_order_the_last_click_earns_it() -> None:
    touches = [_click("m1", T0), _click("m2", T0 + DAY, journey="reactivation")]
    found = attribute(_order(T0 + 2 * DAY), touches, {}, RULES)
    assert found is not None
    assert (found.message_key, found.journey, found.method) == ("m2", "reactivation", "click")
    assert found.revenue == Decimal("50.00")


def test_a_voucher_redeemed_in_the_shop_after_a_click_on_another_message_goes_to_the_voucher() -> (
    None
):
    vouchers = {"BDAY-1": IssuedVoucher("BDAY-1", "m-birthday", "birthday", T0 - 3 * DAY)}
    touches = [_click("m-tips", T0 + DAY)]
    order = _order(T0 + 2 * DAY, shop="Gent", vouchers=("BDAY-1",))
    found = attribute(order, touches, vouchers, RULES)
    assert found is not None
    assert (found.message_key, found.method) == ("m-birthday", "voucher")


def test_a_return_reduces_the_attributed_revenue_and_never_below_zero() -> None:
    touches = [_click("m1", T0)]
    part = attribute(_order(T0 + DAY, returned=Decimal("20.00")), touches, {}, RULES)
    assert part is not None and part.revenue == Decimal("30.00")
    whole = attribute(_order(T0 + DAY, returned=Decimal("80.00")), touches, {}, RULES)
    assert whole is not None and whole.revenue == Decimal("0")


def test_an_order_before_any_message_is_attributed_to_none() -> None:
    touches = [_click("m1", T0 + DAY)]
    assert attribute(_order(T0), touches, {}, RULES) is None
    # A voucher issued after the order cannot have earned it either.
    late = {"V": IssuedVoucher("V", "m1", "birthday", T0 + DAY)}
    assert attribute(_order(T0, vouchers=("V",)), [], late, RULES) is None


def test_the_click_window_is_five_days_by_default() -> None:
    touches = [_click("m1", T0)]
    assert attribute(_order(T0 + 5 * DAY), touches, {}, RULES) is not None
    assert attribute(_order(T0 + 5 * DAY + timedelta(seconds=1)), touches, {}, RULES) is None


def test_opens_and_deliveries_count_only_where_enabled_and_clicks_outrank_them() -> None:
    opened = Touch("m-open", "c1", "birthday", "open", T0 + DAY)
    delivered = Touch("m-del", "c1", "birthday", "delivery", T0 + DAY)
    order = _order(T0 + 2 * DAY)
    assert attribute(order, [opened, delivered], {}, RULES) is None
    rules = AttributionRules(journeys={"birthday": Windows(open=3 * DAY, delivery=DAY * 2)})
    found = attribute(order, [opened, delivered], {}, rules)
    assert found is not None and (found.message_key, found.method) == ("m-open", "open")
    # An older click still inside its window beats a newer open.
    found = attribute(order, [opened, _click("m-click", T0)], {}, rules)
    assert found is not None and found.method == "click"


def test_the_session_of_a_tracked_click_is_an_exact_link() -> None:
    touches = [_click("m1", T0 - 10 * DAY, session_id="s-42"), _click("m2", T0 + DAY)]
    order = _order(T0 + 2 * DAY, session_id="s-42")
    found = attribute(order, touches, {}, RULES)
    assert found is not None and (found.message_key, found.method) == ("m1", "click_session")


def test_windows_per_shop_and_per_journey() -> None:
    rules = AttributionRules(
        default=Windows(click=5 * DAY),
        shops={"Gent": Windows(click=DAY)},
        journeys={"reactivation": Windows(click=10 * DAY)},
    )
    touches = [_click("m1", T0)]
    assert attribute(_order(T0 + 3 * DAY, shop="Gent"), touches, {}, rules) is None
    assert attribute(_order(T0 + 3 * DAY, shop="web"), touches, {}, rules) is not None
    react = [_click("m2", T0, journey="reactivation")]
    assert attribute(_order(T0 + 8 * DAY, shop="Gent"), react, {}, rules) is not None
    off = AttributionRules(journeys={"post_purchase": Windows(click=None)})
    assert attribute(_order(T0 + DAY), touches, {}, off) is None


def test_each_order_is_attributed_at_most_once_and_never_above_its_revenue() -> None:
    touches = [_click("m1", T0), _click("m2", T0 + DAY), Touch("m3", "c2", "j", "click", T0)]
    orders = [
        _order(T0 + 2 * DAY, order_id="o1"),
        _order(T0 + 2 * DAY, order_id="o2", customer_id="c2", revenue=Decimal("12.5")),
        _order(T0 - DAY, order_id="o3"),
    ]
    found = attribute_all(orders, touches, {}, RULES)
    assert [(a.order_id, a.message_key) for a in found] == [("o1", "m2"), ("o2", "m3")]
    assert all(a.revenue <= o.revenue for a, o in zip(found, orders, strict=False))
