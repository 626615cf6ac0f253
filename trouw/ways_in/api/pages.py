"""Pages people use: one-click unsubscribe (RFC 8058) and the preference centre, in nl/fr/en."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session

from trouw.domain.consent import current_consent, record_consent
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import Customer
from trouw.domain.ingest import (
    EARLIEST_BIRTHDAY,
    CustomerIn,
    EventIn,
    IngestError,
    birthday_problem,
    latest_birthday,
)
from trouw.domain.tokens import InvalidTokenError, TokenPayload, verify_token
from trouw.language.cells import CellError, parse_date
from trouw.language.locales import pick_language
from trouw.language.vocabulary import CHANNELS
from trouw.ways_in.api.events import StoredEvent, deliver_new, store_event
from trouw.ways_in.api.state import ApiState, api_state

log = logging.getLogger("trouw.api.pages")
router = APIRouter(include_in_schema=False)

Language = Literal["nl", "fr", "en"]
CATEGORIES = ("promotional", "service")
PREFERENCES_WORDING = "preferences-v1"

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

# What the pages say. Kept here, next to the code that fills them in, so a new text is one
# place to translate; the ledger stores the exact label a customer saw (proof of consent).
TEXTS: dict[Language, dict[str, str]] = {
    "nl": {
        "unsubscribe_title": "Afmelden",
        "unsubscribe_question": "Wil je geen {what} meer ontvangen van {shop}?",
        "unsubscribe_button": "Afmelden",
        "unsubscribed_title": "Je bent afgemeld",
        "unsubscribed_body": "Je ontvangt geen {what} meer van {shop}.",
        "transactional_note": "Bevestigingen van je bestellingen en leveringen blijven we sturen.",
        "invalid_title": "Deze link werkt niet",
        "invalid_body": "De link is onvolledig of gewijzigd. Gebruik de link uit je laatste "
        "bericht, of neem contact op met {shop}.",
        "preferences_title": "Jouw voorkeuren",
        "preferences_intro": "Kies wat je van {shop} wilt ontvangen.",
        "channel_email": "E-mail",
        "channel_sms": "Sms",
        "category_promotional": "Aanbiedingen en nieuws",
        "category_service": "Tips, herinneringen en vragen naar je mening",
        "suppressed": "Je hebt je hiervoor afgemeld op {date}. Neem contact op met {shop} "
        "om dat ongedaan te maken.",
        "save": "Opslaan",
        "saved": "Je voorkeuren zijn opgeslagen.",
        "what_email": "e-mails",
        "what_sms": "sms'jes",
        "what_all": "e-mails en sms'jes",
        "what_promotional": "aanbiedingen",
        "profile_legend": "Over jou",
        "first_name": "Voornaam",
        "last_name": "Achternaam",
        "birthday": "Verjaardag",
        "birthday_hint": "Dan kunnen we je op je verjaardag verrassen. Laat leeg om hem te "
        "verwijderen.",
        "preferred_channel": "Hoe horen we het liefst van je?",
        "preferred_none": "Geen voorkeur",
        "not_saved": "Er is niets opgeslagen. Verbeter wat hieronder gemarkeerd is.",
        "birthday_future": "Een verjaardag kan niet in de toekomst liggen.",
        "birthday_too_old": "Een verjaardag vóór 1900 kan niet kloppen: kijk het jaar na.",
        "birthday_format": "Schrijf je verjaardag als dag-maand-jaar, bijvoorbeeld 24-04-1979.",
        "name_invalid": "Een naam staat op één regel en telt hoogstens 100 tekens.",
        "choice_invalid": "Kies een van de mogelijkheden.",
    },
    "fr": {
        "unsubscribe_title": "Se désabonner",
        "unsubscribe_question": "Vous ne souhaitez plus recevoir de {what} de {shop} ?",
        "unsubscribe_button": "Me désabonner",
        "unsubscribed_title": "Vous êtes désabonné·e",
        "unsubscribed_body": "Vous ne recevrez plus de {what} de {shop}.",
        "transactional_note": "Nous continuerons à vous envoyer les confirmations de vos "
        "commandes et livraisons.",
        "invalid_title": "Ce lien ne fonctionne pas",
        "invalid_body": "Le lien est incomplet ou a été modifié. Utilisez le lien de votre "
        "dernier message ou contactez {shop}.",
        "preferences_title": "Vos préférences",
        "preferences_intro": "Choisissez ce que vous souhaitez recevoir de {shop}.",
        "channel_email": "E-mail",
        "channel_sms": "SMS",
        "category_promotional": "Offres et nouveautés",
        "category_service": "Conseils, rappels et demandes d'avis",
        "suppressed": "Vous vous êtes désabonné·e le {date}. Contactez {shop} pour annuler "
        "cette décision.",
        "save": "Enregistrer",
        "saved": "Vos préférences ont été enregistrées.",
        "what_email": "e-mails",
        "what_sms": "SMS",
        "what_all": "e-mails ni de SMS",
        "what_promotional": "offres",
        "profile_legend": "À propos de vous",
        "first_name": "Prénom",
        "last_name": "Nom",
        "birthday": "Date d'anniversaire",
        "birthday_hint": "Pour vous faire une surprise le jour de votre anniversaire. Laissez "
        "vide pour la supprimer.",
        "preferred_channel": "Comment préférez-vous avoir de nos nouvelles ?",
        "preferred_none": "Pas de préférence",
        "not_saved": "Rien n'a été enregistré. Corrigez ce qui est indiqué ci-dessous.",
        "birthday_future": "Une date d'anniversaire ne peut pas être dans le futur.",
        "birthday_too_old": "Une date d'anniversaire avant 1900 n'est pas plausible : "
        "vérifiez l'année.",
        "birthday_format": "Écrivez la date sous la forme jour-mois-année, par exemple 24-04-1979.",
        "name_invalid": "Un nom tient sur une ligne et compte au plus 100 caractères.",
        "choice_invalid": "Choisissez l'une des possibilités.",
    },
    "en": {
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Do you no longer want to receive {what} from {shop}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_body": "You will no longer receive {what} from {shop}.",
        "transactional_note": "We will still send confirmations of your orders and deliveries.",
        "invalid_title": "This link does not work",
        "invalid_body": "The link is incomplete or was changed. Use the link in your latest "
        "message, or contact {shop}.",
        "preferences_title": "Your preferences",
        "preferences_intro": "Choose what you want to receive from {shop}.",
        "channel_email": "Email",
        "channel_sms": "Text messages",
        "category_promotional": "Offers and news",
        "category_service": "Tips, reminders and requests for your opinion",
        "suppressed": "You unsubscribed from this on {date}. Contact {shop} to undo that.",
        "save": "Save",
        "saved": "Your preferences are saved.",
        "what_email": "emails",
        "what_sms": "text messages",
        "what_all": "emails and text messages",
        "what_promotional": "offers",
        "profile_legend": "About you",
        "first_name": "First name",
        "last_name": "Last name",
        "birthday": "Birthday",
        "birthday_hint": "So we can surprise you on your birthday. Leave it empty to remove it.",
        "preferred_channel": "How would you rather hear from us?",
        "preferred_none": "No preference",
        "not_saved": "Nothing was saved. Please correct what is marked below.",
        "birthday_future": "A birthday cannot be in the future.",
        "birthday_too_old": "A birthday before 1900 cannot be right: please check the year.",
        "birthday_format": "Write your birthday as day-month-year, for example 24-04-1979.",
        "name_invalid": "A name fits on one line and has at most 100 characters.",
        "choice_invalid": "Choose one of the options.",
    },
}
_HEADERS = {
    # The token in the URL is a capability: keep it out of caches, referrers and frames.
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def language_of(locale: str | None) -> Language:
    """nl, fr or en for a customer locale or Accept-Language (de-BE -> en); Dutch when unknown."""
    return pick_language(locale, ("nl", "fr", "en"), "nl")  # type: ignore[return-value]


@dataclass(frozen=True)
class Viewer:
    """Whose page it is: the verified token and the customer's language (and whether known)."""

    token: str
    payload: TokenPayload
    locale: str
    known: bool

    @property
    def lang(self) -> Language:
        return language_of(self.locale)


