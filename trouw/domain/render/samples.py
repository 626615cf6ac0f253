"""Realistic sample contexts for previews, `trouw templates check` and tests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from trouw.domain.render.sources import normalize_locale

_CUSTOMERS: dict[str, dict[str, Any]] = {
    "nl-BE": {
        "id": "c-1001",
        "first_name": "Bart",
        "last_name": "Peeters",
        "email": "bart.peeters@example.com",
        "phone": "+32470123456",
        "timezone": "Europe/Brussels",
        "birthday": date(1979, 4, 24),
    },
    "nl-NL": {
        "id": "c-1002",
        "first_name": "Sanne",
        "last_name": "de Vries",
        "email": "sanne.devries@example.com",
        "phone": "+31612345678",
        "timezone": "Europe/Amsterdam",
        "birthday": date(1986, 9, 3),
    },
    "fr-BE": {
        "id": "c-1003",
        "first_name": "Sophie",
        "last_name": "Lambert",
        "email": "sophie.lambert@example.com",
        "phone": "+32478765432",
        "timezone": "Europe/Brussels",
        "birthday": date(1991, 12, 11),
    },
    "en": {
        "id": "c-1004",
        "first_name": "Emma",
        "last_name": "Wilson",
        "email": "emma.wilson@example.com",
        "phone": "+32471000111",
        "timezone": "Europe/Brussels",
        "birthday": date(1984, 6, 30),
    },
}

# Product names as the shop's catalogue has them, per language.
_PRODUCT_NAMES: dict[str, dict[str, str]] = {
    "LAWN-10": {"nl": "Gazonmest 10 kg", "fr": "Engrais gazon 10 kg", "en": "Lawn feed 10 kg"},
    "CAT-DRY-4": {
        "nl": "Kattenbrokjes kip 4 kg",
        "fr": "Croquettes chat poulet 4 kg",
        "en": "Dry cat food, chicken, 4 kg",
    },
    "OLIVE-80": {
        "nl": "Olijfboom 80 cm",
        "fr": "Olivier 80 cm",
        "en": "Olive tree 80 cm",
    },
    "PRUNER-01": {"nl": "Snoeischaar", "fr": "Sécateur", "en": "Pruning shears"},
}

_CARE: dict[str, dict[str, dict[str, Any]]] = {
    "OLIVE-80": {
        "nl": {
            "summary": "Een olijfboom houdt van zon en haat natte voeten.",
            "tips": [
                "Zet hem op de zonnigste plek die je hebt, uit de wind.",
                "Geef pas water als de bovenste 3 cm potgrond droog aanvoelt.",
                "Bij meer dan 5 graden vorst: inpakken met een wintervlies.",
            ],
        },
        "fr": {
            "summary": "L'olivier aime le soleil et déteste avoir les pieds mouillés.",
            "tips": [
                "Placez-le à l'endroit le plus ensoleillé, à l'abri du vent.",
                "Arrosez seulement quand les 3 premiers cm de terreau sont secs.",
                "Sous les -5 °C, protégez-le d'un voile d'hivernage.",
            ],
        },
        "en": {
            "summary": "An olive tree loves sun and hates wet feet.",
            "tips": [
                "Give it the sunniest spot you have, out of the wind.",
                "Water only when the top 3 cm of compost feels dry.",
                "Below -5 °C, wrap it in a winter fleece.",
            ],
        },
    },
    "CAT-DRY-4": {
        "nl": {
            "summary": "Bewaar brokjes droog en afgesloten, dan blijven ze knapperig.",
            "tips": ["Zet altijd vers water naast de brokjes."],
        },
        "fr": {
            "summary": "Conservez les croquettes au sec, dans un contenant fermé.",
            "tips": ["Laissez toujours de l'eau fraîche à côté des croquettes."],
        },
        "en": {
            "summary": "Keep dry food dry and closed, so it stays crunchy.",
            "tips": ["Always put fresh water next to the food."],
        },
    },
    "LAWN-10": {
        "nl": {
            "summary": "Gazonmest werkt het best op een vochtig gazon, vlak voor een regenbui.",
            "tips": [
                "Strooi 30 g per m², met een strooiwagen voor een gelijkmatig resultaat.",
                "Maai niet in de drie dagen na het bemesten.",
                "Houd kinderen en huisdieren van het gras tot de korrels opgelost zijn.",
            ],
        },
        "fr": {
            "summary": "L'engrais agit le mieux sur un gazon humide, juste avant une averse.",
            "tips": [
                "Épandez 30 g par m², avec un épandeur pour un résultat régulier.",
                "Ne tondez pas dans les trois jours qui suivent.",
                "Gardez enfants et animaux hors de la pelouse jusqu'à dissolution des granulés.",
            ],
        },
        "en": {
            "summary": "Lawn feed works best on damp grass, just before a shower.",
            "tips": [
                "Spread 30 g per m², with a spreader for an even result.",
                "Do not mow for three days after feeding.",
                "Keep children and pets off the grass until the granules have dissolved.",
            ],
        },
    },
}

_SHOPS: dict[str, dict[str, str]] = {
    "nl": {
        "name": "Tuincentrum De Linde",
        "url": "https://www.delinde.example",
        "address": "Steenweg 12, 9000 Gent",
    },
    "fr": {
        "name": "Jardinerie De Linde",
        "url": "https://www.delinde.example/fr",
        "address": "Steenweg 12, 9000 Gand",
    },
    "en": {
        "name": "De Linde Garden & Pet",
        "url": "https://www.delinde.example/en",
        "address": "Steenweg 12, 9000 Ghent, Belgium",
    },
}


def _product(sku: str, lang: str) -> dict[str, Any]:
    prices = {
        "LAWN-10": Decimal("24.95"),
        "CAT-DRY-4": Decimal("18.49"),
        "OLIVE-80": Decimal("39.00"),
        "PRUNER-01": Decimal("21.50"),
    }
    category = {"LAWN-10": "garden", "CAT-DRY-4": "pet", "OLIVE-80": "plants"}
    consumption = {"LAWN-10": 60, "CAT-DRY-4": 30}
    care = _CARE.get(sku, {}).get(lang)
    return {
        "sku": sku,
        "name": _PRODUCT_NAMES[sku][lang],
        "category": category.get(sku, "tools"),
        "price": prices[sku],
        "consumption_days": consumption.get(sku),
        "care": care,
        "warranty_months": 24 if sku == "PRUNER-01" else None,
    }


# Believable values for every field an event can carry (trouw/domain/checks/scope.py EVENT_DATA).
_EVENT_VALUES: dict[str, Any] = {
    "channel": "web",
    "scope": "all",
    "store": "Gent",
    "rating": 5,
    "code": "VERJAARDAG-7Q2K",
    "value": Decimal("10.00"),
    "currency": "EUR",
    "name": "survey_answered",
    "changed": ["birthday"],
    "segment": "at_risk",
    "previous_segment": "loyal",
    "delta": 49,
    "points": 620,
    "level": "zilver",
    "kinds": ["earn"],
    "joined": False,
    "role": "referrer",
    "friend": "c-2002",
}


def _events(placed: datetime, order_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every event type a run can wait for, and a trigger carrying every field one can have."""
    from trouw.domain.checks.scope import Declarations, builtin_event_types

    declarations = Declarations()
    values = {
        **_EVENT_VALUES,
        "expires_at": placed + timedelta(days=30),
        "expected_next_order_at": placed + timedelta(days=74),
        "next_expiry_at": placed + timedelta(days=365),
    }
    events: dict[str, Any] = {}
    for number, kind in enumerate(builtin_event_types()):
        data = declarations.event_data(kind) or {}
        events[kind] = {
            "type": kind,
            "at": placed + timedelta(days=number),
            "order_id": order_id,
            **{field: values[field] for field in data},
        }
    trigger: dict[str, Any] = {"type": "purchase", "at": placed, "order_id": order_id}
    for event in events.values():
        trigger.update({k: v for k, v in event.items() if k not in trigger})
    return events, trigger


