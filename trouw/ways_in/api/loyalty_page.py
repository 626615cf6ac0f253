"""The customer's loyalty page (signed link, like the preference page): points, level, history,
open vouchers with their barcodes for the till, and a way to the preferences; nl, fr, en."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from babel.dates import format_date
from babel.numbers import format_currency
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer
from trouw.domain.loyalty import barcodes, ledger, vouchers
from trouw.domain.loyalty.intake import CARD_ATTRIBUTE
from trouw.ways_in.api import pages
from trouw.ways_in.api.state import ApiState, api_state

router = APIRouter(include_in_schema=False)

TEXTS: dict[str, dict[str, str]] = {
    "nl": {
        "title": "Mijn klantenvoordeel",
        "points": "punten",
        "level": "Niveau",
        "next_level": "Nog {points} punten tot {level}",
        "top_level": "Je hebt het hoogste niveau bereikt",
        "expiring": "{points} punten vervallen op {date}",
        "card": "Mijn klantenkaart",
        "vouchers": "Mijn tegoedbonnen",
        "no_vouchers": "Je hebt op dit moment geen open tegoedbonnen.",
        "valid_until": "Geldig tot en met {date}",
        "scan_hint": "Toon deze barcode aan de kassa, of typ de code in de webshop.",
        "min_order": "Vanaf een aankoop van {amount}",
        "history": "Mijn punten",
        "no_history": "Nog geen punten gespaard.",
        "date": "Datum",
        "what": "Wat",
        "earn": "Aankoop",
        "bonus": "Actie",
        "return": "Retour",
        "adjust": "Correctie",
        "expire": "Vervallen",
        "referral": "Nodig een vriend uit: jullie krijgen allebei een tegoedbon.",
        "preferences": "Mijn e-mailvoorkeuren en gegevens",
        "not_member": "Je bent nog geen lid van ons klantenprogramma. Vraag je klantenkaart aan de kassa.",
    },
    "fr": {
        "title": "Mes avantages fidélité",
        "points": "points",
        "level": "Niveau",
        "next_level": "Encore {points} points avant le niveau {level}",
        "top_level": "Vous avez atteint le plus haut niveau",
        "expiring": "{points} points expirent le {date}",
        "card": "Ma carte de fidélité",
        "vouchers": "Mes bons d'achat",
        "no_vouchers": "Vous n'avez pas de bon d'achat ouvert pour le moment.",
        "valid_until": "Valable jusqu'au {date} inclus",
        "scan_hint": "Montrez ce code-barres à la caisse, ou saisissez le code en ligne.",
        "min_order": "À partir d'un achat de {amount}",
        "history": "Mes points",
        "no_history": "Pas encore de points.",
        "date": "Date",
        "what": "Quoi",
        "earn": "Achat",
        "bonus": "Action",
        "return": "Retour",
        "adjust": "Correction",
        "expire": "Expirés",
        "referral": "Parrainez un ami : vous recevez chacun un bon d'achat.",
        "preferences": "Mes préférences e-mail et mes données",
        "not_member": "Vous n'êtes pas encore membre. Demandez votre carte de fidélité à la caisse.",
    },
    "en": {
        "title": "My loyalty account",
        "points": "points",
        "level": "Level",
        "next_level": "{points} more points to {level}",
        "top_level": "You have reached the highest level",
        "expiring": "{points} points expire on {date}",
        "card": "My loyalty card",
        "vouchers": "My vouchers",
        "no_vouchers": "You have no open vouchers right now.",
        "valid_until": "Valid until {date}",
        "scan_hint": "Show this barcode at the till, or type the code online.",
        "min_order": "With a purchase of at least {amount}",
        "history": "My points",
        "no_history": "No points saved yet.",
        "date": "Date",
        "what": "What",
        "earn": "Purchase",
        "bonus": "Campaign",
        "return": "Return",
        "adjust": "Correction",
        "expire": "Expired",
        "referral": "Invite a friend: you both get a voucher.",
        "preferences": "My email preferences and details",
        "not_member": "You are not a member yet. Ask for your loyalty card at the till.",
    },
}


def _babel_locale(locale: str) -> str:
    return locale.replace("-", "_")


def page_data(state: ApiState, customer_id: str, locale: str, *, now: datetime) -> dict[str, Any]:
    """Everything the page shows, read in one session."""
    lang = pages.language_of(locale)
    t = TEXTS[lang]
    where = _babel_locale(locale)

    def day(moment: datetime | None) -> str:
        return format_date(moment, format="long", locale=where) if moment else ""

    with session_scope(state.engine) as session:
        customer = session.get(Customer, customer_id)
        assert customer is not None
        held = ledger.loyalty_dict(session, customer_id, now=now)
        card = (customer.attributes or {}).get(CARD_ATTRIBUTE)
        open_vouchers = [
            {
                "code": voucher.code,
                "value": format_currency(voucher.value, voucher.currency, locale=where),
                "valid_until": t["valid_until"].replace("{date}", day(voucher.expires_at)),
                "min_order": t["min_order"].replace(
                    "{amount}",
                    format_currency(voucher.min_order_total, voucher.currency, locale=where),
                )
                if voucher.min_order_total is not None
                else "",
                "barcode": barcodes.code128_data_uri(voucher.code),
            }
            for voucher in vouchers.of_customer(session, customer_id, now=now)
        ]
        history = [
            {
                "date": format_date(row.at, format="medium", locale=where),
                "what": t.get(row.kind, row.kind)
                + (
                    f": {row.reason}"
                    if row.kind in ("earn", "adjust", "bonus") and row.reason
                    else ""
                ),
                "points": f"{row.points:+d}",
                "negative": row.points < 0,
            }
            for row in ledger.history(session, customer_id, limit=50)
        ]
    progress = None
    if held["next_level_at"]:
        progress = max(0, min(100, round(100 * held["points"] / held["next_level_at"])))
    return {
        "lang": lang,
        "t": t,
        "member": held["member"],
        "points": held["points"],
        "level": held["level"],
        "next_level": t["next_level"]
        .replace("{points}", str(held["points_to_next_level"]))
        .replace("{level}", str(held["next_level"]))
        if held["next_level"]
        else t["top_level"],
        "progress": progress,
        "expiring": t["expiring"]
        .replace("{points}", str(held["expiring_points"]))
        .replace("{date}", day(held["expiring_at"]))
        if held["expiring_points"]
        else "",
        "card": card,
        "card_barcode": barcodes.code128_data_uri(str(card)) if card else None,
        "vouchers": open_vouchers,
        "history": history,
        "referral_link": held["referral_link"],
    }


@router.get("/loyalty/{token}", response_class=HTMLResponse)
async def loyalty_page(
    token: str, request: Request, state: ApiState = Depends(api_state)
) -> HTMLResponse:
    """The customer's points, level, vouchers (with barcodes) and points history."""
    viewer = await asyncio.to_thread(pages._viewer, state, token)
    if viewer is None or not viewer.known:
        return pages._invalid(state, request)
    data = await asyncio.to_thread(
        page_data, state, viewer.payload.customer_id, viewer.locale, now=datetime.now(UTC)
    )
    html = pages._env.get_template("loyalty.html").render(
        shop=state.settings.shop_name,
        title=data["t"]["title"],
        preferences=f"/preferences/{token}",
        **data,
    )
    return HTMLResponse(html, headers=HEADERS)


# The pages' headers, with the barcodes allowed: they are data: SVG images inside the page.
HEADERS = {
    **pages._HEADERS,
    "Content-Security-Policy": pages._HEADERS["Content-Security-Policy"] + "; img-src data:",
}