def _render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _texts(lang: Language, shop: str) -> dict[str, str]:
    return {key: value.replace("{shop}", shop) for key, value in TEXTS[lang].items()}


def _viewer(state: ApiState, token: str) -> Viewer | None:
    try:
        payload = verify_token(token, state.settings.active_signing_keys)
    except InvalidTokenError:
        return None
    with session_scope(state.engine) as session:
        customer = session.get(Customer, payload.customer_id)
        # An erased customer is a tombstone: its pages act as for an unknown customer.
        if customer is not None and not customer.erased:
            return Viewer(token, payload, customer.locale, True)
        return Viewer(token, payload, state.settings.default_locale, False)


def _invalid(state: ApiState, request: Request) -> HTMLResponse:
    lang = language_of(request.headers.get("accept-language") or state.settings.default_locale)
    t = _texts(lang, state.settings.shop_name)
    return _render(
        "message.html",
        400,
        lang=lang,
        shop=state.settings.shop_name,
        title=t["invalid_title"],
        body=t["invalid_body"],
        kind="error",
        extra=None,
    )


def _what(t: dict[str, str], payload: TokenPayload) -> str:
    if payload.category == "promotional":
        return t["what_promotional"]
    return t[f"what_{payload.channel}"]


# --- unsubscribe ----------------------------------------------------------------------------


