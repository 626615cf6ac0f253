"""The sample shop: one catalogue of products and customers for the demo, the benches and the tests."""

from __future__ import annotations

from typing import Any

from trouw.domain.render.sources import SHIPPED_LOCALES

CARE_LAWN = {
    "summary": "Strooi de gazonmest gelijkmatig op een droog gazon.",
    "tips": [
        "Geef water na het strooien.",
        "Maai pas na drie dagen.",
        "Herhaal na zes à acht weken.",
    ],
}
CARE_ROSE = {
    "summary": "Klimrozen houden van zon en een stevige steun.",
    "tips": [
        "Geef de eerste weken om de twee dagen water.",
        "Bind nieuwe scheuten horizontaal op.",
    ],
}
CARE_OLIVE = {
    "summary": "Een olijfboom in pot wil veel licht en weinig water.",
    "tips": [
        "Laat de potgrond tussen twee gietbeurten opdrogen.",
        "Zet hem vorstvrij als het onder -5 °C gaat.",
    ],
}
CARE_AQUARIUM = {
    "summary": "Laat het aquarium twee weken inlopen voor je vissen toevoegt.",
    "tips": ["Ververs wekelijks 10 à 20 % van het water.", "Test het nitrietgehalte."],
}

PRODUCTS: list[dict[str, Any]] = [
    {
        "sku": "LAWN-10",
        "name": "Gazonmest 10 kg",
        "category": "garden",
        "price": "24.95",
        "consumption_days": 60,
        "care": CARE_LAWN,
    },
    {
        "sku": "SOIL-40",
        "name": "Potgrond 40 l",
        "category": "garden",
        "price": "7.99",
        "consumption_days": 90,
    },
    {
        "sku": "ROSE-01",
        "name": "Klimroos 'New Dawn'",
        "category": "plants",
        "price": "14.50",
        "care": CARE_ROSE,
    },
    {
        "sku": "OLIVE-80",
        "name": "Olijfboom 80 cm",
        "category": "plants",
        "price": "49.00",
        "care": CARE_OLIVE,
        "warranty_months": 6,
    },
    {"sku": "POT-40", "name": "Terracotta pot 40 cm", "category": "garden", "price": "29.00"},
    {
        "sku": "SHEARS-1",
        "name": "Snoeischaar Felco 2",
        "category": "tools",
        "price": "54.95",
        "warranty_months": 24,
    },
    {
        "sku": "DOG-12",
        "name": "Hondenbrokken 12 kg",
        "category": "pets",
        "price": "42.50",
        "consumption_days": 45,
    },
    {
        "sku": "CAT-2",
        "name": "Kattenvoer 2 kg",
        "category": "pets",
        "price": "12.99",
        "consumption_days": 30,
    },
    {
        "sku": "LITTER-10",
        "name": "Kattenbakvulling 10 l",
        "category": "pets",
        "price": "8.49",
        "consumption_days": 21,
    },
    {
        "sku": "AQUA-60",
        "name": "Aquarium 60 l starterset",
        "category": "pets",
        "price": "119.00",
        "care": CARE_AQUARIUM,
        "warranty_months": 24,
    },
    {
        "sku": "BIRD-5",
        "name": "Strooivoer wilde vogels 5 kg",
        "category": "pets",
        "price": "11.95",
        "consumption_days": 40,
    },
    {
        "sku": "SEED-GR",
        "name": "Graszaad sport & spel 1 kg",
        "category": "garden",
        "price": "13.95",
    },
    {
        "sku": "SALT-25",
        "name": "Zout voor waterontharder 25 kg",
        "category": "home",
        "price": "9.95",
        "consumption_days": 400,
    },
]

CUSTOMERS: list[dict[str, Any]] = [
    {
        "id": "demo-c01",
        "first_name": "Bart",
        "last_name": "Peeters",
        "email": "bart.peeters@example.com",
        "phone": "+32470000001",
        "locale": "nl-BE",
        "birthday": "1979-04-24",
        "opt_in": {"email": True, "sms": False},
    },
    {
        "id": "demo-c02",
        "first_name": "Sophie",
        "last_name": "Dubois",
        "email": "sophie.dubois@example.com",
        "locale": "fr-BE",
        "opt_in": {"email": False},
    },
    {
        "id": "demo-c03",
        "first_name": "Emma",
        "last_name": "de Vries",
        "email": "emma.devries@example.com",
        "phone": "+31612345678",
        "locale": "nl-NL",
        "timezone": "Europe/Amsterdam",
        "birthday": "1990-11-02",
        "opt_in": {"email": True, "sms": True},
    },
    {
        "id": "demo-c04",
        "first_name": "Tom",
        "last_name": "Janssens",
        "email": "tom.janssens@example.com",
        "locale": "nl-BE",
    },
    {
        "id": "demo-c05",
        "first_name": "Claire",
        "last_name": "Martin",
        "email": "claire.martin@example.com",
        "phone": "+32470000005",
        "locale": "fr-BE",
        "birthday": "1985-06-12",
        "opt_in": {"email": True},
    },
    {
        "id": "demo-c06",
        "first_name": "Daan",
        "last_name": "Bakker",
        "email": "daan.bakker@example.com",
        "locale": "nl-NL",
        "timezone": "Europe/Amsterdam",
    },
    {
        "id": "demo-c07",
        "first_name": "Olivia",
        "last_name": "Smith",
        "email": "olivia.smith@example.com",
        "locale": "en",
        "opt_in": {"email": True},
    },
    {
        "id": "demo-c08",
        "first_name": "Lotte",
        "last_name": "Maes",
        "email": "lotte.maes@example.com",
        "phone": "+32470000008",
        "locale": "nl-BE",
        "opt_in": {"sms": True},
    },
    {
        "id": "demo-c09",
        "first_name": "Hugo",
        "last_name": "Lambert",
        "email": "hugo.lambert@example.com",
        "locale": "fr-BE",
    },
    {
        "id": "demo-c10",
        "first_name": "Sanne",
        "last_name": "Visser",
        "email": "sanne.visser@example.com",
        "locale": "nl-NL",
        "timezone": "Europe/Amsterdam",
        "opt_in": {"email": False},
    },
    {
        "id": "demo-c11",
        "first_name": "James",
        "last_name": "Taylor",
        "email": "james.taylor@example.com",
        "locale": "en",
        "birthday": "1972-01-30",
    },
    {
        "id": "demo-c12",
        "first_name": "Marie",
        "last_name": "Wouters",
        "email": "marie.wouters@example.com",
        "locale": "nl-BE",
        "opt_in": {"email": True, "sms": False},
    },
]


def numbered_customer(customer_id: str, n: int) -> dict[str, Any]:
    """The n-th customer of a generated crowd (benches): a name, an address and a locale."""
    return {
        "id": customer_id,
        "first_name": f"Klant{n}",
        "email": f"{customer_id}@example.com",
        "locale": SHIPPED_LOCALES[n % len(SHIPPED_LOCALES)],  # every shipped locale in turn
    }
