"""Rewrites a message's links for click tracking and stores them: called while rendering."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from trouw.domain.consent import ConsentState, current_consent
from trouw.domain.db.engine import insert_new
from trouw.domain.db.models import TrackedLink
from trouw.domain.measure.links import keep_as_is, link_code, rewrite, trackable
from trouw.settings import Settings


def tracking_on(
    session: Session,
    settings: Settings,
    *,
    journey: str,
    customer_id: str,
    channel: str,
    consent: ConsentState | None = None,
) -> bool:
    """Whether this message's links are tracked: on, not off for the journey, and (where the
    settings ask for it) the customer opted in to promotional messages on the channel.

    `consent`: the customer's consent as the caller read it in this session (the send has it
    for its policy decision), so it is not read again."""
    if not settings.click_tracking or journey in settings.click_tracking_off_journeys:
        return False
    if settings.click_tracking_consent == "promotional":
        if consent is None:
            consent = current_consent(session, customer_id)
        return consent.promotional(channel)
    return True


class LinkTracker:
    """Turns the links of one message into `/c/{code}` links, storing each once: the links of
    one rewrite in one INSERT that skips a code already stored (a retry renders again)."""

    def __init__(
        self,
        session: Session,
        settings: Settings,
        *,
        message_key: str,
        links: dict[str, str],
        now: datetime,
    ) -> None:
        self.session = session
        self.settings = settings
        self.message_key = message_key
        self.now = now
        self.keep, self.keep_prefixes = keep_as_is(settings.public_url, links)
        self.base = settings.public_url.rstrip("/")
        self.key = settings.active_signing_keys[0]
        self._seen: set[str] = set()
        self._new: list[dict[str, Any]] = []

    def track(self, url: str) -> str | None:
        if not trackable(url, self.keep, self.keep_prefixes):
            return None
        code = link_code(self.key, self.message_key, url)
        if code not in self._seen:
            self._new.append(
                {
                    "code": code,
                    "message_key": self.message_key,
                    "url": url,
                    "created_at": self.now,
                    "expires_at": self.now + timedelta(days=self.settings.click_link_days),
                }
            )
        self._seen.add(code)
        return f"{self.base}/c/{code}"

    def html(self, content: str) -> str:
        rewritten = rewrite(content, html=True, track=self.track)
        self._store()
        return rewritten

    def text(self, content: str) -> str:
        rewritten = rewrite(content, html=False, track=self.track)
        self._store()
        return rewritten

    def _store(self) -> None:
        if self._new:
            table = TrackedLink.__table__  # type: ignore[attr-defined]
            self.session.execute(insert_new(self.session, table, key=["code"]), self._new)
            self._new = []