def unsubscribe_event(token: str, payload: TokenPayload, at: datetime) -> EventIn:
    """The event a one-click unsubscribe stores: one per token, so repeated POSTs are one."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:32]
    evidence = (
        f"one-click unsubscribe link in message {payload.message_key}"
        if payload.message_key
        else "one-click unsubscribe link"
    )
    return EventIn(
        id=f"unsubscribe:{digest}",
        # A promotional-only link withdraws promotional consent; any other stops the channel.
        type="opt_out" if payload.category == "promotional" else "unsubscribe",
        customer=payload.customer_id,
        at=at,
        channel=payload.channel,
        source="unsubscribe",
        wording_version="one-click",
        wording_text=evidence,
    )


def unsubscribe(state: ApiState, viewer: Viewer, *, now: datetime) -> StoredEvent | None:
    """Honour a one-click unsubscribe at once; None when the customer is not (or no longer) known."""
    event = unsubscribe_event(viewer.token, viewer.payload, now)
    try:
        return store_event(state.engine, event, now=now)
    except IngestError as exc:
        log.warning("unsubscribe for %s not stored: %s", viewer.payload.customer_id, exc)
        return None


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(
    token: str, request: Request, state: ApiState = Depends(api_state)
) -> HTMLResponse:
    """The confirmation page: a GET never unsubscribes (mail scanners follow links)."""
    viewer = await asyncio.to_thread(_viewer, state, token)
    if viewer is None:
        return _invalid(state, request)
    t = _texts(viewer.lang, state.settings.shop_name)
    t["unsubscribe_question"] = t["unsubscribe_question"].replace(
        "{what}", _what(t, viewer.payload)
    )
    return _render(
        "unsubscribe.html",
        lang=viewer.locale,
        shop=state.settings.shop_name,
        title=t["unsubscribe_title"],
        t=t,
        action=f"/u/{token}",
    )


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_post(
    token: str, request: Request, state: ApiState = Depends(api_state)
) -> HTMLResponse:
    """RFC 8058 one-click: `List-Unsubscribe=One-Click`, no cookies, no login, honoured at once.

    The token is the authority, so the body is not required to match; no redirect (RFC 8058).
    """
    viewer = await asyncio.to_thread(_viewer, state, token)
    if viewer is None:
        return _invalid(state, request)
    stored = await asyncio.to_thread(unsubscribe, state, viewer, now=datetime.now(UTC))
    if stored is not None:
        await deliver_new(state, [stored])
    t = _texts(viewer.lang, state.settings.shop_name)
    return _render(
        "message.html",
        lang=viewer.locale,
        shop=state.settings.shop_name,
        title=t["unsubscribed_title"],
        body=t["unsubscribed_body"].replace("{what}", _what(t, viewer.payload)),
        kind="status",
        extra=t["transactional_note"],
    )


# --- preferences ----------------------------------------------------------------------------


def _channels(payload: TokenPayload) -> tuple[str, ...]:
    return CHANNELS if payload.channel == "all" else (payload.channel,)


def preference_state(session: Session, customer_id: str) -> dict[str, Any]:
    """Per channel: whether suppressed (since when), and the current yes/no per category."""
    consent = current_consent(session, customer_id)
    result: dict[str, Any] = {}
    for channel in CHANNELS:
        suppressed = [s.at for s in consent.suppressions if s.channel in (channel, "all")]
        result[channel] = {
            "suppressed_since": min(suppressed) if suppressed else None,
            "promotional": consent.promotional(channel),
            "service": not consent.service_objection(channel),
        }
    return result


def save_preferences(
    state: ApiState,
    viewer: Viewer,
    wanted: set[str],
    *,
    now: datetime,
    profile: CustomerIn | None = None,
) -> list[StoredEvent]:
    """Append a consent record for each choice that changed; promotional ones reach the workflow.

    A profile change is a `register` event from source "preferences": the profile ledger records
    it and the customer's journeys hear of it (the enrichment journey ends on a birthday).
    """
    t = _texts(viewer.lang, state.settings.shop_name)
    events: list[EventIn] = []
    if profile is not None:
        events.append(
            EventIn(
                id=f"preferences:{uuid.uuid4().hex}",
                type="register",
                customer=viewer.payload.customer_id,
                at=now,
                profile=profile,
                source="preferences",
            )
        )
    with session_scope(state.engine) as session:
        current = preference_state(session, viewer.payload.customer_id)
        for channel in _channels(viewer.payload):
            if current[channel]["suppressed_since"] is not None:
                continue  # the form cannot change a suppressed channel
            for category in CATEGORIES:
                chosen = f"{channel}_{category}" in wanted
                if chosen == current[channel][category]:
                    continue
                wording = f"{t['channel_' + channel]}: {t['category_' + category]}"
                if category == "service":
                    record_consent(
                        session,
                        customer_id=viewer.payload.customer_id,
                        channel=channel,
                        scope="service",
                        granted=chosen,
                        at=now,
                        source="preferences",
                        wording_version=f"{PREFERENCES_WORDING}:{viewer.lang}",
                        wording_text=wording,
                    )
                    continue
                events.append(
                    EventIn(
                        id=f"preferences:{uuid.uuid4().hex}",
                        type="opt_in" if chosen else "opt_out",
                        customer=viewer.payload.customer_id,
                        at=now,
                        channel=channel,
                        source="preferences",
                        wording_version=f"{PREFERENCES_WORDING}:{viewer.lang}",
                        wording_text=wording,
                    )
                )
    return [store_event(state.engine, event, now=now) for event in events]


# --- the profile part: what the enrichment email asks for ----------------------------------


@dataclass
class ProfileForm:
    """The profile fields as typed, the message key of each refused one, and the change to save."""

    values: dict[str, str]
    errors: dict[str, str]
    change: CustomerIn | None = None


def _profile_values(customer: Customer) -> dict[str, str]:
    return {
        "first_name": customer.first_name or "",
        "last_name": customer.last_name or "",
        "birthday": customer.birthday.isoformat() if customer.birthday else "",
        "preferred_channel": customer.preferred_channel or "",
    }


def _read_name(text: str) -> str | None:
    """The name to store, or None when it does not fit on one line of 100 characters."""
    if len(text) > 100 or any(ch in text for ch in "\r\n\x00"):
        return None
    return text


def read_profile(form: dict[str, str], customer: Customer, *, now: datetime) -> ProfileForm:
    """Check the profile fields the form has (an absent field is left alone); pure.

    An emptied field removes what was stored, as the enrichment email promises for the birthday.
    """
    stored = _profile_values(customer)
    values = {name: form[name].strip() for name in stored if name in form}
    errors: dict[str, str] = {}
    wanted: dict[str, Any] = {}
    for name, text in values.items():
        if text == stored[name]:
            continue
        if not text:
            wanted[name] = None
        elif name in ("first_name", "last_name"):
            wanted[name] = _read_name(text)
            if wanted[name] is None:
                errors[name] = "name_invalid"
        elif name == "preferred_channel":
            wanted[name] = text if text in CHANNELS else None
            if wanted[name] is None:
                errors[name] = "choice_invalid"
        else:
            try:
                day = parse_date(text)
            except CellError:
                errors[name] = "birthday_format"
                continue
            problem = birthday_problem(day, now=now)
            if problem is not None:
                errors[name] = f"birthday_{problem}"
            elif day.isoformat() != stored[name]:
                wanted[name] = day
    result = ProfileForm(values={**stored, **values}, errors=errors)
    if wanted and not errors:
        result.change = CustomerIn(
            id=customer.id,
            clear=[name for name, value in wanted.items() if value is None],
            **{name: value for name, value in wanted.items() if value is not None},
        )
    return result


def _load_customer(state: ApiState, customer_id: str) -> Customer:
    with session_scope(state.engine) as session:
        customer = session.get(Customer, customer_id)
        assert customer is not None  # a known viewer
        session.expunge(customer)
        return customer


def _preferences_page(
    state: ApiState,
    viewer: Viewer,
    *,
    saved: bool,
    refused: tuple[ProfileForm, set[str]] | None = None,
) -> HTMLResponse:
    """The page; after a refused form, with what was typed and ticked and why it was refused."""
    t = _texts(viewer.lang, state.settings.shop_name)
    with session_scope(state.engine) as session:
        current = preference_state(session, viewer.payload.customer_id)
    customer = _load_customer(state, viewer.payload.customer_id)
    profile = refused[0] if refused else ProfileForm(_profile_values(customer), {})
    channels = []
    for channel in _channels(viewer.payload):
        since = current[channel]["suppressed_since"]
        channels.append(
            {
                "name": channel,
                "suppressed_since": since,
                "suppressed_note": t["suppressed"].replace("{date}", since.date().isoformat())
                if since
                else "",
                "options": [
                    {
                        "field": f"{channel}_{category}",
                        "label": t[f"category_{category}"],
                        "checked": (
                            f"{channel}_{category}" in refused[1]
                            if refused
                            else current[channel][category]
                        )
                        and since is None,
                    }
                    for category in CATEGORIES
                ],
            }
        )
    return _render(
        "preferences.html",
        422 if refused else 200,
        lang=viewer.locale,
        shop=state.settings.shop_name,
        title=t["preferences_title"],
        t=t,
        channels=channels,
        profile=profile.values,
        errors={name: t[key] for name, key in profile.errors.items()},
        channel_choices=[("", t["preferred_none"])]
        + [(channel, t[f"channel_{channel}"]) for channel in CHANNELS],
        earliest=EARLIEST_BIRTHDAY.isoformat(),
        latest=latest_birthday().isoformat(),
        saved=saved,
        action=f"/preferences/{viewer.token}",
    )


@router.get("/preferences/{token}", response_class=HTMLResponse)
async def preferences_page(
    token: str, request: Request, state: ApiState = Depends(api_state)
) -> HTMLResponse:
    """The preference centre, with the customer's current choices ticked and profile filled in."""
    viewer = await asyncio.to_thread(_viewer, state, token)
    if viewer is None or not viewer.known:
        return _invalid(state, request)
    return await asyncio.to_thread(_preferences_page, state, viewer, saved=False)


@router.post("/preferences/{token}", response_class=HTMLResponse)
async def preferences_post(
    token: str, request: Request, state: ApiState = Depends(api_state)
) -> HTMLResponse:
    """Save the form: every change is a new ledger record (source "preferences").

    A refused field saves nothing at all and shows the form again, as typed, with the reason.
    """
    viewer = await asyncio.to_thread(_viewer, state, token)
    if viewer is None or not viewer.known:
        return _invalid(state, request)
    form = await request.form()
    wanted = {str(name) for name, value in form.multi_items() if value == "yes"}
    fields = {str(name): value for name, value in form.multi_items() if isinstance(value, str)}
    now = datetime.now(UTC)
    customer = await asyncio.to_thread(_load_customer, state, viewer.payload.customer_id)
    profile = read_profile(fields, customer, now=now)
    if profile.errors:
        return await asyncio.to_thread(
            _preferences_page, state, viewer, saved=False, refused=(profile, wanted)
        )
    stored = await asyncio.to_thread(
        save_preferences, state, viewer, wanted, now=now, profile=profile.change
    )
    await deliver_new(state, stored)
    return await asyncio.to_thread(_preferences_page, state, viewer, saved=True)
