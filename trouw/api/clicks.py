"""GET /c/{code}: a tracked link. Records the click, then redirects to the message's own link."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select

from trouw.api.state import ApiState, api_state
from trouw.db.engine import session_scope
from trouw.db.models import Message, TrackedLink
from trouw.measure.engagement import engagement_row
from trouw.measure.links import CLICK_PARAM

router = APIRouter(include_in_schema=False)
_CODE = re.compile(r"[A-Za-z0-9_-]{22}")
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(status: int, text: str) -> HTMLResponse:
    body = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>Link</title><p>{text}</p></html>"
    )
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def with_click(url: str, click_id: str) -> str:
    parts = urlsplit(url)
    extra = urlencode({CLICK_PARAM: click_id})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


@router.get("/c/{code}")
def follow_link(code: str, state: ApiState = Depends(api_state)) -> Response:
    """Only a code that a message holds leads anywhere, and only to that message's link:
    query strings, other hosts or a tampered code lead nowhere (404)."""
    if not _CODE.fullmatch(code):
        return _page(404, "This link is not known.")
    now = datetime.now(UTC)
    click_id = uuid.uuid4().hex
    with session_scope(state.engine) as session:
        found = session.exec(
            select(TrackedLink, Message)
            .join(Message, Message.message_key == TrackedLink.message_key)  # type: ignore[arg-type]
            .where(TrackedLink.code == code)
        ).first()
        if found is None:
            return _page(404, "This link is not known.")
        link, message = found
        if now >= link.expires_at:
            return _page(410, "This link has expired.")
        url = link.url
        session.add(
            engagement_row(
                message,
                "clicked",
                key=f"redirect:{click_id}",
                at=now,
                source="redirect",
                link=url,
                session_id=click_id,
            )
        )
    return RedirectResponse(with_click(url, click_id), status_code=302, headers=_HEADERS)
