"""GET /m/{token}: the hosted copy of a sent email ("view in browser"), for whoever holds the link."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from trouw.domain.db.engine import session_scope
from trouw.domain.hosted import purge_expired_copies, read_copy
from trouw.domain.tokens import ExpiredTokenError, InvalidTokenError, verify_view_token
from trouw.ways_in.api.pages import Language, language_of
from trouw.ways_in.api.state import ApiState, api_state

log = logging.getLogger("trouw.api.hosted")
router = APIRouter(tags=["pages"])

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
# The copy holds personal data and its URL is the key to it: never cached by a proxy, never
# sent on as a Referer when the reader follows a link to the shop, never indexed or framed.
# The email itself has no script; the policy makes sure none ever runs.
_HEADERS = {
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; img-src https: data:; "
    "style-src 'unsafe-inline' https:; font-src https: data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
}
_GONE: dict[Language, tuple[str, str]] = {
    "nl": (
        "Deze e-mail is niet meer online",
        "De online versie van deze e-mail bestaat niet (meer). Het bericht in je mailbox blijft.",
    ),
    "fr": (
        "Cet e-mail n'est plus en ligne",
        "La version en ligne de cet e-mail n'existe pas ou plus. Le message reste dans votre "
        "boîte mail.",
    ),
    "en": (
        "This email is no longer online",
        "The online version of this email does not exist (any more). The message in your "
        "mailbox stays.",
    ),
}
_HTML = {"text/html": {"schema": {"type": "string"}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The email as it was sent (HTML).", "content": _HTML},
    404: {
        "description": "No such copy: the link is malformed or tampered with, the message was "
        "never sent, or the customer was erased (`trouw forget`).",
        "content": _HTML,
    },
    410: {
        "description": "The link is genuine but expired (`hosted_copy_days`); the copy is deleted.",
        "content": _HTML,
    },
}


async def purge_forever(state: ApiState, *, every: float = 3600.0) -> None:
    """Delete expired copies at start and then every hour, while the API runs."""
    while True:
        try:
            count = await asyncio.to_thread(_purge, state)
            if count:
                log.info("deleted %d expired hosted copies", count)
        except Exception:  # the database away for a moment: the next round catches up
            log.exception("purging expired hosted copies failed")
        await asyncio.sleep(every)


def _purge(state: ApiState) -> int:
    with session_scope(state.engine) as session:
        return purge_expired_copies(session, now=datetime.now(UTC))


def _lookup(state: ApiState, token: str, now: datetime) -> str | int:
    try:
        view = verify_view_token(token, state.settings.active_signing_keys, now=now)
    except ExpiredTokenError:
        return 410
    except InvalidTokenError:
        return 404
    with session_scope(state.engine) as session:
        return read_copy(session, view, now=now) or 404


def _gone(state: ApiState, request: Request, status: int) -> HTMLResponse:
    # Whoever holds a dead link is not known: answer in the browser's language.
    lang = language_of(request.headers.get("accept-language") or state.settings.default_locale)
    title, body = _GONE[lang]
    page = _env.get_template("message.html").render(
        lang=lang, shop=state.settings.shop_name, title=title, body=body, kind="error", extra=None
    )
    return HTMLResponse(page, status_code=status, headers=_HEADERS)


@router.get(
    "/m/{token}",
    response_class=HTMLResponse,
    responses=RESPONSES,
    summary="Hosted copy of a sent email",
)
async def hosted_copy(
    token: str, request: Request, state: ApiState = Depends(api_state)
) -> HTMLResponse:
    """The email as the customer received it, from the send ledger, whatever the provider.

    The link (in every email's "view in browser") is signed and expires after
    `hosted_copy_days`; it needs no login, so the copy is shown only to whoever holds it.
    """
    found = await asyncio.to_thread(_lookup, state, token, datetime.now(UTC))
    if isinstance(found, int):
        return _gone(state, request, found)
    return HTMLResponse(found, headers=_HEADERS)
