"""Hosted copies of sent emails ("view in browser"): the signed link, the stored copy, reading it."""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from trouw.domain.db.engine import dialect_insert
from trouw.domain.db.models import Customer, Message, MessageCopy
from trouw.domain.tokens import ViewToken, sign_view_token

if TYPE_CHECKING:
    from trouw.settings import Settings

# A ledger message in one of these states never reached anyone, so its copy has no reader.
_NEVER_SENT = frozenset({"suppressed", "failed"})


def copy_expires_at(settings: Settings, now: datetime) -> datetime:
    """Until when the copy of a message rendered at `now` can be read (whole seconds)."""
    return (now + timedelta(days=settings.hosted_copy_days)).replace(microsecond=0)


def view_link(settings: Settings, message_key: str, now: datetime) -> str:
    """The "view in browser" URL of one message: the API's /m/{token}, whatever the provider."""
    token = sign_view_token(
        message_key, copy_expires_at(settings, now), settings.active_signing_keys
    )
    return f"{settings.public_url.rstrip('/')}/m/{token}"


def keep_copy(
    session: Session,
    settings: Settings,
    *,
    message_key: str,
    customer_id: str,
    html: str,
    now: datetime,
) -> None:
    """Store (or replace, when a retry renders again) the HTML a message is sent with: one
    statement (INSERT ... ON CONFLICT DO UPDATE), not a look-up and a write."""
    session.execute(
        _store_copy(session),
        {
            "message_key": message_key,
            "customer_id": customer_id,
            "html_zlib": zlib.compress(html.encode("utf-8"), 6),
            "created_at": now,
            "expires_at": copy_expires_at(settings, now),
        },
    )


_STORE_COPY: dict[str, Any] = {}


def _store_copy(session: Session) -> Any:
    """INSERT ... ON CONFLICT (message_key) DO UPDATE of a copy, built once per dialect."""
    name = session.get_bind().dialect.name
    statement = _STORE_COPY.get(name)
    if statement is None:
        insert = dialect_insert(session, MessageCopy.__table__)  # type: ignore[attr-defined]
        statement = _STORE_COPY[name] = insert.on_conflict_do_update(
            index_elements=["message_key"],
            set_={"html_zlib": insert.excluded.html_zlib, "expires_at": insert.excluded.expires_at},
        )
    return statement


def read_copy(session: Session, view: ViewToken, *, now: datetime) -> str | None:
    """The HTML a verified link names; None when it is gone (forgotten, expired, never sent).

    A copy found past its time is deleted on the spot (its link expired with it).
    """
    row = session.get(MessageCopy, view.message_key)
    if row is None:
        return None
    if row.expires_at <= now:
        session.delete(row)
        return None
    state = session.exec(
        select(Message.state).where(Message.message_key == view.message_key)
    ).first()
    customer = session.get(Customer, row.customer_id)
    if state is None or state in _NEVER_SENT or customer is None or customer.erased:
        return None
    return copy_html(row)


def copy_html(row: MessageCopy) -> str:
    """The stored HTML of a copy, as it was sent."""
    return zlib.decompress(row.html_zlib).decode("utf-8")


def delete_copies(session: Session, *, customer_id: str) -> int:
    """Delete every hosted copy of a customer's messages (erasure); returns how many."""
    result = session.exec(delete(MessageCopy).where(col(MessageCopy.customer_id) == customer_id))
    return int(result.rowcount or 0)


def purge_expired_copies(session: Session, *, now: datetime) -> int:
    """Delete every copy past its time (storage limitation); returns how many."""
    result = session.exec(delete(MessageCopy).where(col(MessageCopy.expires_at) <= now))
    return int(result.rowcount or 0)