def sample_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A believable value for each declared customer attribute, by its checker type."""
    values = {
        "text": "Gent",
        "number": 120,
        "bool": True,
        "date": date(2024, 5, 1),
        "datetime": datetime(2024, 5, 1, 10, 0, tzinfo=ZoneInfo("Europe/Brussels")),
    }
    return {name: values.get(shape.kind, "sample") for name, shape in attributes.items()}


def sample_context(
    name: str, locale: str, *, attributes: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A full context for any template: everything a journey can pass, with believable data
    (every field of trouw/domain/checks/scope.py's template context; a test holds them together).

    `name` may be 'order_confirmation' or 'email/order_confirmation'; the refill and care
    templates get the products that make sense for them.
    """
    loc = normalize_locale(locale)
    lang = loc.split("-")[0] if loc.split("-")[0] in ("nl", "fr") else "en"
    customer_loc = loc if loc in _CUSTOMERS else {"nl": "nl-BE", "fr": "fr-BE"}.get(lang, "en")
    customer = {
        **_CUSTOMERS[customer_loc],
        "locale": loc,
        "attributes": sample_attributes(attributes or {}),  # only declared attributes
        "tags": ["garden"],
        "opt_in": {"email": True, "sms": False},
        "preferred_channel": "email",
    }
    zone = ZoneInfo(customer["timezone"])
    placed = datetime(2026, 4, 24, 10, 15, tzinfo=zone)
    lines = []
    for sku, qty in (("LAWN-10", 2), ("OLIVE-80", 1), ("PRUNER-01", 1)):
        product = _product(sku, lang)
        lines.append(
            {
                "sku": sku,
                "name": product["name"],
                "qty": qty,
                "unit_price": product["price"],
                "line_total": product["price"] * qty,
                "product": product,
            }
        )
    total = sum((line["line_total"] for line in lines), Decimal("0"))
    shop = _SHOPS[lang]
    order = {
        "id": "W-2026-04817",
        "name": "W-2026-04817",
        "channel": "web",
        "store": None,
        "placed_at": placed,
        "delivered_at": placed + timedelta(days=2, hours=4),
        "returned_at": None,
        "total": total,
        "currency": "EUR",
        "lines": lines,
    }
    refill_product = _product("CAT-DRY-4" if "refill" in name else "LAWN-10", lang)
    care_products = [line["product"] for line in lines if line["product"]["care"]]
    base = shop["url"]
    token = "t0k3n-sample"
    events, trigger = _events(placed, str(order["id"]))
    history = {
        "orders": 3,
        "first_order_at": placed - timedelta(days=400),
        "last_order_at": placed,
        "days_since_last_order": 0,
        "total_spent": total + Decimal("86.40"),
        "average_basket": ((total + Decimal("86.40")) / 3).quantize(Decimal("0.01")),
        "skus": sorted(line["sku"] for line in lines),
        "categories": sorted({line["product"]["category"] for line in lines}),
        "rfm": "loyal",
    }
    insight = {
        "segment": "loyal",
        "segment_since": placed - timedelta(days=60),
        "r": 4,
        "f": 4,
        "m": 3,
        "orders": 3,
        "first_order_at": history["first_order_at"],
        "last_order_at": placed,
        "recency_days": 0,
        "frequency": 2,
        "monetary_total": float(total + Decimal("86.40")),
        "monetary_avg": float(((total + Decimal("86.40")) / 3).quantize(Decimal("0.01"))),
        "p_active": 0.93,
        "p_order": 0.41,
        "expected_orders": 0.62,
        "expected_next_order_at": placed + timedelta(days=74),
        "expected_value": 212.5,
        "horizon_days": 90,
        "weekday": 5,
        "hour": 10,
        "season": "spring",
        "sale_buyer": False,
        "favourite_category": "garden",
        "breadth": "narrow",
        "model": "bgnbd orders:bgnbd p:bgnbd spend:gg",
        "as_of": placed,
    }
    return {
        "customer": customer,
        "history": history,
        "insight": insight,
        "loyalty": {
            "member": True,
            "points": 620,
            "level": "zilver",
            "next_level": "goud",
            "next_level_at": 1500,
            "points_to_next_level": 880,
            "expiring_points": 120,
            "expiring_at": placed + timedelta(days=21),
            "referral_code": "K7M2QX9D",
            "referral_link": f"{shop['url']}/word-lid?ref=K7M2QX9D",
        },
        "trigger": trigger,
        "events": events,
        "order": order,
        "products": care_products,
        "product": refill_product,
        "refill": {"expected_empty_at": date(2026, 6, 20)},
        "voucher": {
            "code": "VERJAARDAG-7Q2K",
            "value": Decimal("10.00"),
            "currency": "EUR",
            "expires_at": date(2026, 5, 24),
        },
        "recommendations": [_product("OLIVE-80", lang), _product("PRUNER-01", lang)],
        "links": {
            "unsubscribe": f"{base}/u/{token}",
            "preferences": f"{base}/p/{token}",
            "loyalty": f"{base}/loyalty/{token}",
            "view_in_browser": f"{base}/m/{token}",
            "review": f"{base}/review/{order['id']}?t={token}",
            "reorder": f"{base}/reorder/{refill_product['sku']}?t={token}",
            "shop": base,
        },
        "shop": dict(shop),
        "locale": loc,
    }
